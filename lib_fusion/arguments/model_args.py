"""One further fusion checkpoint of N-model SNB as the argument model reads it: which
checkpoint, its prompts, its saliency factor and the part of the denoising it joins."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, List

try:
    from pydantic.v1 import BaseModel, Extra, Field, StrictStr, validator
except ImportError:  # pydantic 1.x before 1.10.17 has no v1 namespace
    from pydantic import BaseModel, Extra, Field, StrictStr, validator

from lib_fusion.arguments.fields import ENTRY_BOUNDS
from lib_fusion.arguments.messages import shown
from lib_fusion.arguments.region_args import MAX_MODEL_NAME, checkpoint_name, number

MAX_FUSION_MODELS = 7
"""Fusion checkpoints in one SNB generation (each adds two model passes per fused step)."""


class FusionModelArgs(BaseModel):
    """A fusion checkpoint of SNB: fused per pixel with the others by ``softmax(k S)``."""

    model: StrictStr = Field(..., description="A checkpoint the WebUI lists: a title, name or hash.", maxLength=MAX_MODEL_NAME)
    prompt: StrictStr = Field("", description="Its prompt; empty = the main prompt.")
    negative_prompt: StrictStr = Field("", description="Its negative prompt; empty = the main negative prompt.")
    k: Any = Field(
        None, description="Its saliency factor (the paper's ke); empty = ke of fusion_selection.", **ENTRY_BOUNDS["models.k"].schema()
    )
    window: List[Any] | None = Field(
        None,
        description="[from, to]: the part of the denoising it joins, as fractions (0 = the start at t = 1000, 1 = the end "
        "at t = 0); empty = every fused step.",
        minItems=2,
        maxItems=2,
        items={"type": "number"},
    )

    class Config:
        extra = Extra.forbid
        allow_mutation = False

    @validator("model")
    def _valid_model(cls, value: str) -> str:
        return checkpoint_name(value, "choose a checkpoint: a title, name or hash from the WebUI's checkpoint list")

    @validator("k", pre=True, always=True)
    def _valid_k(cls, value: Any) -> float | None:
        return None if value is None else ENTRY_BOUNDS["models.k"].check(number(value), value)

    @validator("window")
    def _valid_window(cls, value: list | None) -> list | None:
        if value is None:
            return None
        if len(value) != 2:
            raise ValueError(f"{shown(value)}: give [from, to], fractions of the denoising")
        start, end = (number(v) for v in value)
        if not 0 <= start < end <= 1:
            raise ValueError(f"{shown(value)}: need 0 <= from < to <= 1 (fractions of the denoising)")
        return [start, end]

    def joins(self, t: float) -> bool:
        """Whether it takes part in a fused step at DDPM timestep ``t`` (1000 -> 0)."""
        if self.window is None:
            return True
        # The edges as the decimals they were written as: 1000 * (1 - 0.399) in floats is
        # 601.0000000000001, which would leave out the step at t = 601 the user included.
        start, end = (Fraction(repr(edge)) for edge in self.window)
        return 1000 * (1 - end) <= t <= 1000 * (1 - start)

    def compact(self) -> dict[str, Any]:
        """Without its defaults (infotext, UI JSON)."""
        return self.dict(exclude_defaults=True)

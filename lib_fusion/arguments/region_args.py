"""One region of the Regions method as the argument model reads it: where (a box or a mask),
what (its prompts), which checkpoint, how strongly; and the bounded number reading the
argument models share."""

from __future__ import annotations

import math
from typing import Any, List

try:
    from pydantic.v1 import BaseModel, Extra, Field, StrictStr, root_validator, validator
except ImportError:  # pydantic 1.x before 1.10.17 has no v1 namespace
    from pydantic import BaseModel, Extra, Field, StrictStr, root_validator, validator

from lib_fusion.arguments import masks
from lib_fusion.arguments.fields import ENTRY_BOUNDS
from lib_fusion.arguments.messages import shown

KEYWORDS = ("active", "fusion")
"""A region's ``model`` naming no checkpoint: the active one, or the fusion checkpoint."""

MAX_MODEL_NAME = 300
"""Longest checkpoint reference a region takes (titles are file names and a hash)."""


def number(value: Any) -> float:
    """A finite JSON number (bools and strings are refused, ints accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{shown(value)} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"{shown(value)} is too large") from None
    if not math.isfinite(number):
        raise ValueError(f"{shown(value)} is not a finite number")
    return number


def checkpoint_name(value: str, when_empty: str) -> str:
    """A checkpoint reference as typed (stripped); empty or overlong ones are refused."""
    name = value.strip()
    if not name:
        raise ValueError(when_empty)
    if len(name) > MAX_MODEL_NAME:
        raise ValueError(f"{shown(name)}: a checkpoint reference of at most {MAX_MODEL_NAME} characters")
    return name


class RegionArgs(BaseModel):
    """One region of the Regions method: where, what, and which checkpoint denoises it."""

    box: List[Any] | None = Field(
        None,
        description="(x, y, w, h) as fractions of the canvas, from its top-left corner.",
        minItems=4,
        maxItems=4,
        items={"type": "number"},
    )
    mask: StrictStr | None = Field(None, description="A base64 PNG of the image's size: white inside the region.")
    prompt: StrictStr = Field("", description="The region's prompt; empty = the main prompt.")
    negative_prompt: StrictStr = Field("", description="The region's negative prompt; empty = the main negative prompt.")
    model: StrictStr = Field(
        "fusion",
        description="Which checkpoint denoises the region: 'active', 'fusion' (the fusion checkpoint), or any "
        "checkpoint the WebUI lists (a title, name or hash).",
        maxLength=MAX_MODEL_NAME,
    )
    weight: Any = Field(
        1.0,
        description="How strongly the region counts where it overlaps others (the mask is multiplied by it).",
        **ENTRY_BOUNDS["regions.weight"].schema(),
    )

    class Config:
        extra = Extra.forbid
        allow_mutation = False

    @validator("box")
    def _valid_box(cls, value: list | None) -> list | None:
        if value is None:
            return None
        if len(value) != 4:
            raise ValueError(f"{shown(value)}: give 4 numbers [x, y, w, h], fractions of the canvas")
        x, y, w, h = (number(v) for v in value)
        if w <= 0 or h <= 0:
            raise ValueError(f"{shown(value)}: width and height must be above 0")
        eps = 1e-6
        if x < -eps or y < -eps or x + w > 1 + eps or y + h > 1 + eps:
            raise ValueError(f"{shown(value)}: outside the canvas; need x, y >= 0, x + w <= 1 and y + h <= 1")
        return [x, y, w, h]

    @validator("mask")
    def _valid_mask(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return masks.check(value)
        except masks.MaskError as error:
            raise ValueError(str(error)) from None

    @validator("model")
    def _valid_model(cls, value: str) -> str:
        return checkpoint_name(value, "choose 'active', 'fusion' or a checkpoint's title, name or hash")

    @validator("weight", pre=True, always=True)
    def _valid_weight(cls, value: Any) -> float:
        return ENTRY_BOUNDS["regions.weight"].check(number(value), value)

    @root_validator(skip_on_failure=True)
    def _box_or_mask(cls, values: dict) -> dict:
        if (values.get("box") is None) == (values.get("mask") is None):
            raise ValueError("give exactly one of box [x, y, w, h] or mask (base64 PNG)")
        return values

    def compact(self) -> dict[str, Any]:
        """The region without its defaults (infotext, UI JSON)."""
        return self.dict(exclude_defaults=True)

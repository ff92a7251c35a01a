"""What every fusion method answers, and what its fused step is handed.

A method is one object (one module of this package each): the fields it reads, the prompts it
feeds a model, the text encoders it needs, when it leaves a step to model A alone, why a CFG
scale leaves it nothing to act on, how progress text and comparisons name it, what its preview
shows, and its fused step. Everything else asks the object (:func:`lib_fusion.methods.method_of`);
nothing else compares a method's name to a string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import torch

from lib_fusion.fusion.denoise import Model, SnbOptions, StepInput
from lib_fusion.fusion.snb import MaskMemory

ACTIVE_ALONE, FUSION_ALONE = "active", "fusion"
"""Which checkpoint runs every step of a generation that fuses none (:meth:`Method.alone_throughout`)."""

Preview = Literal["saliency", "difference", "layout", "none"]

TWO_MODEL_FIELDS = ("model", "models", "fusion_selection", "mode", "prompt", "negative_prompt", "solo", "text_encoder")
"""What every two-model method reads: the fusion checkpoint, the window, its prompts, which
model plays A, whose text encoder reads them (``models``: so that a list sent with a method
other than SNB is refused, not ignored)."""

Maps = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]
"""What a preview keeps of a fused step: up to three maps per image (None: not shown)."""


@dataclass
class StepContext:
    """What a fused step needs besides the two models and the batch."""

    args: Any
    """The generation's :class:`~lib_fusion.arguments.args.FusionArgs`."""
    options: SnbOptions
    kg: float
    ke: float
    joined: list[tuple[Any, Model]] = field(default_factory=list)
    """SNB's further fusion checkpoints that join this step: (their ``models`` entry, model)."""
    memory: MaskMemory | None = None


@dataclass
class FusedStep:
    prediction: torch.Tensor
    maps: Maps = (None, None, None)


@dataclass(frozen=True)
class Method:
    """A method's answers; the base class is a two-model method (A alone outside the window,
    A and B inside it), which every method but Regions is."""

    name: str
    label: str
    """How progress text and comparison labels name it."""
    preview: Preview
    """What its preview shows: SNB's saliency maps and mask, guidance's difference map,
    Regions' layout, or nothing (base uncond makes no per-pixel choice)."""
    fields: tuple[str, ...] = TWO_MODEL_FIELDS
    """The fields its generation reads (the field table's "read by" is made from these); a
    field no method reads is read by every generation or by none
    (:data:`lib_fusion.arguments.fields.EVERY_GENERATION`)."""

    two_model: bool = True
    """Model A alone outside the fusion window (``fusion_selection``, ``mode``), both inside."""
    lays_out_regions: bool = False
    """Denoises a canvas of regions and views (MultiDiffusion) instead of whole images."""
    fuses_several: bool = False
    """Fuses further checkpoints (``models``) with A and B by the same rule."""

    def reads(self, name: str) -> bool:
        return name in self.fields

    def prompts_read(self, solo: str) -> tuple[str, ...]:
        """Which of the fusion checkpoint's prompts (``prompt``, ``negative_prompt``) a fused
        step feeds to a model: the fusion checkpoint runs as model B unless ``solo`` makes it A."""
        return ("prompt", "negative_prompt")

    def alone_throughout(self, args: Any) -> str | None:
        """The model every step runs alone under these settings (:data:`ACTIVE_ALONE` or
        :data:`FUSION_ALONE`, model A as ``solo`` names it), or None when some step may fuse:
        mode 0 fuses no step."""
        if self.two_model and (args.mode == 0 or self.plain_at_every_step(args)):
            return ACTIVE_ALONE if args.solo == "active" else FUSION_ALONE
        return None

    def plain_at_every_step(self, args: Any) -> bool:
        """Settings under which a fused step is model A's plain CFG, so B need not run."""
        return False

    def inert_at_cfg_scale(self, args: Any, scale: float) -> str | None:
        """Why a sampling pass at this CFG scale leaves the method nothing to act on, or None."""
        return None

    def reads_guidance_response(self, args: Any) -> bool:
        """Whether a fused step measures the checkpoints' classifier-free-guidance responses
        ``c - u``, which a model run without an unconditional branch cannot give."""
        return False

    def needs_fusion_checkpoint(self, values: Mapping[str, Any]) -> bool:
        """Whether these argument values run the fusion checkpoint (``model``) at all."""
        return True

    def needs_fusion_text_encoder(self, args: Any) -> bool:
        """Whether the fusion checkpoint's own text encoder reads a prompt: with ``own``, or as
        model A (``solo: "fusion"``), whose prompts it encodes."""
        return args.text_encoder == "own" or args.solo == "fusion"

    def fused_step(self, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
        """A step inside the window: both models, fused by the method's rule."""
        raise NotImplementedError(f"the method {self.name!r} has no fused step of two models")

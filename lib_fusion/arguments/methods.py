"""The fusion methods, one object each: what a method's name means to the argument contract
and to every part that acts on it. Nothing else compares a method's name to a string: it asks
:func:`method_of` for the object and the object answers. (Which fields each method reads is in
its rows of the field table, :data:`lib_fusion.arguments.fields.USED_BY`; how the engine runs a
fused step of each is :mod:`lib_fusion.engine.method_steps`.)

Adding a method: a class here with its answers, registered in :data:`METHODS`, its name in
:data:`lib_fusion.arguments.fields.METHODS` with the fields it reads, and its fused step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from lib_fusion.arguments.fields import METHOD_NAMES, USED_BY

ACTIVE_ALONE, FUSION_ALONE = "active", "fusion"
"""Which checkpoint runs every step of a generation that fuses none (:meth:`Method.alone_throughout`)."""

Preview = Literal["saliency", "difference", "layout", "none"]


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

    two_model: bool = True
    """Model A alone outside the fusion window (``fusion_selection``, ``mode``), both inside."""
    lays_out_regions: bool = False
    """Denoises a canvas of regions and views (MultiDiffusion) instead of whole images."""
    fuses_several: bool = False
    """Fuses further checkpoints (``models``) with A and B by the same rule."""

    def reads(self, field: str) -> bool:
        return field in USED_BY[self.name]

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

    def needs_fusion_checkpoint(self, values: Mapping[str, Any]) -> bool:
        """Whether these argument values run the fusion checkpoint (``model``) at all."""
        return True

    def needs_fusion_text_encoder(self, args: Any) -> bool:
        """Whether the fusion checkpoint's own text encoder reads a prompt: with ``own``, or as
        model A (``solo: "fusion"``), whose prompts it encodes."""
        return args.text_encoder == "own" or args.solo == "fusion"


@dataclass(frozen=True)
class Snb(Method):
    """Saliency-aware noise blending (MagicFusion): both models on both rows."""

    def inert_at_cfg_scale(self, args: Any, scale: float) -> str | None:
        """SNB's saliency is each model's CFG response ``s (c - u)`` (MagicFusion, equation 3):
        at ``s = 0`` every map is flat and A wins every tie (``soft``: one half everywhere, no
        saliency either); ``mean`` needs none."""
        if args.mask != "mean" and scale == 0:
            return (
                "SNB picks each pixel by the checkpoints' CFG responses, which are zero at CFG scale 0, so model A would win "
                "every pixel; raise the CFG scale, or choose mask 'mean' to average the two predictions"
            )
        return None


@dataclass(frozen=True)
class Guidance(Method):
    """Cross-model guidance (autoguidance): A on both rows, B on its positive row only."""

    def prompts_read(self, solo: str) -> tuple[str, ...]:
        return ("prompt", "negative_prompt") if solo == "fusion" else ("prompt",)

    def plain_at_every_step(self, args: Any) -> bool:
        return args.guidance_weight == 1.0  # w = 1 is plain CFG of model A


@dataclass(frozen=True)
class BaseUncond(Method):
    """B's unconditional prediction under A's conditional ones: A's positive row, B's negative."""

    def prompts_read(self, solo: str) -> tuple[str, ...]:
        return ("prompt",) if solo == "fusion" else ("negative_prompt",)

    def inert_at_cfg_scale(self, args: Any, scale: float) -> str | None:
        """Base uncond swaps CFG's negative branch, and ``u + 1 (c - u)`` is ``c`` whoever's
        ``u`` it is."""
        if scale == 1:
            return (
                "base uncond replaces the negative branch of CFG, and at CFG scale 1 CFG has none: the image would be "
                "model A's positive prediction alone; raise the CFG scale, or choose another method"
            )
        return None


@dataclass(frozen=True)
class Regions(Method):
    """Region MultiDiffusion: each region with its prompt on its checkpoint, the background's
    main prompt on the active one (or ``background``)."""

    two_model: bool = False
    lays_out_regions: bool = True

    def prompts_read(self, solo: str) -> tuple[str, ...]:
        return ()  # each region carries its own prompts

    def needs_fusion_checkpoint(self, values: Mapping[str, Any]) -> bool:
        """When a region or the background asks for it, or the comparison shows it everywhere."""
        regions = values.get("regions") or ()
        return bool(values.get("compare")) or values.get("background") == "fusion" or any(region.model == "fusion" for region in regions)

    def needs_fusion_text_encoder(self, args: Any) -> bool:
        return args.text_encoder == "own"  # the background is the active checkpoint's: no model A to play


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Snb("snb", "SNB", "saliency", fuses_several=True),
        Regions("regions", "regions", "layout"),
        Guidance("guidance", "guidance", "difference"),
        BaseUncond("base_uncond", "base uncond", "none"),
    )
}


assert tuple(METHODS) == METHOD_NAMES, "every method named in the field table has its object, in the same order"


def method_of(args: Any) -> Method:
    """The method object of these arguments (anything with a valid ``method``)."""
    return METHODS[args.method]

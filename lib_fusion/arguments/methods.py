"""The fusion methods' rules over the arguments: which of the fusion checkpoint's prompts
reach a model, which settings leave one model alone throughout or the method nothing to act
on. (Which fields each method reads: :data:`lib_fusion.arguments.fields.USED_BY`.)"""

from __future__ import annotations

from lib_fusion.arguments.fields import TWO_MODEL_METHODS


def fusion_prompts_read(method: str, solo: str) -> tuple[str, ...]:
    """Which of the fusion checkpoint's prompts (``prompt``, ``negative_prompt``) a fused step
    feeds to a model: the fusion checkpoint runs as model B unless ``solo`` makes it A, and
    each method runs its own rows. SNB runs both models on both rows; guidance runs A on both
    and B on its positive row only; base uncond runs A's positive and B's negative row."""
    fusion_is_a = solo == "fusion"
    if method == "guidance":
        return ("prompt", "negative_prompt") if fusion_is_a else ("prompt",)
    if method == "base_uncond":
        return ("prompt",) if fusion_is_a else ("negative_prompt",)
    return ("prompt", "negative_prompt") if method == "snb" else ()


METHOD_NAMES = {"snb": "SNB", "guidance": "guidance", "base_uncond": "base uncond", "regions": "regions"}
"""How progress text and comparison labels name each method."""


def one_model_throughout(method: str, mode: int, solo: str, guidance_weight: float) -> str | None:
    """The model every step runs alone under these settings (:data:`ACTIVE_ALONE` or
    :data:`FUSION_ALONE`, model A as ``solo`` names it), or None when some step may fuse:
    mode 0 fuses no step, and guidance at w = 1 is plain CFG of model A."""
    if method not in TWO_MODEL_METHODS:
        return None
    if mode == 0 or (method == "guidance" and guidance_weight == 1.0):
        return ACTIVE_ALONE if solo == "active" else FUSION_ALONE
    return None


def inert_at_cfg_scale(method: str, mask: str, scale: float) -> str | None:
    """Why a sampling pass at this CFG scale leaves the method nothing to act on, or None.
    SNB's saliency is each model's CFG response ``s (c - u)`` (MagicFusion, equation 3): at
    ``s = 0`` every map is flat and A wins every tie (``soft``: one half everywhere, no
    saliency either). Base uncond swaps CFG's negative branch, and ``u + 1 (c - u)`` is ``c``
    whoever's ``u`` it is."""
    if method == "snb" and mask != "mean" and scale == 0:
        return (
            "SNB picks each pixel by the checkpoints' CFG responses, which are zero at CFG scale 0, so model A would win "
            "every pixel; raise the CFG scale, or choose mask 'mean' to average the two predictions"
        )
    if method == "base_uncond" and scale == 1:
        return (
            "base uncond replaces the negative branch of CFG, and at CFG scale 1 CFG has none: the image would be "
            "model A's positive prediction alone; raise the CFG scale, or choose another method"
        )
    return None


ACTIVE_ALONE, FUSION_ALONE = "active", "fusion"
"""Which checkpoint runs every step of a generation that fuses none (:func:`one_model_throughout`)."""

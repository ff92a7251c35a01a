"""SNB: saliency-aware noise blending (MagicFusion, ICCV 2023), of two checkpoints or more."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib_fusion.fusion.denoise import Model, StepInput, snb_many_step, snb_step
from lib_fusion.methods.base import TWO_MODEL_FIELDS, FusedStep, Method, StepContext

SNB_FIELDS = ("saliency_uncond", "blur", "mask", "mask_ema", "mask_freeze", "per_channel")
"""How the saliency maps are made and turned into a mask (``docs/methods.md``, "SNB")."""


@dataclass(frozen=True)
class Snb(Method):
    """Both models on both rows; each pixel from the model whose CFG response cares most."""

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

    def reads_guidance_response(self, args: Any) -> bool:
        """The saliency maps are made of them; ``mean`` averages without any."""
        return args.mask != "mean"

    def fused_step(self, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
        """SNB of A and B, or of every further checkpoint that joins the step too; the preview
        shows both saliency maps and the mask, or (several checkpoints) who won where."""
        if context.joined:
            factors = [context.kg, context.ke, *(context.ke if entry.k is None else entry.k for entry, _ in context.joined)]
            models = [model_a, model_b, *(model for _, model in context.joined)]
            fused_many = snb_many_step(models, inputs, context.options, factors)
            return FusedStep(fused_many.prediction, (fused_many.choice, None, None))
        fused = snb_step(model_a, model_b, inputs, context.options, context.memory)
        if context.args.models:  # a step no further checkpoint joins: who won where, as on the others
            return FusedStep(fused.prediction, (fused.mask, None, None))
        return FusedStep(fused.prediction, (fused.saliency_a, fused.saliency_b, fused.mask))


SNB = Snb("snb", "SNB", "saliency", fields=(*TWO_MODEL_FIELDS, *SNB_FIELDS), fuses_several=True)

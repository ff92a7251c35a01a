"""Cross-model guidance (autoguidance, Karras et al. 2024): the active model pushed away from a
weaker one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib_fusion.fusion.denoise import Model, StepInput, guidance_step
from lib_fusion.methods.base import TWO_MODEL_FIELDS, FusedStep, Method, StepContext


@dataclass(frozen=True)
class Guidance(Method):
    """A on both rows, B on its positive row only."""

    def prompts_read(self, solo: str) -> tuple[str, ...]:
        return ("prompt", "negative_prompt") if solo == "fusion" else ("prompt",)

    def plain_at_every_step(self, args: Any) -> bool:
        return args.guidance_weight == 1.0  # w = 1 is plain CFG of model A

    def fused_step(self, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
        """The preview shows where it pushes, ``|D_A(c) - D_B(c)|``."""
        prediction, difference = guidance_step(model_a, model_b, inputs, context.args.guidance_weight)
        return FusedStep(prediction, (difference, None, None))


GUIDANCE = Guidance("guidance", "guidance", "difference", fields=(*TWO_MODEL_FIELDS, "guidance_weight"))

"""Base uncond: the fusion checkpoint's unconditional prediction under the active one's
conditional ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lib_fusion.fusion.denoise import Model, StepInput, base_uncond_step
from lib_fusion.methods.base import FusedStep, Method, StepContext


@dataclass(frozen=True)
class BaseUncond(Method):
    """A's positive row, B's negative row."""

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

    def fused_step(self, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
        """No per-pixel choice to show."""
        return FusedStep(base_uncond_step(model_a, model_b, inputs))


BASE_UNCOND = BaseUncond("base_uncond", "base uncond", "none")

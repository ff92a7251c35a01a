"""Each two-model method's fused step, registered on its method object's class
(:mod:`lib_fusion.arguments.methods`): the run asks for ``fused_step(method, …)`` and the
method's own registration answers, so the run never names a method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

import torch

from lib_fusion.arguments.methods import BaseUncond, Guidance, Method, Snb
from lib_fusion.fusion.denoise import Model, SnbOptions, StepInput, base_uncond_step, guidance_step, snb_many_step, snb_step
from lib_fusion.fusion.snb import MaskMemory

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


@singledispatch
def fused_step(method: Method, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
    raise NotImplementedError(f"the method {method.name!r} has no fused step of two models")


@fused_step.register
def _snb(method: Snb, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
    """SNB of A and B (MagicFusion), or of every further checkpoint that joins the step too;
    the preview shows both saliency maps and the mask, or (several checkpoints) who won where."""
    if context.joined:
        factors = [context.kg, context.ke, *(context.ke if entry.k is None else entry.k for entry, _ in context.joined)]
        models = [model_a, model_b, *(model for _, model in context.joined)]
        fused_many = snb_many_step(models, inputs, context.options, factors)
        return FusedStep(fused_many.prediction, (fused_many.choice, None, None))
    fused = snb_step(model_a, model_b, inputs, context.options, context.memory)
    if context.args.models:  # a step no further checkpoint joins: who won where, as on the others
        return FusedStep(fused.prediction, (fused.mask, None, None))
    return FusedStep(fused.prediction, (fused.saliency_a, fused.saliency_b, fused.mask))


@fused_step.register
def _guidance(method: Guidance, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
    """Cross-model guidance; the preview shows where it pushes, ``|D_A(c) - D_B(c)|``."""
    prediction, difference = guidance_step(model_a, model_b, inputs, context.args.guidance_weight)
    return FusedStep(prediction, (difference, None, None))


@fused_step.register
def _base_uncond(method: BaseUncond, model_a: Model, model_b: Model, inputs: StepInput, context: StepContext) -> FusedStep:
    """Base uncond: no per-pixel choice to show."""
    return FusedStep(base_uncond_step(model_a, model_b, inputs))

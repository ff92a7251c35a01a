"""One fused denoiser call, in plain torch: run the passes a step needs and blend them.

The host hands over, per step, the batch's latents, sigmas and image conditioning and,
per model, a callable and its conditioning. This module never sees the WebUI: it builds
the model's rows, applies classifier-free guidance exactly as the WebUI's
``CFGDenoiser.combine_denoised`` does (``AND`` sub-prompts with weights), blends with
:mod:`lib_fusion.fusion.snb` and spreads the result over the host's row layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Literal

import torch

from lib_fusion.fusion import flow, snb
from lib_fusion.fusion.conds import Cond, WidthJoin, as_batched, cat_conds, pick, row_count, take_rows, token_width
from lib_fusion.fusion.guidance import CfgRule, base_uncond, combine, cross_model_guidance, difference_map

ModelFn = Callable[[torch.Tensor, torch.Tensor, Cond, torch.Tensor], torch.Tensor]
"""(x rows, sigma rows, text cond rows, image cond rows) -> model output rows."""

CondsList = list[list[tuple[int, float]]]
"""Per image: (row of the stacked cond tensor, weight) for each ``AND`` sub-prompt."""


@dataclass
class Conditioning:
    """One model's text conditioning for the current step."""

    conds_list: CondsList
    cond: Cond
    uncond: Cond
    joined: Cond | None = field(default=None, repr=False, compare=False)
    """The cond rows then the uncond rows as one batch, made on first use and kept: a
    conditioning that lasts several steps is joined once, not every step."""

    @classmethod
    def from_joined(cls, conds_list: CondsList, joined: Cond, cond_rows: int) -> Conditioning:
        """A conditioning whose cond and uncond rows are views of one joined batch."""
        total = row_count(joined)
        return cls(conds_list, take_rows(joined, list(range(cond_rows))), take_rows(joined, list(range(cond_rows, total))), joined)

    def both(self) -> Cond:
        if self.joined is None:
            self.joined = cat_conds([self.cond, self.uncond])
        return self.joined

    def of_image(self, image: int) -> Conditioning:
        """The rows of one image: its sub-prompts and its negative prompt."""
        conds = self.conds_list[image]
        rows = [row for row, _ in conds]
        return Conditioning(
            [[(k, weight) for k, (_, weight) in enumerate(conds)]], take_rows(self.cond, rows), take_rows(self.uncond, [image])
        )

    def check(self, batch: int, label: str) -> None:
        if len(self.conds_list) != batch or row_count(self.uncond) != batch:
            raise ValueError(
                f"{label}: conditioning covers {len(self.conds_list)} prompts and {row_count(self.uncond)} negative "
                f"prompts, but the batch has {batch} images"
            )


@dataclass
class Model:
    """A model's callable with the conditioning it uses this step."""

    name: str
    fn: ModelFn
    conditioning: Conditioning


@dataclass
class StepInput:
    """The batch as one image per row (the host repeats rows for ``AND`` and uncond)."""

    x: torch.Tensor
    sigma: torch.Tensor
    image_cond: torch.Tensor
    image_uncond: torch.Tensor
    cfg_scale: float
    units: Literal["eps", "x0"]
    """What the model callables return: eps (timestep samplers) or denoised x0 (k-diffusion)."""
    flow: bool = False
    """The latent is a rectified flow's, ``(1 - sigma) x0 + sigma eps``, not ``x0 + sigma eps``
    (:mod:`lib_fusion.fusion.flow`; the model callables then return x0)."""
    max_rows: int | None = None
    """Rows per model call (None: all in one call, the WebUI's ``batch_cond_uncond``)."""
    cfg_rule: CfgRule = "sum"
    """The host's CFG combine (:data:`lib_fusion.fusion.guidance.CfgRule`)."""
    width_join: WidthJoin = "equal"
    """How the host batches conditionings of different token widths (:data:`lib_fusion.fusion.conds.WidthJoin`)."""


def image_input(step: StepInput, image: int) -> StepInput:
    """One image of the batch (a view of its rows, no copy)."""
    rows = slice(image, image + 1)
    return replace(step, x=step.x[rows], sigma=step.sigma[rows], image_cond=step.image_cond[rows], image_uncond=step.image_uncond[rows])


@dataclass
class SnbOptions:
    kg: float
    ke: float
    saliency_uncond: snb.SaliencyUncond = "solo"
    blur: snb.Blur = "box"
    mask: snb.MaskRule = "hard"
    per_channel: bool = False


def guided(model: Model, step: StepInput) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` on cond rows and uncond rows; return (uncond, guided) per image.

    Guidance follows ``CFGDenoiser.combine_denoised``:
    ``u_i + sum_j (c_ij - u_i) * (w_ij * s)``.
    """
    cond_rows, uncond_out = rows(model, step)
    return uncond_out, combine(uncond_out, cond_rows, model.conditioning.conds_list, step.cfg_scale, step.cfg_rule)


def reads_uncond(step: StepInput) -> bool:
    """Whether the host's CFG at this step reads the uncond rows: Forge's at scale 1 runs none
    and reads none (its positive runs alone)."""
    return not (step.cfg_rule == "weighted_mean" and math.isclose(step.cfg_scale, 1.0))


def guided_prediction(model: Model, step: StepInput) -> torch.Tensor:
    """``model``'s guided prediction alone (a solo step, a region's view). Where the host's CFG
    reads no uncond its rows are not run: a guidance-distilled flow model at CFG 1 costs one
    pass per view, as it does the host."""
    if not reads_uncond(step):
        cond_rows, _ = rows(model, step, uncond=False)
        return combine(_no_uncond(cond_rows, step), cond_rows, model.conditioning.conds_list, step.cfg_scale, step.cfg_rule)
    return guided(model, step)[1]


def _no_uncond(cond_rows: torch.Tensor, step: StepInput) -> torch.Tensor:
    """What stands for the uncond rows in a combine that reads none (:func:`reads_uncond`)."""
    return cond_rows.new_zeros((step.x.shape[0], *cond_rows.shape[1:]))


def rows(model: Model, step: StepInput, cond: bool = True, uncond: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``model``'s outputs on its cond rows (one per ``AND`` sub-prompt, image after image)
    and on its uncond rows (one per image); a side not asked for is not run (None). Both
    sides go in one call where the host would batch them, and each side's context is in the form
    that batch gives it even when one side runs (:func:`lib_fusion.fusion.conds.as_batched`);
    where the host's CFG reads no uncond, the sides run apart, as its positive runs alone."""
    conditioning = model.conditioning
    batch = step.x.shape[0]
    conditioning.check(batch, model.name)
    image_of_row = [i for i, conds in enumerate(conditioning.conds_list) for _ in conds]
    order = [index for conds in conditioning.conds_list for index, _ in conds]
    cond_text = take_rows(conditioning.cond, order)
    uncond_text = conditioning.uncond
    alone = not reads_uncond(step)  # Forge at CFG 1 runs the positive alone, unrepeated
    batched = None if alone else as_batched([cond_text, uncond_text], step.width_join)
    if batched is not None:  # each side as the model's own CFG batch holds it, whichever sides run
        same_width = token_width(cond_text) == token_width(uncond_text)
        cond_text, uncond_text = batched
        if cond and uncond:
            in_order = order == list(range(row_count(conditioning.cond)))
            text = conditioning.both() if same_width and in_order else cat_conds(batched)  # both(): joined once per conditioning
            out = _run(model.fn, step, image_of_row + list(range(batch)), text, len(image_of_row))
            return out[: len(image_of_row)], out[len(image_of_row) :]
    cond_out = _run(model.fn, step, image_of_row, cond_text, len(image_of_row)) if cond else None
    uncond_out = _run(model.fn, step, list(range(batch)), uncond_text, 0) if uncond else None
    return cond_out, uncond_out


def _run(fn: ModelFn, step: StepInput, rows: list[int], cond: Cond, n_cond_rows: int) -> torch.Tensor:
    """Call ``fn`` on the given image rows, the first ``n_cond_rows`` with cond image conditioning."""
    x = pick(step.x, rows)
    sigma = pick(step.sigma, rows)
    image_cond = torch.cat([pick(step.image_cond, rows[:n_cond_rows]), pick(step.image_uncond, rows[n_cond_rows:])])
    chunk = step.max_rows or len(rows)
    outputs = []
    for start in range(0, len(rows), chunk):
        stop = min(start + chunk, len(rows))
        part = take_rows(cond, list(range(start, stop)))
        outputs.append(fn(x[start:stop], sigma[start:stop], part, image_cond[start:stop]))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def eps_response(response: torch.Tensor, step: StepInput) -> torch.Tensor:
    """A guidance response in eps units: ``d_eps = -d_x0 / sigma`` for k-diffusion outputs,
    ``-(1 - sigma) / sigma * d_x0`` for a rectified flow's (the sign drops out of ``|d|``).

    Saliency must be measured in eps units (algorithms.md section 1, "Porting"): otherwise
    the softmax logits are rescaled by sigma and the mask changes.
    """
    if step.units == "eps":
        return response
    sigma = step.sigma.to(response.dtype).view(-1, *([1] * (response.ndim - 1)))
    if step.flow:
        return response * flow.eps_per_x0(sigma)
    return response / sigma


def snb_step(model_a: Model, model_b: Model, step: StepInput, options: SnbOptions, memory: snb.MaskMemory | None = None) -> snb.Fused:
    """A fused step: both models, CFG each, saliency-aware blend (prediction, mask, saliency maps).

    The choice is made between guided predictions in the sampler's own units (choosing eps
    per pixel equals choosing x0 per pixel at one x and sigma); only the saliency is
    measured in eps units.
    """
    uncond_a, guided_a = guided(model_a, step)
    uncond_b, guided_b = guided(model_b, step)
    response_a = eps_response(guided_a - uncond_a, step)
    response_b = eps_response(response_of_b(guided_b, uncond_b, uncond_a, step.cfg_scale, options.saliency_uncond), step)
    return snb.fuse_guided(
        guided_a, guided_b, response_a, response_b, options.kg, options.ke, options.blur, options.mask, options.per_channel, memory
    )


def snb_many_step(models: list[Model], step: StepInput, options: SnbOptions, factors: list[float]) -> snb.FusedMany:
    """A fused step of three or more models (:func:`lib_fusion.fusion.snb.fuse_many`): each model
    guided with CFG; A's response against its uncond, every other model's as B's is in
    :func:`snb_step` (``solo``: against A's uncond, the official quirk applied to each)."""
    unconds, guideds = zip(*(guided(model, step) for model in models))
    responses = [eps_response(guideds[0] - unconds[0], step)]
    for uncond, prediction in zip(unconds[1:], guideds[1:]):
        responses.append(eps_response(response_of_b(prediction, uncond, unconds[0], step.cfg_scale, options.saliency_uncond), step))
    return snb.fuse_many(list(guideds), responses, factors, options.blur, options.mask, options.per_channel)


def guidance_step(model_a: Model, model_b: Model, step: StepInput, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-model guidance (:func:`lib_fusion.fusion.guidance.cross_model_guidance`): A on all its
    rows, B on its cond rows only. Returns the prediction and ``|D_A(c) - D_B(c)|`` (previews)."""
    cond_a, uncond_a = rows(model_a, step, uncond=reads_uncond(step))
    cond_b, _ = rows(model_b, step, uncond=False)
    uncond_a = _no_uncond(cond_a, step) if uncond_a is None else uncond_a
    guided_a = combine(uncond_a, cond_a, model_a.conditioning.conds_list, step.cfg_scale, step.cfg_rule)
    positive_a = combine(uncond_a, cond_a, model_a.conditioning.conds_list, 1.0, step.cfg_rule)
    positive_b = combine(uncond_a, cond_b, model_b.conditioning.conds_list, 1.0, step.cfg_rule)
    return cross_model_guidance(guided_a, positive_a, positive_b, weight), difference_map(positive_a, positive_b)


def base_uncond_step(model_a: Model, model_b: Model, step: StepInput) -> torch.Tensor:
    """B's unconditional prediction under A's conditional ones
    (:func:`lib_fusion.fusion.guidance.base_uncond`): A on its cond rows only, B on its uncond rows only."""
    cond_a, _ = rows(model_a, step, uncond=False)
    _, uncond_b = rows(model_b, step, cond=False)
    return base_uncond(uncond_b, cond_a, model_a.conditioning.conds_list, step.cfg_scale, step.cfg_rule)


def response_of_b(
    guided_b: torch.Tensor, uncond_b: torch.Tensor, uncond_a: torch.Tensor, cfg_scale: float, reference: snb.SaliencyUncond
) -> torch.Tensor:
    """Model B's guidance response, whose saliency competes with A's (algorithms.md section 1, step 3).

    ``own``: ``guided_B - u_B`` = ``sum_j w_j s (c_j - u_B)``, B's own CFG term.
    ``solo`` (the official ``p_sample_ddim``): ``d_B = s (k_B - u_A)``, B's cond measured
    against A's uncond. Written over B's guided prediction this is
    ``(guided_B - u_B) + s (u_B - u_A)``: the difference of the two unconds enters scaled by
    the CFG scale ``s``, not once. With ``AND`` sub-prompts (weights ``w_j``) it reads
    ``sum_j w_j s (c_j - u_B) + s (u_B - u_A)``, which for one prompt of weight 1 is the
    official ``s (k_B - u_A)`` exactly. The formula is linear, so it holds in x0 units too
    (k-diffusion outputs): :func:`eps_response` divides it by sigma afterwards.
    """
    own = guided_b - uncond_b
    if reference == "own":
        return own
    if reference != "solo":
        raise ValueError(f"saliency_uncond must be 'solo' (official: B against A's uncond) or 'own', got {reference!r}")
    return own + (uncond_b - uncond_a) * cfg_scale


def spread_to_rows(per_image: torch.Tensor, host_conds_list: CondsList) -> torch.Tensor:
    """Host rows whose CFG combine gives back ``per_image`` exactly.

    Every cond row and the uncond row of image i carry the same prediction, so
    ``u + sum (c - u) w s`` equals it bit for bit, whatever the weights, the scale, or a
    skipped uncond (the host then copies the first cond row).
    """
    cond_images = [i for i, conds in enumerate(host_conds_list) for _ in conds]
    return pick(per_image, cond_images + list(range(per_image.shape[0])))

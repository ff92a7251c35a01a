"""Two more training-free rules for running two checkpoints in one sampling, in plain torch.

Both are written over the WebUI's own classifier-free guidance (``combine_denoised``), where
image i has an unconditional prediction ``u_i`` and one conditional row ``c_ij`` with weight
``w_ij`` per ``AND`` sub-prompt, at CFG scale ``s``::

    combine(u, c, s)_i = u_i + sum_j (c_ij - u_i) w_ij s

Every rule is affine in the predictions, so it holds alike for eps (timestep samplers) and
for denoised x0 (k-diffusion samplers, ``x0 = x - sigma eps`` at one x and sigma).

Forge computes the same combine in another order (:data:`CfgRule`); each host's rule is
followed operation for operation, so that a rule which reduces to plain CFG gives the host's
plain image bit for bit.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

CondsList = list[list[tuple[int, float]]]
CfgRule = Literal["sum", "weighted_mean"]
"""How the host combines ``AND`` sub-prompts. ``sum``: AUTOMATIC1111's ``combine_denoised``,
each sub-prompt's difference added to the uncond. ``weighted_mean``: Forge's
``sampling_function``, the sub-prompts averaged by weight, the difference scaled by CFG and
by the weights' sum, and CFG 1 served by the cond alone. Equal in exact arithmetic (but at
CFG 1 with weights not summing to 1, where Forge's shortcut drops ``u (1 - sum w)``)."""


def combine(uncond: torch.Tensor, cond_rows: torch.Tensor, conds_list: CondsList, scale: float, rule: CfgRule = "sum") -> torch.Tensor:
    """``u_i + sum_j (c_ij - u_i) (w_ij s)``: the host's CFG combine, operation for operation
    (so a rule that reduces to it reduces to the plain image bit for bit). ``cond_rows`` are in
    the order of ``conds_list``: image after image, sub-prompt after sub-prompt."""
    if rule == "weighted_mean":
        return _forge_combine(uncond, cond_rows, conds_list, scale)
    if all(len(conds) == 1 for conds in conds_list) and len({conds[0][1] for conds in conds_list}) == 1:
        # One sub-prompt per image, one weight (the usual prompt): one operation over the batch.
        return uncond + (cond_rows[: len(conds_list)] - uncond) * (conds_list[0][0][1] * scale)
    result = uncond.clone()
    for (_, weight), spans in _terms(conds_list).items():  # sub-prompt j of every image before j + 1
        for image, row, length in spans:
            result[image : image + length] += (cond_rows[row : row + length] - uncond[image : image + length]) * (weight * scale)
    return result


def _forge_combine(uncond: torch.Tensor, cond_rows: torch.Tensor, conds_list: CondsList, scale: float) -> torch.Tensor:
    """Forge's combine: images that share their sub-prompts' weights (the usual batch of one
    prompt) as one batch, as Forge runs them; others image by image."""
    weights = [tuple(weight for _, weight in conds) for conds in conds_list]
    if len(set(weights)) == 1:
        return _weighted_mean(uncond, cond_rows.unflatten(0, (len(conds_list), len(weights[0]))), weights[0], scale)
    parts, start = [], 0
    for image, image_weights in enumerate(weights):
        sub_prompts = cond_rows[start : start + len(image_weights)].unsqueeze(0)
        parts.append(_weighted_mean(uncond[image : image + 1], sub_prompts, image_weights, scale))
        start += len(image_weights)
    return torch.cat(parts)


def _weighted_mean(uncond: torch.Tensor, sub_prompts: torch.Tensor, weights: tuple[float, ...], scale: float) -> torch.Tensor:
    """Forge's ``calc_cond_uncond_batch`` and ``sampling_function_inner`` on (images,
    sub-prompts, ...) rows: ``c = sum_j w_j c_j / (1e-37 + sum_j w_j)``, accumulated from the
    last sub-prompt to the first (Forge pops its batch in that order), then
    ``u + (c - u) s [* sum w]``; at CFG 1 (Forge runs no uncond) ``c s [* sum w]``."""
    one = torch.ones((), dtype=uncond.dtype, device=uncond.device)
    total, summed = one * 1e-37, torch.zeros_like(uncond)
    for position in reversed(range(len(weights))):
        mult = one * weights[position]
        summed += sub_prompts[:, position] * mult
        total += mult
    positive = summed / total
    without_uncond = math.isclose(scale, 1.0)
    difference = (positive if without_uncond else positive - uncond) * scale
    strength = sum(weights)
    if not math.isclose(strength, 1.0):
        difference = difference * strength
    return difference if without_uncond else uncond + difference


def _terms(conds_list: CondsList) -> dict[tuple[int, float], list[tuple[int, int, int]]]:
    """The combine's terms grouped by (sub-prompt position, weight), each group as runs of
    consecutive images whose cond rows are consecutive too: (first image, first row, length).
    Slices of the batch, so no index tensor is built; keys come in sub-prompt order."""
    terms: dict[tuple[int, float], list[tuple[int, int, int]]] = {}
    row = 0
    for image, conds in enumerate(conds_list):
        for position, (_, weight) in enumerate(conds):
            spans = terms.setdefault((position, weight), [])
            if spans and spans[-1][0] + spans[-1][2] == image and spans[-1][1] + spans[-1][2] == row:
                spans[-1] = (spans[-1][0], spans[-1][1], spans[-1][2] + 1)
            else:
                spans.append((image, row, 1))
            row += 1
    return dict(sorted(terms.items(), key=lambda item: item[0][0]))


def cross_model_guidance(guided_a: torch.Tensor, positive_a: torch.Tensor, positive_b: torch.Tensor, weight: float) -> torch.Tensor:
    """Guide model A away from a weaker model B (autoguidance, Karras et al., NeurIPS 2024,
    equation 1 with the CFG of the WebUI on top; W2SD 2025 on SD checkpoint pairs)::

        D = D_A(u) + s (D_A(c) - D_A(u)) + (w - 1) (D_A(c) - D_B(c))

    ``guided_a`` is A's CFG result (the first two terms), ``positive_a`` and ``positive_b`` are
    ``D_A(c)`` and ``D_B(c)``; with ``AND`` sub-prompts each is ``combine(u_A, c_X, 1)``, so
    their difference is ``sum_j w_j (c_A,j - c_B,j)`` and B needs no uncond row. ``w = 1``
    is plain CFG exactly (the term is a zero added).
    """
    return guided_a + (positive_a - positive_b) * (weight - 1.0)


def base_uncond(
    uncond_b: torch.Tensor, cond_rows_a: torch.Tensor, conds_list_a: CondsList, scale: float, rule: CfgRule = "sum"
) -> torch.Tensor:
    """The negative branch from model B, the positive from model A ("Unconditional Priors
    Matter", 2025)::

        D = D_B(u) + s (D_A(c) - D_B(u))

    that is the WebUI's combine with B's unconditional prediction in place of A's. A's own
    uncond row is not needed. With B = A it is plain CFG.
    """
    return combine(uncond_b, cond_rows_a, conds_list_a, scale, rule)


def difference_map(positive_a: torch.Tensor, positive_b: torch.Tensor) -> torch.Tensor:
    """``|D_A(c) - D_B(c)|`` averaged over channels -> (N, 1, H, W): where the guidance pushes."""
    return (positive_a - positive_b).abs().float().mean(dim=1, keepdim=True)

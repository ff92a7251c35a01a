"""Rectified flow in the terms the papers use: a flow model's prediction in DDPM eps units, and
its step's place on the DDPM timestep axis of ``fusion_selection`` (``docs/flow.md``).

The flow-matching families (Flux, Chroma, Lumina, Z-Image, Qwen-Image …) noise a clean latent
as ``x_t = (1 - sigma) x0 + sigma eps`` with sigma in [0, 1], where the Stable Diffusion
families (in k-diffusion's sigma space) noise as ``x_t = x0 + sigma eps``. Forge's sampling
hands every family's prediction over as x0, so a change ``d_x0`` of the prediction at one
``x_t`` and sigma is, in eps units, ``d_eps = -(1 - sigma) / sigma * d_x0`` for flow and
``-d_x0 / sigma`` for the SD families. MagicFusion's saliency (its equation 3) is measured on
the eps response, and the softmax of ``k * S`` is not scale-free, so the units decide the mask.
"""

from __future__ import annotations

import torch


def eps_per_x0(sigma: torch.Tensor) -> torch.Tensor:
    """``|d_eps / d_x0|`` at a fixed flow latent: ``(1 - sigma) / sigma``.

    From ``x_t = (1 - sigma) x0 + sigma eps``: ``eps = (x_t - (1 - sigma) x0) / sigma``. At
    sigma 1 (the first step of a txt2img schedule) the latent is pure noise, every x0 gives the
    same eps, and the factor is exactly 0: no model's response can be told from another's there.
    """
    return (1 - sigma) / sigma


def ddpm_timestep(sigma_table: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The DDPM timestep in [0, 1000] at which a flow step stands: 1000 times the share of the
    family's own time still ahead.

    A flow family walks its time ``u`` from 1 (noise) to 0 (image) at the noise level
    ``S(u)``: the identity bent by the family's shift (SD3's ``shift u / (1 + (shift - 1) u)``,
    Flux's exponential one). Its predictor keeps ``S`` as a table, ``sigma_table[k] = S((k + 1) /
    N)``, and Neo's Normal and Simple schedules step evenly through ``u`` (Simple through the
    table's own entries). DDPM's ``t / 1000`` is the same share on the Stable Diffusion axis,
    where DDIM steps evenly in ``t``: so ``v1 = 600`` leaves the first 40 % of the denoising to
    one model on both.
    ``u`` is read back between the two entries around ``sigma`` (linear in sigma, from ``S(0) =
    0``): exact on the table's entries, and off by far less than a timestep between them.
    """
    table = sigma_table.detach().to("cpu", torch.float64)
    count = table.shape[0]
    knots = torch.cat([table.new_zeros(1), table])
    target = sigma.detach().to("cpu", torch.float64).clamp(0, float(knots[-1]))
    upper = torch.searchsorted(knots, target).clamp(1, count)
    low, high = knots[upper - 1], knots[upper]
    share = torch.where(high > low, (target - low) / (high - low).clamp_min(1e-300), torch.ones_like(target))
    return ((upper - 1 + share) / count * 1000).to(sigma.dtype)

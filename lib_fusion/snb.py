"""Saliency-aware Noise Blending (MagicFusion, ICCV 2023, section 3.2, equations 3-5).

Every function works on eps predictions of shape (N, C, H, W). Steps follow the official
``p_sample_ddim`` (MagicFusion.github.io @ eb5460c4) and ``docs/algorithms.md`` section 1:

1. guided eps per model: ``eps = u + s (k - u)``;
2. guidance responses ``d_A = s (k_A - u_A)`` and ``d_B = s (k_B - u_A)`` (official quirk:
   B measured against A's uncond; ``saliency_uncond="own"`` uses ``u_B``);
3. saliency ``S = mean_c(blur(|d|))``;
4. ``L = softmax_hw(k S)`` with ``kg`` for A and ``ke`` for B (equation 4);
5. mask: B where ``L_B > L_A`` (ties go to A), or B's share ``L_B / (L_A + L_B)`` when soft;
6. fused eps: the masked choice between the guided eps (equation 5).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

Blur = Literal["box", "gaussian"]
SaliencyUncond = Literal["solo", "own"]

GAUSSIAN_SIGMA = 1.0
"""Latent pixels; matches the reach of the official 4x4 box (radius ~1.5 px)."""


def box_blur(x: torch.Tensor) -> torch.Tensor:
    """The official blur: 4x4 average (stride 1, padding 1, zeros counted), resized back.

    The pool maps (h, w) to (h-1, w-1); a bilinear resize (align_corners=False) restores
    (h, w). Latents smaller than 2 pixels on a side cannot be pooled and pass unchanged.
    """
    h, w = x.shape[-2:]
    if h < 2 or w < 2:
        return x
    pooled = F.avg_pool2d(x, kernel_size=4, stride=1, padding=1, count_include_pad=True)
    return F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: float = GAUSSIAN_SIGMA) -> torch.Tensor:
    """A size-preserving, centred alternative to :func:`box_blur` (separable, reflect padding)."""
    radius = max(1, round(2 * sigma))
    h, w = x.shape[-2:]
    if h <= radius or w <= radius:
        return x
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), horizontal, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), vertical, groups=channels)


def saliency(response: torch.Tensor, blur: Blur = "box") -> torch.Tensor:
    """Saliency map of a guidance response: blurred magnitude, averaged over channels -> (N, 1, H, W)."""
    magnitude = response.abs().float()
    if blur == "box":
        blurred = box_blur(magnitude)
    elif blur == "gaussian":
        blurred = gaussian_blur(magnitude)
    else:
        raise ValueError(f"blur must be 'box' or 'gaussian', got {blur!r}")
    return blurred.mean(dim=1, keepdim=True)


def spatial_softmax(sal: torch.Tensor, k: float) -> torch.Tensor:
    """Equation 4: softmax of ``k * S`` over all H*W positions of each sample."""
    n, c, h, w = sal.shape
    return torch.softmax(k * sal.reshape(n, c * h * w), dim=1).reshape(n, c, h, w)


def saliency_mask(sal_a: torch.Tensor, sal_b: torch.Tensor, kg: float, ke: float, soft: bool = False) -> torch.Tensor:
    """Which model to trust per latent pixel: 1 = B. Hard: ``L_B > L_A`` (ties to A); soft: B's share."""
    la = spatial_softmax(sal_a, kg)
    lb = spatial_softmax(sal_b, ke)
    if soft:
        return lb / (la + lb)
    return (lb > la).to(la.dtype)


class Fused(NamedTuple):
    """A blended step and what decided it (the saliency maps feed the previews)."""

    prediction: torch.Tensor
    mask: torch.Tensor
    """(N, 1, H, W): 1 where B was chosen (soft: B's weight)."""
    saliency_a: torch.Tensor
    saliency_b: torch.Tensor


def fuse_guided(
    eps_a: torch.Tensor,
    eps_b: torch.Tensor,
    response_a: torch.Tensor,
    response_b: torch.Tensor,
    kg: float,
    ke: float,
    blur: Blur = "box",
    soft: bool = False,
) -> Fused:
    """Blend two guided eps predictions given their guidance responses (steps 3-6).

    Useful when the guided eps was already combined (e.g. the WebUI's ``AND`` sub-prompts
    with weights); :func:`blend` is the paper's form over raw cond/uncond predictions.
    """
    sal_a, sal_b = saliency(response_a, blur), saliency(response_b, blur)
    mask = saliency_mask(sal_a, sal_b, kg, ke, soft)
    if soft:
        prediction = eps_a + mask.to(eps_a.dtype) * (eps_b - eps_a)
    else:
        prediction = torch.where(mask.bool(), eps_b, eps_a)
    return Fused(prediction, mask, sal_a, sal_b)


def blend(
    uncond_a: torch.Tensor,
    cond_a: torch.Tensor,
    uncond_b: torch.Tensor,
    cond_b: torch.Tensor,
    cfg_scale: float,
    kg: float,
    ke: float,
    saliency_uncond: SaliencyUncond = "solo",
    blur: Blur = "box",
    soft: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SNB of model A (``kg``, the model used alone outside the window) and model B (``ke``).

    Inputs are eps predictions (N, C, H, W). Returns the fused guided eps and the mask
    (N, 1, H, W): 1 where B was chosen (soft: B's weight).
    """
    _check_shapes(uncond_a, cond_a, uncond_b, cond_b)
    if saliency_uncond not in ("solo", "own"):
        raise ValueError(f"saliency_uncond must be 'solo' (official: B against A's uncond) or 'own', got {saliency_uncond!r}")
    eps_a = uncond_a + cfg_scale * (cond_a - uncond_a)
    eps_b = uncond_b + cfg_scale * (cond_b - uncond_b)
    response_a = cfg_scale * (cond_a - uncond_a)
    reference_b = uncond_a if saliency_uncond == "solo" else uncond_b
    response_b = cfg_scale * (cond_b - reference_b)
    fused = fuse_guided(eps_a, eps_b, response_a, response_b, kg, ke, blur, soft)
    return fused.prediction, fused.mask


def _check_shapes(*tensors: torch.Tensor) -> None:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"SNB needs four eps tensors of one shape (N, C, H, W), got {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 4:
        raise ValueError(f"SNB needs (N, C, H, W) tensors, got shape {shape}")

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

Options beyond the paper, off by default: the composite baseline (``mean``: half of each, no
saliency), Face-diffuser's variant (CVPR 2024: a 3x3 Gaussian, softmax and mask per latent
channel) and a temporal mask (:class:`MaskMemory`).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

Blur = Literal["box", "gaussian", "gaussian3"]
SaliencyUncond = Literal["solo", "own"]
MaskRule = Literal["hard", "soft", "mean"]

GAUSSIAN_SIGMA = 1.0
"""Latent pixels; matches the reach of the official 4x4 box (radius ~1.5 px)."""
GAUSSIAN3_SIGMA = 0.8
"""The 3x3 Gaussian of Face-diffuser (CVPR 2024); sigma as OpenCV derives it for a 3-tap
kernel, ``0.3 ((3 - 1) / 2 - 1) + 0.8``."""


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


def gaussian_blur(x: torch.Tensor, sigma: float = GAUSSIAN_SIGMA, radius: int | None = None) -> torch.Tensor:
    """A size-preserving, centred alternative to :func:`box_blur` (separable, reflect padding)."""
    radius = radius or max(1, round(2 * sigma))
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


def saliency(response: torch.Tensor, blur: Blur = "box", per_channel: bool = False) -> torch.Tensor:
    """Saliency map of a guidance response: blurred magnitude, averaged over channels ->
    (N, 1, H, W); with ``per_channel`` (Face-diffuser) one map per latent channel -> (N, C, H, W)."""
    magnitude = response.abs().float()
    if blur == "box":
        blurred = box_blur(magnitude)
    elif blur == "gaussian":
        blurred = gaussian_blur(magnitude)
    elif blur == "gaussian3":
        blurred = gaussian_blur(magnitude, GAUSSIAN3_SIGMA, radius=1)
    else:
        raise ValueError(f"blur must be 'box', 'gaussian' or 'gaussian3', got {blur!r}")
    return blurred if per_channel else blurred.mean(dim=1, keepdim=True)


def spatial_softmax(sal: torch.Tensor, k: float) -> torch.Tensor:
    """Equation 4: softmax of ``k * S`` over all H*W positions of each sample and map."""
    n, c, h, w = sal.shape
    return torch.softmax(k * sal.reshape(n, c, h * w), dim=2).reshape(n, c, h, w)


def saliency_mask(sal_a: torch.Tensor, sal_b: torch.Tensor, kg: float, ke: float, rule: MaskRule = "hard") -> torch.Tensor:
    """Which model to trust per latent pixel (and channel, for per-channel maps): 1 = B.
    ``hard``: ``L_B > L_A`` (ties to A); ``soft``: B's share ``L_B / (L_A + L_B)``; ``mean``:
    one half everywhere (the composite baseline, no saliency)."""
    if rule == "mean":
        return torch.full_like(sal_a, 0.5)
    if rule == "soft":
        # L_B / (L_A + L_B) = sigmoid(log L_B - log L_A): the same share, but finite where both
        # softmax values underflow to 0 (large kg, ke), which the quotient turns into NaN.
        la, lb = _both_softmax(sal_a, kg, sal_b, ke, torch.log_softmax)
        return torch.sigmoid(lb - la)
    la, lb = _both_softmax(sal_a, kg, sal_b, ke, torch.softmax)
    return (lb > la).to(la.dtype)


def _both_softmax(sal_a: torch.Tensor, kg: float, sal_b: torch.Tensor, ke: float, softmax) -> tuple[torch.Tensor, torch.Tensor]:
    """Equation 4 for both models in one call: ``softmax(kg S_A)`` and ``softmax(ke S_B)``
    stacked on the batch axis (each row is normalised on its own, so stacking changes nothing)."""
    n, c, h, w = sal_a.shape
    logits = torch.cat([kg * sal_a, ke * sal_b]).reshape(2 * n, c, h * w)
    return softmax(logits, dim=2).reshape(2 * n, c, h, w).chunk(2)


class MaskMemory:
    """A steadier SNB mask over the steps of one sampling pass (off by default, official).

    ``decay`` in [0, 1): the saliency maps are an exponential moving average over the fused
    steps, ``S <- decay S + (1 - decay) S_t`` (the first step's maps start it), so one
    step's noise flips fewer pixels. ``freeze_after`` > 0: after that many fused steps the
    mask stays as it was last computed.
    """

    def __init__(self, decay: float = 0.0, freeze_after: int = 0) -> None:
        self.decay = decay
        self.freeze_after = freeze_after
        self.steps = 0
        self.saliency: tuple[torch.Tensor, torch.Tensor] | None = None
        self.mask: torch.Tensor | None = None

    @property
    def frozen(self) -> bool:
        return self.freeze_after > 0 and self.steps >= self.freeze_after and self.mask is not None

    def smooth(self, sal_a: torch.Tensor, sal_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.decay > 0 and self.saliency is not None and self.saliency[0].shape == sal_a.shape:
            previous_a, previous_b = self.saliency
            sal_a = previous_a * self.decay + sal_a * (1 - self.decay)
            sal_b = previous_b * self.decay + sal_b * (1 - self.decay)
        self.saliency = (sal_a, sal_b)
        return sal_a, sal_b

    def remember(self, mask: torch.Tensor) -> torch.Tensor:
        self.mask, self.steps = mask, self.steps + 1
        return mask


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
    rule: MaskRule = "hard",
    per_channel: bool = False,
    memory: MaskMemory | None = None,
) -> Fused:
    """Blend two guided eps predictions given their guidance responses (steps 3-6).

    Useful when the guided eps was already combined (e.g. the WebUI's ``AND`` sub-prompts
    with weights); :func:`blend` is the paper's form over raw cond/uncond predictions.
    ``rule`` is the mask rule (:func:`saliency_mask`); ``memory`` carries the temporal
    options from step to step.
    """
    sal_a, sal_b = saliency(torch.cat([response_a, response_b]), blur, per_channel).chunk(2)  # one blur for both (rows are independent)
    if memory is not None and memory.frozen:
        mask = memory.mask
    else:
        if memory is not None:
            sal_a, sal_b = memory.smooth(sal_a, sal_b)
        mask = saliency_mask(sal_a, sal_b, kg, ke, rule)
        if memory is not None:
            memory.remember(mask)
    if rule == "hard":
        prediction = torch.where(mask.bool(), eps_b, eps_a)
    else:
        prediction = eps_a + mask.to(eps_a.dtype) * (eps_b - eps_a)
    return Fused(prediction, mask, sal_a, sal_b)


class FusedMany(NamedTuple):
    """A blended step of several models and what decided it."""

    prediction: torch.Tensor
    choice: torch.Tensor
    """(N, 1, H, W): the index of the model chosen per pixel (hard), or of the largest weight."""
    weights: torch.Tensor | None
    """(M, N, 1, H, W): each model's weight (soft and mean rules); None for the hard rule."""


def fuse_many(
    guided: list[torch.Tensor],
    responses: list[torch.Tensor],
    factors: list[float],
    blur: Blur = "box",
    rule: MaskRule = "hard",
    per_channel: bool = False,
) -> FusedMany:
    """SNB's rule over M >= 2 models (MagicFusion's equations 3-5 generalised): each model's
    saliency ``S_m`` (steps 3), ``L_m = softmax_hw(k_m S_m)`` (step 4, ``k_m`` its factor),
    and per pixel the model with the largest ``L_m``, ties to the earlier model (step 5: with
    two models, B where ``L_B > L_A``, exactly :func:`fuse_guided`'s choice). ``soft``: weights
    ``L_m / sum L``; ``mean``: ``1 / M`` each. Model 0 is A, the solo model."""
    count = len(guided)
    if count < 2 or not count == len(responses) == len(factors):
        raise ValueError(f"SNB over several models needs as many guided predictions, responses and factors (2 or more), got "
                         f"{len(guided)}, {len(responses)}, {len(factors)}")  # fmt: skip
    batch = guided[0].shape[0]
    maps = saliency(torch.cat(responses), blur, per_channel)  # one blur for all (rows are independent)
    n, c, h, w = maps.shape
    logits = torch.cat([factor * part for factor, part in zip(factors, maps.split(batch))]).reshape(n, c, h * w)
    if rule == "hard":
        values = torch.softmax(logits, dim=2).reshape(n, c, h, w).split(batch)
        choice, best, prediction = torch.zeros_like(values[0], dtype=torch.long), values[0], guided[0]
        for index in range(1, count):
            take = values[index] > best  # strictly larger: a tie stays with the earlier model
            choice = torch.where(take, index, choice)
            best = torch.where(take, values[index], best)
            prediction = torch.where(take, guided[index], prediction)
        return FusedMany(prediction, choice, None)
    if rule == "mean":
        weights = torch.full((count, *maps.split(batch)[0].shape), 1.0 / count, dtype=maps.dtype, device=maps.device)
    elif rule == "soft":
        # L_m / sum L = softmax over the models of log L_m: finite where every L underflows to 0.
        logs = torch.log_softmax(logits, dim=2).reshape(n, c, h, w).split(batch)
        weights = torch.softmax(torch.stack(logs), dim=0)
    else:
        raise ValueError(f"mask must be 'hard', 'soft' or 'mean', got {rule!r}")
    # sum_m w_m x_m written as x_0 + sum_{m>0} w_m (x_m - x_0) (the weights sum to 1): models
    # that agree add exact zeros, so copies of A give A's prediction bit for bit.
    prediction = guided[0]
    for weight, eps in zip(weights[1:], guided[1:]):
        prediction = prediction + weight.to(eps.dtype) * (eps - guided[0])
    return FusedMany(prediction, weights.argmax(dim=0), weights)


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
    fused = fuse_guided(eps_a, eps_b, response_a, response_b, kg, ke, blur, "soft" if soft else "hard")
    return fused.prediction, fused.mask


def _check_shapes(*tensors: torch.Tensor) -> None:
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"SNB needs four eps tensors of one shape (N, C, H, W), got {sorted(shapes)}")
    (shape,) = shapes
    if len(shape) != 4:
        raise ValueError(f"SNB needs (N, C, H, W) tensors, got shape {shape}")

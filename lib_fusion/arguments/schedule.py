"""The SNB fusion window: MagicFusion's ``fusion_selection="v1,kg,ke"`` plus ``mode``.

In the official ``p_sample_ddim`` the step's DDPM timestep ``t`` is compared with ``v1``
(strictly, ``t > v1``): mode 1 runs model A alone while ``t > v1`` and fuses afterwards,
mode 2 fuses while ``t > v1`` and then runs A alone, mode 0 never fuses.
"""

from __future__ import annotations

import math
from enum import Enum

from lib_fusion.arguments.messages import shown

T_MAX = 1000.0
"""DDPM timesteps run over [0, 1000); v1 beyond that range is meaningless."""

K_MAX = 1000.0
"""Upper bound for kg/ke: larger factors overflow the softmax logits in fp16."""
K_MIN = 1e-6
"""Lower bound for kg/ke: far below any useful factor; float16 rounds factors not much
smaller (under 3e-8) to 0, which would flatten the softmax."""


class StepKind(str, Enum):
    """What one denoiser call needs."""

    SOLO = "solo"
    FUSED = "fused"


def parse_fusion_selection(text: str) -> tuple[float, float, float]:
    """Parse the paper's ``"v1,kg,ke"`` string into floats.

    v1 is a DDPM timestep in [0, 1000]; kg and ke are the softmax temperatures of
    equation 4 (saliency of model A and of model B), finite and in [1e-6, 1000].
    Raises ``ValueError`` naming the bad part.
    """
    if not isinstance(text, str):
        raise ValueError(f"fusion_selection must be a string like '600,1,1', got {type(text).__name__}")
    quoted = shown(text, 60)
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3 or any(part == "" for part in parts):
        raise ValueError(f"fusion_selection {quoted} must have three comma-separated numbers 'v1,kg,ke', e.g. '600,1,1'")
    values = []
    for name, part in zip(("v1", "kg", "ke"), parts):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"fusion_selection {quoted}: {name}={shown(part, 30)} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"fusion_selection {quoted}: {name}={part} must be finite")
        values.append(value)
    v1, kg, ke = values
    if not 0.0 <= v1 <= T_MAX:
        raise ValueError(f"fusion_selection {quoted}: v1={v1:g} must be a DDPM timestep in [0, {T_MAX:g}]")
    for name, value in (("kg", kg), ("ke", ke)):
        if not K_MIN <= value <= K_MAX:
            raise ValueError(f"fusion_selection {quoted}: {name}={value:g} must be in [{K_MIN:g}, {K_MAX:g}]")
    return v1, kg, ke


def format_fusion_selection(v1: float, kg: float, ke: float) -> str:
    """Inverse of :func:`parse_fusion_selection` with the shortest exact spelling."""
    return ",".join(_short(value) for value in (v1, kg, ke))


def _short(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def is_above(t: float, v1: float) -> bool:
    """The official test ``t > v1``, with the ends of v1's range made exact on every sampler.

    The official DDIM's timesteps are 1 ... 991, so ``v1 = 0`` puts every step above the
    boundary and ``v1 = 1000`` none. The WebUI's k-diffusion samplers also evaluate the model
    at ``t = 0`` (Euler's last step, at ``sigma_min``): ``v1 = 0`` keeps that step above too,
    so "mode 1, v1 = 0" never fuses and "mode 2, v1 = 0" fuses every step on every sampler,
    as on the official DDIM. No step's t exceeds 999, so ``v1 = 1000`` is below none.
    """
    return t > v1 or v1 <= 0.0


def is_fused(t: float, v1: float, mode: int) -> bool:
    """Whether the step at DDPM timestep ``t`` blends both models (official test ``t > v1``)."""
    if mode == 0:
        return False
    if mode == 1:
        return not is_above(t, v1)
    if mode == 2:
        return is_above(t, v1)
    raise ValueError(f"mode must be 0 (no fusion), 1 (fuse when t <= v1) or 2 (fuse while t > v1), got {mode!r}")


def step_kind(t: float, v1: float, mode: int) -> StepKind:
    """The passes a step needs: both models (FUSED) or model A alone (SOLO)."""
    return StepKind.FUSED if is_fused(t, v1, mode) else StepKind.SOLO

"""The DDPM timestep of each step a WebUI sampler will take (for the accordion's schedule label).

The sampler is built as the WebUI builds it for a generation, and asked for its schedule
the way its ``sample`` asks: k-diffusion samplers for their sigmas (scheduler included),
turned into timesteps by the model's own ``sigma_to_t``; the timestep samplers (DDIM, PLMS,
UniPC) for their timesteps. Only a label reads this, so any failure gives None (the label
then shows the timestep range alone).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from modules import shared

from lib_fusion.host.probe import host_module


def step_timesteps(sampler_name: str, scheduler: str | None, steps: Any) -> list[float] | None:
    """The timestep of each of ``steps`` steps, first to last, or None when unknown."""
    try:
        count = int(steps)
        if not 1 <= count <= 1000 or shared.sd_model is None:
            return None
        sampler = host_module("modules.sd_samplers").create_sampler(sampler_name, shared.sd_model)
        p = SimpleNamespace(
            scheduler=scheduler or "Automatic", hr_scheduler=None, is_hr_pass=False, sampler_noise_scheduler_override=None,
            extra_generation_params={},
        )  # fmt: skip
        with torch.no_grad():
            if hasattr(sampler, "get_sigmas"):
                sigmas = sampler.get_sigmas(p, count)[:-1]  # the last sigma (0) is where sampling ends, not a step
                device = getattr(shared.sd_model, "device", sigmas.device)  # Forge's engine has none: its schedule follows the sigmas
                timesteps = sampler.model_wrap.sigma_to_t(sigmas.to(device))
            else:
                timesteps = sampler.get_timesteps(p, count).flip(0)
        return [float(t) for t in timesteps.tolist()][:count]
    except Exception:  # a label only: never fail the UI for it
        return None

"""The DDPM timestep of each step a WebUI sampler will take (for the accordion's schedule label
and the check, before anything loads, that some pass reaches the fusion window).

The sampler is built as the WebUI builds it for a generation, and asked for its schedule
the way its ``sample`` asks: k-diffusion samplers for their sigmas (scheduler included),
turned into timesteps by the model's own ``sigma_to_t``; the timestep samplers (DDIM, PLMS,
UniPC) for their timesteps. Any failure gives None: the label then shows the timestep range
alone, and the generation leaves the window to the check after its first batch.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any, Callable

import torch
from modules import shared

from lib_fusion.fusion.flow import ddpm_timestep
from lib_fusion.host.probe import host_module, noise_form, runs_forge

OWN_SCHEDULE = ("UniPC",)
"""Timestep samplers that step through a schedule of their own, not ``get_timesteps``: their
steps are not foreseen (None)."""


def step_timesteps(sampler_name: str, scheduler: str | None, steps: Any, strength: Any = None) -> list[float] | None:
    """The timestep of each step, first to last, or None when unknown. ``strength``: img2img's
    denoising strength, with which the sampler steps through only the end of its schedule
    (``setup_img2img_steps``)."""
    try:
        count = int(steps)
        if not 1 <= count <= 1000 or shared.sd_model is None:
            return None
        schedule_steps, kept = count, count
        if strength is not None:
            schedule_steps, kept = img2img_steps(count, float(strength))
        sampler = host_module("modules.sd_samplers").create_sampler(sampler_name, shared.sd_model)
        p = SimpleNamespace(
            scheduler=scheduler or "Automatic",
            hr_scheduler=None,
            is_hr_pass=False,
            sampler_noise_scheduler_override=None,
            extra_generation_params={},
            denoising_strength=strength,
            steps=count,
            sd_model=shared.sd_model,
        )  # fmt: skip (sd_model: Neo picks its Automatic schedule by the model's kind)
        with torch.no_grad():
            if hasattr(sampler, "get_sigmas"):
                sigmas = sampler.get_sigmas(p, schedule_steps)[:-1]  # the last sigma (0) is where sampling ends, not a step
                if runs_forge():
                    timesteps_tensor = forge_timesteps(shared.sd_model.forge_objects.unet.model.predictor)(sigmas)
                else:
                    timesteps_tensor = sampler.model_wrap.sigma_to_t(sigmas.to(shared.sd_model.device))
                timesteps = [float(t) for t in timesteps_tensor.tolist()][:schedule_steps]
                return timesteps[schedule_steps - kept - 1 :] if strength is not None else timesteps
            if sampler_name in OWN_SCHEDULE:
                return None
            timesteps = [float(t) for t in sampler.get_timesteps(p, schedule_steps).flip(0).tolist()]
            timesteps = timesteps[len(timesteps) - kept :] if strength is not None else timesteps  # img2img: the last ones
            return timesteps[:-1]  # DDIM and PLMS never call the model at the schedule's lowest timestep
    except Exception:  # unknown, never an error: neither the UI nor a generation fails for it
        return None


def forge_timesteps(predictor: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The DDPM timestep of a Forge predictor's noise levels: the Stable Diffusion families' own
    (``predictor.timestep``: the nearest of the 1000, what the UNet sees), a rectified flow's
    share of its own time (:func:`lib_fusion.fusion.flow.ddpm_timestep`; its ``timestep`` is
    the DiT's input, ``1000 sigma`` or ``sigma``, on no shared axis). Asked once per pass."""
    if noise_form(predictor) == "flow":  # the table read to the host once, not every step
        return functools.partial(ddpm_timestep, predictor.sigmas.detach().to("cpu", torch.float64))
    return predictor.timestep


def img2img_steps(steps: int, strength: float) -> tuple[int, int]:
    """(the schedule's length, ``t_enc``) of an img2img pass, as the WebUI's
    ``sd_samplers_common.setup_img2img_steps`` makes them: the k-diffusion samplers then run the
    last ``t_enc + 1`` steps of the schedule, the timestep samplers the last ``t_enc``."""
    strength = min(strength, 0.999)
    if getattr(shared.opts, "img2img_fix_steps", False):  # "do exactly the amount of steps the slider specifies"
        return (int(steps / strength) if strength > 0 else 0), steps - 1
    return steps, int(strength * steps)

"""What a checkpoint's UNet predicts (eps or v), learned as AUTOMATIC1111 learns it, and the
host denoiser that turns each fusion UNet's output into the sampler's units.

AUTOMATIC1111 1.10 ties the prediction type to a checkpoint's config: a ``.yaml`` beside the
file, else the config it guesses from the weights, where only SD 2.x is told apart by running
its UNet once (``sd_models_config.is_using_v_parameterization_for_sd2``); ldm configs say
``parameterization: v``, sgm's (SDXL) a ``VScaling`` denoiser. The sampler then wraps the
active model in the denoiser of its type (``CompVisDenoiser`` / ``CompVisVDenoiser`` for
k-diffusion, ``CompVisTimestepsDenoiser`` / ``CompVisTimestepsVDenoiser`` for DDIM, PLMS and
UniPC), which outputs x0 or eps whatever the UNet predicts. A fusion UNet gets the denoiser of
its own type from the same pair, so a mixed eps/v pair is fused in one unit
(``docs/methods.md``, "Prediction types"). Forge gives every engine its own predictor and needs
nothing of this module.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from modules import shared

from lib_fusion.arguments.args import TITLE
from lib_fusion.arguments.messages import shown
from lib_fusion.host.probe import HostError, host_module

PredictionType = Literal["eps", "v"]

SD2_TEXT_WIDTH = 1024
"""SD 2.x's OpenCLIP width: the family whose prediction type AUTOMATIC1111 guesses from the weights."""


def config_prediction(config: Any) -> PredictionType | None:
    """The prediction type a config states (None: it states none, so the family's default)."""
    params = config.get("model", {}).get("params", {})
    if params.get("parameterization") in ("eps", "v"):
        return params.get("parameterization")
    scaling = params.get("denoiser_config", {}).get("params", {}).get("scaling_config", {}).get("target", "")
    if scaling:
        return "v" if scaling.endswith(".VScaling") else "eps"
    return None


def checkpoint_prediction(info: Any, active_config: Any, unet: torch.nn.Module) -> PredictionType:
    """What the fusion checkpoint's ``unet`` (built with the active config) predicts, as
    AUTOMATIC1111 would have it were the checkpoint loaded as the active one: the ``.yaml``
    beside it, else its UNet's answer to the SD 2.x test, else eps."""
    from omegaconf import OmegaConf

    beside = host_module("modules.sd_models_config", "to learn what a checkpoint predicts").find_checkpoint_config_near_filename(info)
    if beside is not None:
        return config_prediction(OmegaConf.load(beside)) or "eps"
    params = active_config.model.params
    unet_params = (params.get("unet_config") or {}).get("params", {})
    if "network_config" not in params and unet_params.get("context_dim") == SD2_TEXT_WIDTH:
        return "v" if _answers_the_v_test(unet, SD2_TEXT_WIDTH) else "eps"
    return "eps"


@torch.no_grad()
def _answers_the_v_test(unet: torch.nn.Module, context_width: int) -> bool:
    """AUTOMATIC1111's SD 2.x test, run on the UNet already built (the same weights in the same
    architecture; the WebUI builds a second one): at t = 999 on a constant latent and context,
    a v model's output lies more than 1 below its input on average."""
    weight = next(unet.parameters())
    x_test = torch.full((1, 4, 8, 8), 0.5, device=weight.device, dtype=weight.dtype)
    context = torch.full((1, 2, context_width), 0.5, device=weight.device, dtype=weight.dtype)
    with host_module("modules.devices").autocast():  # as the WebUI runs it: a half UNet's time embedding is float
        out = unet(x_test, torch.asarray([999], device=weight.device), context=context)
    return float((out.float() - x_test.float()).mean()) < -1


def active_prediction() -> PredictionType:
    return "v" if getattr(shared.sd_model, "parameterization", "eps") == "v" else "eps"


def denoiser_class(inner: Any, prediction: PredictionType, title: str, sampler: str) -> type:
    """The host's denoiser class for a UNet that predicts ``prediction``: the sampler's own
    (``type(inner)``) when the active checkpoint predicts the same, else its counterpart of the
    same kind (k-diffusion or timesteps). A denoiser without one (LCM's) cannot convert."""
    active, own = active_prediction(), type(inner)
    if prediction == active:
        return own
    for pair in _denoiser_pairs():
        if own is pair[active]:
            return pair[prediction]
    raise HostError(
        f"{TITLE}: fusion checkpoint {shown(title)} predicts {prediction} and the active checkpoint predicts {active}; "
        f"the sampler {shown(sampler)} converts only the active checkpoint's kind ({own.__name__}). "
        f"Choose Euler, DPM++ or DDIM, or a fusion checkpoint that predicts {active}"
    )


def _denoiser_pairs() -> list[dict[str, type]]:
    external = host_module("k_diffusion.external", "to convert a v-prediction checkpoint")
    timesteps = host_module("modules.sd_samplers_timesteps", "to convert a v-prediction checkpoint")
    return [
        {"eps": external.CompVisDenoiser, "v": external.CompVisVDenoiser},
        {"eps": timesteps.CompVisTimestepsDenoiser, "v": timesteps.CompVisTimestepsVDenoiser},
    ]

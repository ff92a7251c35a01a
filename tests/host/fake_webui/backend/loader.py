"""``forge_loader``: a checkpoint path to an engine, its family guessed from the weights
(Forge reads the file itself; a state dict fails since its PR #2224)."""

import os
import weakref

import flavour
import tiny_sd
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from backend import args
from backend.diffusion_engine.base import Flux, StableDiffusion, StableDiffusion3, StableDiffusionXL

UNET, SD1_TEXT, SDXL_TEXT = "model.diffusion_model.", "cond_stage_model.", "conditioner."
built = []
"""Weak references to every engine built (the stand-in's own record, for the tests)."""


def _part(weights, prefix):
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def forge_loader(sd, additional_state_dicts=None):
    engine = _forge_loader(sd, additional_state_dicts)
    built.append(weakref.ref(engine))
    return engine


@torch.inference_mode()
def _forge_loader(sd, additional_state_dicts=None):
    if not isinstance(sd, str):
        raise TypeError("expected str, bytes or os.PathLike object, not dict")
    if flavour.neo():  # Neo's loader resets the dynamic args and sets flags from the file's name
        args.dynamic_args.reset()
        args.dynamic_args.kontext = "kontext" in sd.lower()
    try:
        weights = load_file(sd)
        for module in additional_state_dicts or []:  # separate text encoders and VAEs, by path
            weights.update(load_file(module))
    except Exception as error:
        raise ValueError("Failed to recognize model type!") from error
    unet_weights = _part(weights, UNET)
    if "patch_in.weight" in unet_weights:  # a DiT: Neo tells its flow families by their keys
        return _flow_engine(weights, unet_weights)
    if "input.weight" not in unet_weights:
        raise ValueError("Failed to recognize model type!")
    hidden = unet_weights["input.weight"].shape[0]
    sdxl = any(k.startswith(SDXL_TEXT) for k in weights)
    context_dim = unet_weights["text.weight"].shape[1]
    unet = tiny_sd.TinyUNet(hidden=hidden, adm_in_channels=tiny_sd.ADM if sdxl else None, context_dim=context_dim)
    unet.load_state_dict(unet_weights)
    if sdxl:
        encoder = tiny_sd.TinyConditioner()
        encoder.load_state_dict(_part(weights, SDXL_TEXT))
        engine_class = StableDiffusionXL
    else:
        encoder = tiny_sd.FrozenCLIPEmbedder(context_dim)
        encoder.load_state_dict(_part(weights, SD1_TEXT))
        engine_class = StableDiffusion
    for module in (unet, encoder):
        module.eval().requires_grad_(False)
    return engine_class(unet, encoder, _prediction_type(sd, weights))


def _flow_engine(weights, unet_weights):
    """Flux when the DiT embeds a distilled guidance, SD3 otherwise."""
    flux = "guidance_in.weight" in unet_weights
    hidden = unet_weights["patch_in.weight"].shape[0]
    unet = tiny_sd.TinyDiT(hidden=hidden, context_dim=unet_weights["text_in.weight"].shape[1], guidance_embed=flux)
    unet.load_state_dict(unet_weights)
    encoder = tiny_sd.FrozenCLIPEmbedder(unet_weights["text_in.weight"].shape[1])
    if not _part(weights, SD1_TEXT):  # Neo: "Failed to load text encoder" (a DiT file shared alone needs its modules)
        raise ValueError("the checkpoint has no text encoder: choose one in the VAE / Text Encoder list")
    encoder.load_state_dict(_part(weights, SD1_TEXT))
    for module in (unet, encoder):
        module.eval().requires_grad_(False)
    return (Flux if flux else StableDiffusion3)(unet, encoder)


def _prediction_type(filename, weights):
    """Forge's: a ``.yaml`` beside the file (ldm's ``parameterization: v`` or sgm's
    ``VScaling``), else what the weights say (SDXL v-pred fine-tunes carry a ``v_pred`` key)."""
    config = os.path.splitext(filename)[0] + ".yaml"
    if os.path.isfile(config):
        params = OmegaConf.to_container(OmegaConf.load(config)).get("model", {}).get("params", {})
        scaling = params.get("denoiser_config", {}).get("params", {}).get("scaling_config", {}).get("target", "")
        if params.get("parameterization", "") == "v" or scaling.endswith(".VScaling"):
            return "v_prediction"
    return "v_prediction" if "v_pred" in weights else "epsilon"

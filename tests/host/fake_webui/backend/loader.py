"""``forge_loader``: a checkpoint path to an engine, its family guessed from the weights
(Forge reads the file itself; a state dict fails since its PR #2224)."""

import flavour
import tiny_sd
import torch
from safetensors.torch import load_file

from backend import args
from backend.diffusion_engine.base import StableDiffusion, StableDiffusionXL

UNET, SD1_TEXT, SDXL_TEXT = "model.diffusion_model.", "cond_stage_model.", "conditioner."


def _part(weights, prefix):
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


@torch.inference_mode()
def forge_loader(sd, additional_state_dicts=None):
    if not isinstance(sd, str):
        raise TypeError("expected str, bytes or os.PathLike object, not dict")
    if flavour.neo():  # Neo's loader resets the dynamic args and sets flags from the file's name
        args.dynamic_args.reset()
        args.dynamic_args.kontext = "kontext" in sd.lower()
    try:
        weights = load_file(sd)
    except Exception as error:
        raise ValueError("Failed to recognize model type!") from error
    unet_weights = _part(weights, UNET)
    if "input.weight" not in unet_weights:
        raise ValueError("Failed to recognize model type!")
    hidden = unet_weights["input.weight"].shape[0]
    sdxl = any(k.startswith(SDXL_TEXT) for k in weights)
    unet = tiny_sd.TinyUNet(hidden=hidden, adm_in_channels=tiny_sd.ADM if sdxl else None)
    unet.load_state_dict(unet_weights)
    if sdxl:
        encoder = tiny_sd.TinyConditioner()
        encoder.load_state_dict(_part(weights, SDXL_TEXT))
        engine_class = StableDiffusionXL
    else:
        encoder = tiny_sd.FrozenCLIPEmbedder()
        encoder.load_state_dict(_part(weights, SD1_TEXT))
        engine_class = StableDiffusion
    for module in (unet, encoder):
        module.eval().requires_grad_(False)
    return engine_class(unet, encoder)

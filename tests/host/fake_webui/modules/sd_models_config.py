"""How the WebUI picks a checkpoint's config (``modules/sd_models_config.py``): a ``.yaml`` beside
the file first; otherwise guessed from the weights, where an SD 2.x UNet (text width 1024) is
run once to tell v-prediction (768-v) from eps."""

import os

import tiny_sd
import torch

V_TEST_CONTEXT_WIDTH = 1024
"""SD 2.x's OpenCLIP width: the one family whose prediction type the WebUI guesses from the weights."""


def find_checkpoint_config_near_filename(info):
    if info is None:
        return None
    config = f"{os.path.splitext(info.filename)[0]}.yaml"
    return config if os.path.exists(config) else None


def is_using_v_parameterization_for_sd2(state_dict):
    """The WebUI's test: the UNet at t = 999 on a constant latent and context; a v model's
    output lies far below its input (``(out - x).mean() < -1``)."""
    unet_weights = {k[len("model.diffusion_model.") :]: v for k, v in state_dict.items() if k.startswith("model.diffusion_model.")}
    unet = tiny_sd.TinyUNet(hidden=unet_weights["input.weight"].shape[0], context_dim=V_TEST_CONTEXT_WIDTH)
    unet.load_state_dict(unet_weights)
    x_test = torch.ones((1, 4, 8, 8)) * 0.5
    with torch.no_grad():
        out = unet(x_test, torch.asarray([999]), context=torch.ones((1, 2, V_TEST_CONTEXT_WIDTH)) * 0.5)
    return (out - x_test).mean().item() < -1

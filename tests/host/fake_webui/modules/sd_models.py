"""Checkpoint list, lookup and loading for tiny checkpoints in a folder."""

import hashlib
import importlib
import os

import safetensors.torch
from backend import loader, memory_management
from omegaconf import OmegaConf

from modules import devices, sd_hijack, sd_hijack_clip, sd_models_config, shared

checkpoints_list = {}
checkpoint_aliases = {}
model_dir = None


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        self.name = os.path.basename(filename)
        self.model_name = os.path.splitext(self.name)[0]
        with open(filename, "rb") as f:
            self.shorthash = hashlib.sha256(f.read()).hexdigest()[:10]
        self.title = f"{self.name} [{self.shorthash}]"
        self.ids = [self.model_name, self.name, self.title, self.shorthash]

    def register(self):
        checkpoints_list[self.title] = self
        for id_ in self.ids:
            checkpoint_aliases[id_] = self


def list_models():
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    for name in sorted(os.listdir(model_dir)):
        if name.endswith((".safetensors", ".ckpt")):
            CheckpointInfo(os.path.join(model_dir, name)).register()


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    found = checkpoint_aliases.get(search_string)
    if found is not None:
        return found
    found = sorted([info for info in checkpoints_list.values() if search_string in info.title], key=lambda x: len(x.title))
    return found[0] if found else None


def read_state_dict(checkpoint_file, print_global_state=False, map_location=None):
    """safetensors, or a ``.ckpt`` through a restricted unpickler (the host's ``modules/safe.py``)."""
    if checkpoint_file.endswith(".ckpt"):
        import torch

        return torch.load(checkpoint_file, map_location=map_location or "cpu", weights_only=True)
    return safetensors.torch.load_file(checkpoint_file, device=map_location or "cpu")


def get_obj_from_str(string):
    module, cls = string.rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)


def instantiate_from_config(config, state_dict=None):
    return get_obj_from_str(config["target"])(**config.get("params", {}))


def repair_config(sd_config, state_dict=None):
    if hasattr(sd_config.model.params, "unet_config"):
        sd_config.model.params.unet_config.params.use_checkpoint = False


forge = False
"""The stand-in runs as Forge: models are Forge engines (``backend.loader.forge_loader``)."""


class ModelData:
    """Forge's ``model_data``: how the active checkpoint was loaded (``forge_loading_parameters``)."""

    def __init__(self):
        self.forge_loading_parameters = {}


model_data = ModelData()


def load_model(info, config_path):
    """Build the host model from a checkpoint (what ``sd_models.load_model`` does; as Forge,
    what ``forge_model_reload`` does)."""
    if forge:
        memory_management.unload_all_models()
        additional = list(getattr(shared.opts, "forge_additional_modules", []) or [])
        model_data.forge_loading_parameters = {"checkpoint_info": info, "additional_modules": additional, "unet_storage_dtype": None}
        model = loader.forge_loader(info.filename, additional_state_dicts=additional)
        model.sd_checkpoint_info, model.filename = info, info.filename
        shared.sd_model = model
        return model

    import tiny_sd

    state_dict = read_state_dict(info.filename)
    config_path = sd_models_config.find_checkpoint_config_near_filename(info) or config_path
    config = OmegaConf.load(config_path)
    params = config.model.params

    if "network_config" in params:  # SDXL: sgm names, the conditioner is the text encoder
        model = tiny_sd.TinySDXL(instantiate_from_config(params.network_config), instantiate_from_config(params.conditioner_config))
    else:
        text_encoder = instantiate_from_config(params.cond_stage_config)
        model = tiny_sd.TinySD(instantiate_from_config(params.unet_config), text_encoder, params.get("conditioning_key", "crossattn"))
    model.parameterization = _parameterization(params, state_dict)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if unexpected or [k for k in missing if k != "alphas_cumprod"]:
        raise RuntimeError(f"{info.filename} does not fit {config_path}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if model.is_sdxl:
        model.cond_stage_model = model.conditioner
    else:
        embeddings = text_encoder.transformer.text_model.embeddings
        embeddings.token_embedding = sd_hijack.EmbeddingsWithFixes(embeddings.token_embedding, sd_hijack.model_hijack)
        model.cond_stage_model = sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords(text_encoder, sd_hijack.model_hijack)
    model.used_config = config_path
    model.sd_checkpoint_info = info
    model.to(devices.device).eval().requires_grad_(False)
    model.model.diffusion_model.to(devices.dtype_unet)  # the WebUI halves the UNet unless --no-half
    shared.sd_model = model
    return model


def _parameterization(params, state_dict):
    """What the checkpoint's UNet predicts, as the WebUI learns it: ldm's ``parameterization``
    or sgm's ``VScaling`` in the config; an SD 2.x config that says neither is the one the WebUI
    guessed (``v2-inference-v.yaml`` when its v test answers yes)."""
    if "parameterization" in params:
        return params.parameterization
    scaling = params.get("denoiser_config", {}).get("params", {}).get("scaling_config", {}).get("target", "")
    if scaling.endswith(".VScaling"):
        return "v"
    unet_params = params.get("unet_config", {}).get("params", {})
    if unet_params.get("context_dim") == sd_models_config.V_TEST_CONTEXT_WIDTH:
        return "v" if sd_models_config.is_using_v_parameterization_for_sd2(state_dict) else "eps"
    return "eps"

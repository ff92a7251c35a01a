"""Checkpoint list, lookup and loading for tiny checkpoints in a folder."""

import hashlib
import importlib
import os

import safetensors.torch
from backend import loader, memory_management
from omegaconf import OmegaConf

from modules import devices, sd_hijack, sd_hijack_clip, shared

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


def load_model(info, config_path):
    """Build the host model from a checkpoint (what ``sd_models.load_model`` does; as Forge,
    what ``forge_model_reload`` does)."""
    if forge:
        memory_management.unload_all_models()
        model = loader.forge_loader(info.filename)
        model.sd_checkpoint_info, model.filename = info, info.filename
        shared.sd_model = model
        return model

    import tiny_sd

    config = OmegaConf.load(config_path)
    params = config.model.params

    if "network_config" in params:  # SDXL: sgm names, the conditioner is the text encoder
        model = tiny_sd.TinySDXL(instantiate_from_config(params.network_config), instantiate_from_config(params.conditioner_config))
    else:
        text_encoder = instantiate_from_config(params.cond_stage_config)
        model = tiny_sd.TinySD(instantiate_from_config(params.unet_config), text_encoder, params.get("conditioning_key", "crossattn"))
    state_dict = read_state_dict(info.filename)
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

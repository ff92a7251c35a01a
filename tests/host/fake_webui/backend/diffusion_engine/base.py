"""Forge's engines in outline (``backend/diffusion_engine``): the parts in ``forge_objects``,
its two shallow copies, the prompt encoder and the VAE the WebUI calls."""

import tiny_sd
import torch

from backend import memory_management
from backend.patcher.unet import UnetPatcher


class ForgeObjects:
    def __init__(self, unet, clip, vae, clipvision):
        self.unet, self.clip, self.vae, self.clipvision = unet, clip, vae, clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class Patcher:
    """A memory-managed module that is not the UNet (text encoder, VAE)."""

    def __init__(self, model):
        self.model = model
        self.load_device = self.offload_device = self.current_device = "cpu"

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model


class CLIP:
    def __init__(self, encoder):
        self.cond_stage_model = encoder
        self.patcher = Patcher(encoder)


class VAE:
    def __init__(self):
        self.patcher = Patcher(torch.nn.Identity())


class ForgeDiffusionEngine:
    is_sdxl = False

    def is_webui_legacy_model(self):
        """Neo: SD1 and SDXL (its Automatic schedule depends on it)."""
        return True

    def __init__(self, unet, encoder, prediction_type="epsilon"):
        self.alphas_cumprod = tiny_sd.scaled_linear_alphas_cumprod()
        self.text_encoder = encoder
        unet_patcher = UnetPatcher.from_model(unet, self.alphas_cumprod, prediction_type)
        self.forge_objects = ForgeObjects(unet_patcher, CLIP(encoder), VAE(), None)
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()

    @torch.inference_mode()
    def get_learned_conditioning(self, prompt):
        memory_management.load_model_gpu(self.forge_objects.clip.patcher)
        return self.encode(prompt)

    def encode_first_stage(self, x):
        return tiny_sd.TinySD.encode_first_stage(self, x)

    def get_first_stage_encoding(self, x):
        return x  # Forge: "legacy code, do not change"

    def decode_first_stage(self, z):
        return tiny_sd.TinySD.decode_first_stage(self, z)


class StableDiffusion(ForgeDiffusionEngine):
    def encode(self, prompt):
        return self.text_encoder(prompt)


class StableDiffusionXL(ForgeDiffusionEngine):
    is_sdxl = True

    def encode(self, prompt):
        return tiny_sd.sdxl_conditioning(self.text_encoder, prompt)  # Forge's engine encodes itself (Neo has no sd_models_xl)


class Flux(StableDiffusion):
    """A flow-matching engine as Neo has them (Flux, Chroma, SD3 …): its predictor noises as
    ``(1 - sigma) x0 + sigma noise``; in shape the stand-in's SD1 engine."""

    def is_webui_legacy_model(self):
        return False

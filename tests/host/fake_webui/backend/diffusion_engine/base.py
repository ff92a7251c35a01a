"""Forge's engines in outline (``backend/diffusion_engine``): the parts in ``forge_objects``,
its two shallow copies, the prompt encoder and the VAE the WebUI calls."""

import tiny_sd
import torch

from backend import memory_management
from backend.modules.k_model import FlowPrediction
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
    def __init__(self, latent_channels=4):
        self.first_stage_model = torch.nn.Conv2d(latent_channels, 3, 1)
        """The VAE's weights (the stand-in decodes with fixed maps: ``tiny_sd``)."""
        self.patcher = Patcher(self.first_stage_model)
        self.latent_channels = latent_channels


class ForgeDiffusionEngine:
    is_sdxl = False

    def is_webui_legacy_model(self):
        """Neo: SD1 and SDXL (its Automatic schedule depends on it)."""
        return True

    use_distilled_cfg_scale = False
    latent_channels = 4

    def __init__(self, unet, encoder, prediction_type="epsilon"):
        self.alphas_cumprod = tiny_sd.scaled_linear_alphas_cumprod()
        self.text_encoder = encoder
        unet_patcher = UnetPatcher.from_model(unet, self.alphas_cumprod, prediction_type, self.predictor())
        self.forge_objects = ForgeObjects(unet_patcher, CLIP(encoder), VAE(self.latent_channels), None)
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()

    def predictor(self):
        """The family's own predictor (None: Forge's eps/v one from the schedule)."""
        return None

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


class FlowEngine(ForgeDiffusionEngine):
    """Neo's rectified-flow engines in outline (Flux, SD3, Chroma, Qwen-Image …): a DiT over a
    16-channel latent, a flow predictor ("const"), Neo's Normal schedule by default, the
    conditioning a dict of the text tokens and a pooled vector."""

    latent_channels = tiny_sd.FLOW_CHANNELS

    def is_webui_legacy_model(self):
        return False

    def encode(self, prompt):
        crossattn = self.text_encoder(prompt)
        return {"crossattn": crossattn, "vector": crossattn[:, 0]}

    def encode_first_stage(self, x):
        return tiny_sd.flow_encode_first_stage(x)

    def decode_first_stage(self, z):
        return tiny_sd.flow_decode_first_stage(z)


class StableDiffusion3(FlowEngine):
    """SD3's shape: ``PredictionDiscreteFlow`` (shift 3, timesteps ``1000 sigma``), real CFG."""

    def predictor(self):
        return FlowPrediction(shift=3.0)


class Flux(FlowEngine):
    """Flux dev's shape: ``PredictionFlux`` (shift 1.15, timesteps ``sigma``), guidance-distilled:
    the Distilled CFG Scale rides in the conditioning as ``guidance``."""

    use_distilled_cfg_scale = True

    def predictor(self):
        return FlowPrediction(shift=1.15, multiplier=1.0, flux=True, timesteps=10000)

    def encode(self, prompt):
        cond = super().encode(prompt)
        cond["guidance"] = torch.FloatTensor([getattr(prompt, "distilled_cfg_scale", 3.0) or 3.0] * len(prompt))
        return cond

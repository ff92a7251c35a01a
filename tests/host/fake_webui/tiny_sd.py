"""Tiny stand-ins for an SD1 checkpoint: a UNet, a CLIP-like text encoder, the LDM wrapper."""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

CONTEXT_DIM = 16
VOCAB = 512
CHUNK = 75


def scaled_linear_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


ALPHAS_CUMPROD = scaled_linear_alphas_cumprod()


class TinyUNet(nn.Module):
    """eps = f(x, t, context): convolutions modulated by time and pooled text."""

    def __init__(
        self, in_channels=4, out_channels=4, hidden=16, context_dim=CONTEXT_DIM, adm_in_channels=None, use_checkpoint=False, use_fp16=False
    ):
        super().__init__()
        self.input = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.time = nn.Linear(16, hidden)
        self.label_emb = nn.Linear(adm_in_channels, hidden) if adm_in_channels else None
        """SDXL's ``y`` (the pooled text and size vector) joins the time embedding."""
        self.text = nn.Linear(context_dim, hidden)
        self.spatial = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.output = nn.Conv2d(hidden, out_channels, 3, padding=1)
        self.register_buffer("v_of_eps", torch.zeros(()))
        """1: the UNet outputs the v of its eps (:meth:`v_from_eps`), set by the checkpoint."""

    def forward(self, x, timesteps, context=None, y=None):
        """One row at a time: a row's output never depends on the batch around it, so the
        tests' promise "image i of a batch equals its seed alone" is exact by construction
        (a batched convolution may round differently at another batch size)."""
        rows = [slice(i, i + 1) for i in range(x.shape[0])]
        eps = torch.cat([self.row(x[r], timesteps[r], context[r], None if y is None else y[r]) for r in rows])
        return torch.where(self.v_of_eps > 0, self.v_from_eps(eps, x, timesteps), eps)

    def v_from_eps(self, eps, x, timesteps):
        """The v of ``eps`` on the DDPM latent ``x`` at ``timesteps``: ``(eps - sqrt(1 - a_t) x) /
        sqrt(a_t)``, ``a_t`` at a fractional timestep read from the log-sigma interpolation of
        k-diffusion's ``CompVisDenoiser.t_to_sigma``. A checkpoint whose ``v_of_eps`` is set
        predicts this v: with the host's v denoiser it denoises as its eps twin does, so a test
        can hold a v checkpoint against its eps twin."""
        log_sigmas = (((1 - ALPHAS_CUMPROD) / ALPHAS_CUMPROD) ** 0.5).log().to(x.device)
        t = timesteps.float()
        low = t.floor().long().clamp(0, 998)
        sigma = (log_sigmas[low] * (1 - (t - low)) + log_sigmas[low + 1] * (t - low)).exp()
        alpha = (1 / (1 + sigma**2)).to(eps.dtype).view(-1, 1, 1, 1)
        return (eps - (1 - alpha).sqrt() * x.to(eps.dtype)) / alpha.sqrt()

    def row(self, x, timesteps, context, y):
        x, context = x.to(self.input.weight.dtype), context.to(self.input.weight.dtype)  # ldm: h = x.type(self.dtype)
        half = torch.arange(8, dtype=torch.float32, device=x.device)
        freqs = torch.exp(-math.log(10000.0) * half / 8)
        angles = timesteps.float()[:, None] * freqs[None]
        t_emb = torch.cat([angles.sin(), angles.cos()], dim=1).to(x.dtype)
        emb = self.time(t_emb)
        if self.label_emb is not None:
            emb = emb + self.label_emb(y.to(x.dtype))
        h = self.input(x) + emb[:, :, None, None]
        text = self.text(context).tanh()  # (N, tokens, hidden): token-wise, then max over tokens
        h = h * (1 + text.amax(dim=1)[:, :, None, None])
        h = self.spatial(torch.nn.functional.silu(h))
        return self.output(torch.nn.functional.silu(h))


def tokenize(text: str) -> list[int]:
    return [int(hashlib.md5(word.encode()).hexdigest(), 16) % VOCAB for word in text.lower().split()]


class Embeddings(nn.Module):
    def __init__(self, context_dim=CONTEXT_DIM):
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB, context_dim)


class TextModel(nn.Module):
    def __init__(self, context_dim=CONTEXT_DIM):
        super().__init__()
        self.embeddings = Embeddings(context_dim)
        self.mix = nn.Linear(context_dim, context_dim)


class Transformer(nn.Module):
    def __init__(self, context_dim=CONTEXT_DIM):
        super().__init__()
        self.text_model = TextModel(context_dim)


class FrozenCLIPEmbedder(nn.Module):
    """Named like ldm's SD1 encoder; 77 context rows per 75 tokens, like the WebUI's chunks.
    ``context_dim``: 1024 plays SD 2.x's width (its OpenCLIP encoder), by which AUTOMATIC1111
    tells that family."""

    def __init__(self, context_dim=CONTEXT_DIM):
        super().__init__()
        self.transformer = Transformer(context_dim)

    def encode_one(self, text: str) -> torch.Tensor:
        tokens = tokenize(text)
        chunks = max(1, math.ceil(len(tokens) / CHUNK))
        padded = tokens + [0] * (chunks * CHUNK - len(tokens))
        rows = []
        for c in range(chunks):
            ids = torch.tensor([1] + padded[c * CHUNK : (c + 1) * CHUNK] + [2], device=self.transformer.text_model.mix.weight.device)
            rows.append(self.transformer.text_model.embeddings.token_embedding(ids))
        emb = torch.cat(rows)
        return self.transformer.text_model.mix(emb).tanh()

    def forward(self, texts: list[str]) -> torch.Tensor:
        encoded = [self.encode_one(t) for t in texts]
        width = max(e.shape[0] for e in encoded)
        if any(e.shape[0] != width for e in encoded):
            raise ValueError("texts of different lengths in one batch")
        return torch.stack(encoded)


class DiffusionWrapper(nn.Module):
    def __init__(self, unet: nn.Module, conditioning_key: str = "crossattn"):
        super().__init__()
        self.diffusion_model = unet
        self.conditioning_key = conditioning_key

    def forward(self, x, t, c_concat=None, c_crossattn=None, c_adm=None):
        context = torch.cat(c_crossattn, 1)
        if self.conditioning_key == "hybrid":
            return self.diffusion_model(torch.cat([x, *c_concat], dim=1), t, context=context)
        return self.diffusion_model(x, t, context=context)


class TinySD(nn.Module):
    """The parts of ldm's LatentDiffusion that the WebUI and the extension use."""

    parameterization = "eps"
    """What the UNet predicts, "eps" or "v": from the config, as ldm's ``DDPM`` takes it."""
    cond_stage_key = "txt"
    is_sdxl = False

    def __init__(self, unet: nn.Module, text_encoder: nn.Module, conditioning_key: str = "crossattn"):
        super().__init__()
        self.model = DiffusionWrapper(unet, conditioning_key)
        self.cond_stage_model = text_encoder
        self.register_buffer("alphas_cumprod", scaled_linear_alphas_cumprod())

    @property
    def device(self):
        return self.alphas_cumprod.device

    def encode_first_stage(self, image):
        """A stand-in VAE encoder: 8x8 average pooling and a fixed RGB -> 4-channel map."""
        rgb_to_latent = torch.tensor([[0.3, 0.2, 0.1], [-0.2, 0.4, 0.1], [0.1, -0.3, 0.5], [0.2, 0.2, -0.4]])
        image = image.to(self.alphas_cumprod.device)  # the host moves the image to the VAE's device
        pooled = torch.nn.functional.avg_pool2d(image, 8)
        return torch.einsum("lc,nchw->nlhw", rgb_to_latent.to(image), pooled)

    def get_first_stage_encoding(self, encoded):
        return encoded * 0.18215

    def decode_first_stage(self, z):
        """A stand-in VAE decoder: a fixed 4-channel -> RGB map, 8x nearest upscale, in [-1, 1]."""
        latent_to_rgb = torch.tensor([[0.8, -0.4, 0.3, 0.5], [0.3, 0.7, -0.5, 0.4], [-0.2, 0.3, 0.9, -0.3]])
        rgb = torch.einsum("cl,nlhw->nchw", latent_to_rgb.to(z), z)
        return torch.tanh(torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest"))

    def get_learned_conditioning(self, texts):
        return self.cond_stage_model(list(texts))

    def apply_model(self, x, t, cond):
        return self.model(x, t, **cond)


ADM = CONTEXT_DIM + 4
"""SDXL-shaped ``vector``: the pooled text and a size embedding."""


class TinyConditioner(nn.Module):
    """sgm's ``GeneralConditioner`` for SDXL in shape: ``{"crossattn", "vector"}`` per prompt,
    the vector carrying the target size like SDXL's size conditioning."""

    def __init__(self):
        super().__init__()
        self.embedders = nn.ModuleList([FrozenCLIPEmbedder()])

    def forward(self, batch: dict, force_zero_embeddings=None) -> dict:
        """sgm's input dict: the prompts under ``txt``, the target size as (height, width) rows."""
        texts = list(batch["txt"])
        crossattn = self.embedders[0](texts)
        height, width = (float(v) for v in batch["target_size_as_tuple"][0])
        size = torch.tensor([height / 1024, width / 1024]).to(crossattn)
        vector = torch.cat([crossattn[:, 0], size.sin().expand(len(texts), 2), size.cos().expand(len(texts), 2)], dim=1)
        return {"crossattn": crossattn, "vector": vector}


class OpenAIWrapper(nn.Module):
    """sgm's UNet wrapper: ``concat`` joins x, ``crossattn`` is the context, ``vector`` is y."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.diffusion_model = unet
        self.conditioning_key = "crossattn"  # the WebUI's extend_sdxl sets it

    def forward(self, x, t, c):
        x = torch.cat([x, c.get("concat", x[:, :0])], dim=1)
        return self.diffusion_model(x, t, context=c.get("crossattn"), y=c.get("vector"))


class TinySDXL(nn.Module):
    """The parts of sgm's ``DiffusionEngine`` (as the WebUI extends it) that the extension uses."""

    parameterization = "eps"
    """"v" when the config's denoiser scaling is sgm's ``VScaling`` (the WebUI's ``extend_sdxl``)."""
    cond_stage_key = "txt"
    is_sdxl = True
    is_sdxl_inpaint = False
    encode_first_stage = TinySD.encode_first_stage
    decode_first_stage = TinySD.decode_first_stage

    def __init__(self, unet: nn.Module, conditioner: nn.Module):
        super().__init__()
        self.model = OpenAIWrapper(unet)
        self.conditioner = conditioner
        self.register_buffer("alphas_cumprod", scaled_linear_alphas_cumprod())

    device = TinySD.device

    def get_first_stage_encoding(self, encoded):
        return encoded

    def get_learned_conditioning(self, batch):
        from modules import sd_models_xl

        return sd_models_xl.get_learned_conditioning(self, batch)

    def apply_model(self, x, t, cond):
        if self.is_sdxl_inpaint:
            x = torch.cat([x, *cond["c_concat"]], dim=1)
        return self.model(x, t, cond)


def sdxl_conditioning(conditioner, batch):
    """sgm's input dict built from the prompts and the image size, through ``conditioner``."""
    width = getattr(batch, "width", 1024) or 1024
    height = getattr(batch, "height", 1024) or 1024
    sdxl_conds = {"txt": batch, "target_size_as_tuple": torch.tensor([height, width]).repeat(len(batch), 1)}
    return conditioner(sdxl_conds, force_zero_embeddings=[])


FLOW_CHANNELS = 16
"""The latent width of Neo's flow families (Flux, SD3, Chroma, Qwen-Image, Lumina …)."""


class TinyDiT(nn.Module):
    """A rectified-flow transformer in the shape of Neo's families: the latent cut into
    ``patch_size``-square patches (tokens, the edge padded to the patch grid as Flux pads),
    each told its place by a sinusoidal position, a timestep embedding (Flux: of ``1000 t``,
    its guidance embedding beside it), joint attention over text and image tokens (MMDiT),
    an MLP, and the patches folded back: out comes a velocity ``eps - x0``."""

    patch_size = 2

    def __init__(self, in_channels=FLOW_CHANNELS, hidden=32, context_dim=CONTEXT_DIM, guidance_embed=False):
        super().__init__()
        patch = in_channels * self.patch_size**2
        self.patch_in = nn.Linear(patch, hidden)
        self.time_in = nn.Linear(16, hidden)
        self.position_in = nn.Linear(16, hidden)
        self.guidance_in = nn.Linear(16, hidden) if guidance_embed else None
        """Flux's distilled guidance (the engine puts ``guidance`` in the conditioning)."""
        self.text_in = nn.Linear(context_dim, hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.patch_out = nn.Linear(hidden, patch)
        self.time_factor = 1000.0 if guidance_embed else 1.0
        """Flux's timestep is sigma, SD3's ``1000 sigma``: both embed the thousandfold."""

    def forward(self, x, timesteps, context=None, guidance=None, **kwargs):
        """Row by row, as :class:`TinyUNet`: a row's output never depends on its batch."""
        rows = [slice(i, i + 1) for i in range(x.shape[0])]
        return torch.cat([self.row(x[r], timesteps[r], context[r], None if guidance is None else guidance[r]) for r in rows])

    @staticmethod
    def embedding(values: torch.Tensor, width: int = 16) -> torch.Tensor:
        freqs = torch.exp(-math.log(10000.0) * torch.arange(width // 2, dtype=torch.float32, device=values.device) / (width // 2))
        angles = values.float()[..., None] * freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def row(self, x, timesteps, context, guidance):
        dtype = self.patch_in.weight.dtype
        x, context = x.to(dtype), context.to(dtype)
        _, channels, height, width = x.shape
        p = self.patch_size
        padded = torch.nn.functional.pad(x, (0, -width % p, 0, -height % p), mode="circular")
        rows, cols = padded.shape[2] // p, padded.shape[3] // p
        tokens = padded.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(1, rows * cols, channels * p * p)
        position = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1).reshape(-1, 2).to(x.device)
        emb = self.time_in(self.embedding(timesteps * self.time_factor).to(dtype))
        if self.guidance_in is not None and guidance is not None:
            emb = emb + self.guidance_in(self.embedding(guidance * 1000).to(dtype))
        image = self.patch_in(tokens) + emb[:, None] + self.position_in(self.embedding(position, 8).reshape(1, -1, 16).to(dtype))
        text = self.text_in(context)
        joint = torch.cat([text, image], dim=1)
        q, k, v = self.qkv(joint).chunk(3, dim=-1)
        attended = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1) @ v
        image = image + attended[:, text.shape[1] :]
        image = image + self.mlp(image)
        out = self.patch_out(image).reshape(1, rows, cols, channels, p, p).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(1, channels, rows * p, cols * p)[:, :, :height, :width]


def flow_vae_maps() -> tuple[torch.Tensor, torch.Tensor]:
    """The stand-in flow VAE's fixed maps, RGB -> 16 channels and back."""
    generator = torch.Generator().manual_seed(16)
    return torch.randn(FLOW_CHANNELS, 3, generator=generator) * 0.5, torch.randn(3, FLOW_CHANNELS, generator=generator) * 0.3


def flow_encode_first_stage(image):
    """A stand-in 16-channel VAE encoder: 8x8 average pooling and a fixed RGB -> 16 map."""
    to_latent, _ = flow_vae_maps()
    return torch.einsum("lc,nchw->nlhw", to_latent.to(image), torch.nn.functional.avg_pool2d(image, 8))


def flow_decode_first_stage(z):
    """Its decoder: a fixed 16 -> RGB map, 8x nearest upscale, in [-1, 1]."""
    _, to_rgb = flow_vae_maps()
    rgb = torch.einsum("cl,nlhw->nchw", to_rgb.to(z), z)
    return torch.tanh(torch.nn.functional.interpolate(rgb, scale_factor=8, mode="nearest"))

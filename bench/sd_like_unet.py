"""A scaled-down SD1-shaped UNet for benchmarks: the same kinds of layers in the same
order (time embedding, ResBlocks with GroupNorm, a spatial transformer with self- and
cross-attention at half resolution, skip connections), so call costs scale with batch,
resolution and token count the way the real UNet's do."""

from __future__ import annotations

import math

import torch
from torch import nn

CONTEXT_DIM = 16  # the stand-in text encoder's width


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, channels: int, time_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.time = nn.Linear(time_dim, channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x))) + self.time(t_emb)[:, :, None, None]
        return x + self.conv2(nn.functional.silu(self.norm2(h)))


class SpatialTransformer(nn.Module):
    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.self_attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(channels, heads, kdim=CONTEXT_DIM, vdim=CONTEXT_DIM, batch_first=True)
        self.ff = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        tokens = tokens + self.self_attn(tokens, tokens, tokens, need_weights=False)[0]
        tokens = tokens + self.cross_attn(tokens, context, context, need_weights=False)[0]
        tokens = tokens + self.ff(tokens)
        return x + tokens.transpose(1, 2).reshape(n, c, h, w)


class SDLikeUNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        hidden: int = 64,
        adm_in_channels: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
    ):
        super().__init__()
        time_dim = 4 * hidden
        self.hidden = hidden
        self.time = nn.Sequential(nn.Linear(hidden, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        # SDXL-shaped: the pooled text and size vector ``y`` joins the time embedding.
        self.label = nn.Linear(adm_in_channels, time_dim) if adm_in_channels else None
        self.conv_in = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.down_res = ResBlock(hidden, time_dim)
        self.down = nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1)
        self.mid_res = ResBlock(2 * hidden, time_dim)
        self.mid_attn = SpatialTransformer(2 * hidden)
        self.up = nn.ConvTranspose2d(2 * hidden, hidden, 4, stride=2, padding=1)
        self.up_res = ResBlock(hidden, time_dim)
        self.norm_out = nn.GroupNorm(8, hidden)
        self.conv_out = nn.Conv2d(hidden, out_channels, 3, padding=1)

    def forward(self, x, timesteps, context=None, y=None):
        dtype = self.conv_in.weight.dtype  # ldm's UNet runs in its own dtype and returns the caller's
        t_emb = self.time(timestep_embedding(timesteps, self.hidden).to(dtype))
        if self.label is not None and y is not None:
            t_emb = t_emb + self.label(y.to(dtype))
        h0 = self.down_res(self.conv_in(x.to(dtype)), t_emb)
        h = self.mid_attn(self.mid_res(self.down(h0), t_emb), context.to(dtype))
        h = self.up_res(self.up(h) + h0, t_emb)
        return self.conv_out(nn.functional.silu(self.norm_out(h))).to(x.dtype)

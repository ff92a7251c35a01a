"""SD1.5's own UNet (ldm's ``UNetModel``, random weights) for benchmarks on a GPU, where a
scaled-down UNet would leave the device idle and measure launch overhead instead of work.

The ldm package is not a dependency: ``--ldm PATH`` names a checkout that holds it, such as
a WebUI's ``repositories/stable-diffusion-stability-ai``. Attention runs through
``torch.nn.functional.scaled_dot_product_attention``, as the WebUI's default optimisation
(``sdp``) runs it.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from bench.sd_like_unet import CONTEXT_DIM

SD1_CONTEXT = 768


def use_ldm(path: str) -> None:
    """Make ldm importable from ``path`` and route its cross-attention through SDP."""
    if path not in sys.path:
        sys.path.insert(0, path)
    from ldm.modules import attention

    attention.CrossAttention.forward = _sdp_attention


def _sdp_attention(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    context = x if context is None else context
    q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
    n, _, inner = q.shape
    q, k, v = (t.view(n, -1, self.heads, inner // self.heads).transpose(1, 2) for t in (q, k, v))
    out = nn.functional.scaled_dot_product_attention(q, k, v)
    return self.to_out(out.transpose(1, 2).reshape(n, -1, inner))


class LDMUNet(nn.Module):
    """SD1.5's UNet (860 M parameters at ``hidden=320``) behind a fixed projection of the
    stand-in text encoder's 16-wide context to CLIP's 768."""

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        hidden: int = 320,
        adm_in_channels: int | None = None,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
    ):
        super().__init__()
        from ldm.modules.diffusionmodules.openaimodel import UNetModel

        self.context = nn.Linear(CONTEXT_DIM, SD1_CONTEXT)
        self.unet = UNetModel(
            image_size=32,
            in_channels=in_channels,
            out_channels=out_channels,
            model_channels=hidden,
            attention_resolutions=[4, 2, 1],
            num_res_blocks=2,
            channel_mult=[1, 2, 4, 4],
            num_heads=8,
            use_spatial_transformer=True,
            transformer_depth=1,
            context_dim=SD1_CONTEXT,
            use_checkpoint=False,
            legacy=False,
        )

    def forward(self, x, timesteps, context=None, y=None):
        dtype = self.context.weight.dtype  # ldm's UNet runs in its own dtype and returns the caller's
        return self.unet(x.to(dtype), timesteps, context=self.context(context.to(dtype))).to(x.dtype)

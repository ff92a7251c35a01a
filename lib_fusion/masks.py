"""Region masks sent as base64 PNG: checked for size and format before any pixel is decoded.

A mask arrives from the API or the infotext as text; it is decoded only after the text
length, the PNG signature and the header's dimensions are within bounds, so a huge
upload or a decompression bomb is refused without allocating its pixels. Masks are kept
canonical (1-bit PNG, binarised at 0.5 like the official ``preprocess_mask``) so the
infotext stays short.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import torch
from PIL import Image

MAX_SIDE = 8192
"""Largest mask side in pixels (the WebUI's own width/height limit is 2048; hires fix doubles it)."""
MAX_BYTES = 8 * 1024 * 1024
"""Largest PNG file; a 1-bit mask of the largest size is far smaller."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class MaskError(ValueError):
    """A mask that cannot be used; the message says why and what is accepted."""


def _png_bytes(data: str) -> bytes:
    text = data.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if "image/png" not in header:
            raise MaskError(f"a data URL of type {header[5:].split(';')[0] or '?'}; send a PNG (data:image/png;base64,...)")
    if len(text) > MAX_BYTES * 4 // 3 + 4:
        raise MaskError(f"{len(text)} characters of base64 is over the {MAX_BYTES // (1024 * 1024)} MiB limit for a mask PNG")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MaskError("not valid base64; send a PNG encoded as base64") from None
    if not raw.startswith(PNG_SIGNATURE):
        raise MaskError("not a PNG image (the file does not start with the PNG signature); send a black-and-white PNG")
    return raw


def _open(data: str) -> Image.Image:
    raw = _png_bytes(data)
    try:
        image = Image.open(io.BytesIO(raw), formats=["PNG"])
    except Image.DecompressionBombError:
        raise MaskError(f"a PNG whose header claims more pixels than {MAX_SIDE}x{MAX_SIDE}; send a smaller mask") from None
    except Exception as error:  # PIL's messages for a broken header
        raise MaskError(f"a broken PNG ({error}); send a valid black-and-white PNG") from None
    width, height = image.size
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise MaskError(f"a {width}x{height} PNG; masks may be at most {MAX_SIDE}x{MAX_SIDE} pixels")
    return image


def decode_mask(data: str) -> torch.Tensor:
    """(H, W) float 0/1 mask: white (or opaque, for images with alpha) means inside."""
    image = _open(data)
    try:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            pixels = np.asarray(image.convert("RGBA"))[..., 3]
        else:
            pixels = np.asarray(image.convert("L"))
    except Exception as error:
        raise MaskError(f"a PNG whose pixels cannot be read ({error}); send a valid black-and-white PNG") from None
    return torch.from_numpy((pixels >= 128).astype(np.float32))


def encode_mask(mask: torch.Tensor) -> str:
    """Canonical base64 of a 1-bit PNG of ``mask >= 0.5``."""
    pixels = (mask.detach().cpu().numpy() >= 0.5).astype(np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def canonical(data: str) -> str:
    """The mask re-encoded as a 1-bit PNG; raises :class:`MaskError` for a bad or empty mask."""
    mask = decode_mask(data)
    if not bool(mask.any()):
        raise MaskError("an empty mask (no white pixel); paint the region white on black")
    return encode_mask(mask)

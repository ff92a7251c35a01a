"""Region masks sent as base64 PNG: checked for size and format before any pixel is decoded.

A mask arrives from the API or the infotext as text. Reading the arguments (and a paste)
checks only the text length, the PNG signature and the header; the pixels are decoded
once per generation, at its start, after the header showed the image's own size and the
generation's masks together stay under :data:`MAX_DECODED_PIXELS`, so a huge upload or a
decompression bomb is refused without allocating its pixels. The infotext carries each
mask canonical (1-bit PNG, binarised at 0.5 like the official ``preprocess_mask``).
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
MAX_TEXT = MAX_BYTES * 3 // 2
"""Characters of a mask's text: base64 (4/3 of the bytes) with line breaks and a data-URL prefix."""
MAX_DECODED_PIXELS = 16 * 2048 * 2048
"""Pixels of all the masks of one generation together (16 regions of a 2048x2048 image),
checked from the headers before the first is decoded."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIXTEEN_BIT_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N")


class MaskError(ValueError):
    """A mask that cannot be used; the message says why and what is accepted."""


def _base64(data: str) -> str:
    """The PNG's base64 alone: a data-URL prefix (of a PNG) and line breaks removed, the
    length checked before anything is decoded."""
    text = data.strip()
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if "image/png" not in header:
            raise MaskError(f"a data URL of type {header[5:].split(';')[0][:40] or '?'}; send a PNG (data:image/png;base64,...)")
    if len(text) > MAX_TEXT:
        raise MaskError(f"{len(text)} characters of base64 is over the {MAX_BYTES // (1024 * 1024)} MiB limit for a mask PNG")
    return "".join(text.split())  # base64 wrapped at 76 or 64 columns, as many tools write it


def _png_bytes(data: str) -> bytes:
    text = _base64(data)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MaskError("not valid base64; send a PNG encoded as base64") from None
    if not raw.startswith(PNG_SIGNATURE):
        raise MaskError("not a PNG image (the file does not start with the PNG signature); send a black-and-white PNG")
    return raw


def _open(data: str) -> Image.Image:
    """The PNG with its header read and checked; no pixel decoded yet."""
    raw = _png_bytes(data)
    try:
        image = Image.open(io.BytesIO(raw), formats=["PNG"])
    except Image.DecompressionBombError:
        raise MaskError(f"a PNG whose header claims more pixels than {MAX_SIDE}x{MAX_SIDE}; send a smaller mask") from None
    except Exception as error:  # PIL's messages for a broken header
        raise MaskError(f"a broken PNG ({str(error)[:120]}); send a valid black-and-white PNG") from None
    width, height = image.size
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise MaskError(f"a {width}x{height} PNG; masks may be at most {MAX_SIDE}x{MAX_SIDE} pixels")
    return image


def check(data: str) -> str:
    """A mask's text after its size, signature and header are checked (no pixel decoded):
    the base64 alone, without a data-URL prefix or line breaks."""
    text = _base64(data)
    _open(text)
    return text


def size(data: str) -> tuple[int, int]:
    """(width, height) from the header alone."""
    return _open(data).size


def decode_mask(data: str, expected: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W) float 0/1 mask, read as a user means it: white inside. Opaque images by their
    luminance (as the official ``preprocess_mask`` does with ``convert("L")``), 16-bit grey
    scaled rather than clipped, and the alpha channel only where it carries the shape (it
    varies): then opaque means inside. With ``expected`` (width, height) a mask of another
    size is refused from its header, before a pixel is decoded."""
    image = _open(data)
    if expected is not None and image.size != tuple(expected):
        raise MaskError(f"is {image.width}x{image.height} but the image is {expected[0]}x{expected[1]}; give a mask of the image's size")
    try:
        image.load()
    except Exception as error:  # truncated data (the header promised more) or a broken stream
        raise MaskError(f"a PNG whose pixel data is broken or shorter than its header says ({str(error)[:120]})") from None
    try:
        return torch.from_numpy(_inside(image))
    except Exception as error:
        raise MaskError(f"a PNG whose pixels cannot be read ({str(error)[:120]}); send a valid black-and-white PNG") from None


def _inside(image: Image.Image) -> np.ndarray:
    if image.mode in SIXTEEN_BIT_GREY:
        return (np.asarray(image).astype(np.float32) >= 32768).astype(np.float32)
    if image.mode == "F":
        return (np.asarray(image) >= 0.5).astype(np.float32)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() != alpha.max():
            return (alpha >= 128).astype(np.float32)
        image = rgba.convert("RGB")
    return (np.asarray(image.convert("L")) >= 128).astype(np.float32)


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
        raise MaskError(EMPTY)
    return encode_mask(mask)


EMPTY = "an empty mask (no white pixel); paint the region white on black"

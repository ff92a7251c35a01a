import base64
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from lib_fusion.arguments.masks import MAX_SIDE, MaskError, canonical, decode_mask, encode_mask


def png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def with_header_size(data: str, width: int, height: int) -> str:
    """A PNG whose IHDR claims another size (a decompression-bomb shape), CRC fixed."""
    raw = bytearray(base64.b64decode(data))
    ihdr = struct.pack(">II", width, height) + bytes(raw[24:29])
    raw[16:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return base64.b64encode(bytes(raw)).decode()


def test_round_trip_is_binary_and_canonical():
    mask = torch.zeros(16, 24)
    mask[4:10, 2:20] = 1
    encoded = encode_mask(mask)
    assert torch.equal(decode_mask(encoded), mask)
    grey = Image.new("L", (24, 16), 0)
    grey.paste(200, (2, 4, 20, 10))
    assert canonical(png(grey)) == encoded
    assert canonical("data:image/png;base64," + png(grey)) == encoded


def test_alpha_masks_use_opacity():
    image = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    image.paste((0, 0, 0, 255), (0, 0, 4, 8))
    assert decode_mask(png(image))[:, :4].all() and not decode_mask(png(image))[:, 4:].any()


@pytest.mark.parametrize(
    "data, fragment",
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"GIF89a....").decode(), "not a PNG"),
        ("data:image/jpeg;base64,AAAA", "data URL of type image/jpeg"),
        ("A" * (13 * 1024 * 1024), "over the 8 MiB limit"),
        (png(Image.new("L", (8, 8), 0)), "empty mask"),
        (base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30).decode(), "broken PNG"),
    ],
)
def test_bad_masks_are_refused_with_a_reason(data, fragment):
    with pytest.raises(MaskError, match=fragment):
        canonical(data)


@pytest.mark.parametrize("side", [MAX_SIDE + 1, 100_000])
def test_huge_dimensions_are_refused_from_the_header_alone(monkeypatch, side):
    bomb = with_header_size(png(Image.new("1", (8, 8), 1)), side, side)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(MaskError, match=f"{MAX_SIDE}x{MAX_SIDE}"):
        decode_mask(bomb)


def test_an_opaque_rgba_mask_is_read_by_its_luminance():
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    image.paste((255, 255, 255, 255), (0, 0, 4, 8))
    mask = decode_mask(png(image))
    assert mask[:, :4].all() and not mask[:, 4:].any()


def test_a_16_bit_grey_mask_is_scaled_not_clipped():
    pixels = np.zeros((8, 8), dtype=np.uint16)
    pixels[:, :4] = 60000
    pixels[:, 4:6] = 1000  # dark grey in 16 bits; clipping to 8 bits would read it as white
    mask = decode_mask(png(Image.fromarray(pixels)))
    assert mask[:, :4].all() and not mask[:, 4:].any()


def test_line_wrapped_base64_is_accepted():
    image = Image.new("L", (64, 64), 0)
    image.paste(255, (0, 0, 32, 64))
    text = png(image)
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert torch.equal(decode_mask(wrapped), decode_mask(text))


def test_a_mask_of_another_size_is_refused_before_decoding(monkeypatch):
    data = png(Image.new("1", (8, 8), 1))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("pixels were decoded"))
    with pytest.raises(MaskError, match="is 8x8 but the image is 16x16"):
        decode_mask(data, (16, 16))

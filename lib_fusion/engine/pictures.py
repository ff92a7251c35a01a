"""Pictures that show what a fusion did: labelled grids, saliency heat maps, masks and
region layouts, drawn over the generated image. Plain PIL + numpy + torch, no host.

The maps are latent-sized (one value per 8x8 image pixels); they are upscaled to the
image: bilinearly for saliency and soft masks, nearest for a hard mask (its blocks are the
latent pixels that chose one model).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

Font = Callable[[int], ImageFont.ImageFont]

HEAT_STOPS = np.array([(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], dtype=np.float32)
"""An inferno-like ramp: dark for low saliency, yellow for high."""
COLOUR_A = (66, 135, 245)
"""Model A (and the active checkpoint in region layouts): blue."""
COLOUR_B = (245, 130, 48)
"""Model B (and the fusion checkpoint in region layouts): orange."""
MODEL_COLOURS = {"active": COLOUR_A, "fusion": COLOUR_B}
OTHER_COLOURS = [(46, 204, 113), (231, 76, 160), (241, 196, 15), (26, 188, 156), (155, 89, 182), (230, 126, 34), (149, 165, 166)]
"""Further checkpoints a region names, in order of first use: green, pink, yellow, …"""


def model_colours(models: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """A colour per model: blue and orange for the active and fusion checkpoints, then one of
    :data:`OTHER_COLOURS` per other checkpoint in order of first use (cycling past seven)."""
    colours = dict(MODEL_COLOURS)
    for model in models:
        if model not in colours:
            colours[model] = OTHER_COLOURS[(len(colours) - len(MODEL_COLOURS)) % len(OTHER_COLOURS)]
    return colours


OVERLAY_ALPHA = 0.6
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)


def default_font(size: int) -> ImageFont.ImageFont:
    """PIL's own font at ``size`` (Pillow >= 10.1), else its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def heat_colours(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 along :data:`HEAT_STOPS`."""
    position = np.clip(values, 0.0, 1.0) * (len(HEAT_STOPS) - 1)
    low = np.minimum(position.astype(np.int64), len(HEAT_STOPS) - 2)
    fraction = (position - low)[..., None]
    colours = HEAT_STOPS[low] * (1 - fraction) + HEAT_STOPS[low + 1] * fraction
    return colours.round().astype(np.uint8)


def _upscaled(values: torch.Tensor, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """(h, w) latent map -> (H, W) numpy at the image's ``size`` (width, height)."""
    width, height = size
    mode = "nearest" if nearest else "bilinear"
    kwargs = {} if nearest else {"align_corners": False}
    resized = torch.nn.functional.interpolate(values.detach().float().cpu()[None, None], size=(height, width), mode=mode, **kwargs)
    return resized[0, 0].numpy()


def heat_map(saliency: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """One model's saliency (h, w), scaled to its own range, as a heat map of ``size``."""
    values = saliency.detach().float()
    low, high = float(values.min()), float(values.max())
    normalised = (values - low) / (high - low) if high > low else torch.zeros_like(values)
    return Image.fromarray(heat_colours(_upscaled(normalised, size, nearest=False)), "RGB")


def mask_picture(mask: torch.Tensor, size: tuple[int, int], soft: bool) -> Image.Image:
    """Which model won where: A's colour where the mask is 0, B's where it is 1 (soft: between)."""
    share = np.clip(_upscaled(mask, size, nearest=not soft), 0.0, 1.0)[..., None]
    colours = np.array(COLOUR_A, dtype=np.float32) * (1 - share) + np.array(COLOUR_B, dtype=np.float32) * share
    return Image.fromarray(colours.round().astype(np.uint8), "RGB")


def choice_picture(choice: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """Which of several models won where: model m's colour where ``choice`` is m (A blue, B
    orange, then :data:`OTHER_COLOURS`); a channel mean of choices is rounded to a model."""
    palette = np.array([COLOUR_A, COLOUR_B, *OTHER_COLOURS], dtype=np.uint8)
    index = np.clip(np.rint(_upscaled(choice, size, nearest=True)), 0, len(palette) - 1).astype(np.int64)
    return Image.fromarray(palette[index], "RGB")


def overlay(base: Image.Image, layer: Image.Image, alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """``layer`` over the generated image, ``alpha`` opaque, so both stay readable."""
    return Image.blend(base.convert("RGB").resize(layer.size), layer.convert("RGB"), alpha)


def _font_size(width: int) -> int:
    return max(10, min(28, width // 20))


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if len(text) <= width and draw.textlength(text, font=font) <= width:
        return text
    # Binary search over the prefix length: O(n log n) for a prompt of any length. No glyph
    # is narrower than a pixel, so no more than ``width`` characters can fit.
    low, high = 0, min(len(text), width)
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle] + "…", font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


def _text_at_middle(draw: ImageDraw.ImageDraw, left_middle: tuple[int, int], text: str, font: ImageFont.ImageFont) -> None:
    """Text whose left edge and vertical middle are at ``left_middle`` (bitmap fonts take no anchor)."""
    top, bottom = draw.textbbox((0, 0), text or " ", font=font)[1::2]
    draw.text((left_middle[0], left_middle[1] - (top + bottom) // 2), text, font=font, fill=TEXT)


def labelled_grid(
    tiles: Sequence[Sequence[Image.Image]],
    column_labels: Sequence[str],
    row_labels: Sequence[str] = (),
    font: Font = default_font,
) -> Image.Image:
    """Tiles in rows and columns (all the size of the first), a header band naming each
    column and, when given, a left band naming each row."""
    if not tiles or not tiles[0]:
        raise ValueError("a grid needs at least one tile")
    tile_w, tile_h = tiles[0][0].size
    columns = max(len(row) for row in tiles)
    size = _font_size(tile_w)
    face = font(size)
    band = size * 2
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 0
    if row_labels:
        left = min(tile_w, int(max(measure.textlength(label, font=face) for label in row_labels)) + size)
    grid = Image.new("RGB", (left + columns * tile_w, band + len(tiles) * tile_h), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for column, label in enumerate(column_labels[:columns]):
        x = left + column * tile_w + size // 2
        _text_at_middle(draw, (x, band // 2), _fit(draw, label, face, tile_w - size), face)
    for row, images in enumerate(tiles):
        y = band + row * tile_h
        if row < len(row_labels):
            _text_at_middle(draw, (size // 2, y + tile_h // 2), _fit(draw, row_labels[row], face, left - size // 2), face)
        for column, image in enumerate(images):
            grid.paste(image.convert("RGB").resize((tile_w, tile_h)), (left + column * tile_w, y))
    return grid


def region_layout(
    base: Image.Image,
    masks: torch.Tensor,
    models: Sequence[str],
    labels: Sequence[str],
    caption: str,
    font: Font = default_font,
) -> Image.Image:
    """The Regions method's layout over the generated image: each foreground region (K
    latent 0/1 masks, shown in blocks of 8x8 pixels as the method used them) filled with its
    model's colour, outlined and numbered; uncovered pixels are the background."""
    image = base.convert("RGB")
    width, height = image.size
    picture = np.asarray(image, dtype=np.float32).copy()
    upscaled = [_upscaled(mask, (width, height), nearest=True) for mask in masks]
    colours = model_colours(models)
    for coverage, model in zip(upscaled, models):
        alpha = coverage[..., None] * OVERLAY_ALPHA
        picture = picture * (1 - alpha) + np.array(colours[model], dtype=np.float32) * alpha
    result = Image.fromarray(picture.round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(result)
    size = _font_size(width)
    face = font(size)
    for coverage, model, label in zip(upscaled, models, labels):
        rows, columns = np.nonzero(coverage > 0.5)
        if rows.size == 0:
            continue
        box = (int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max()))
        draw.rectangle(box, outline=colours[model], width=max(1, size // 8))
        draw.text((box[0] + 3, box[1] + 3), _fit(draw, label, face, max(size, box[2] - box[0] - 6)), font=face, fill=TEXT)
    return labelled_grid([[result]], [caption], font=font)

"""Shifted windows (SpotDiffusion, Frolov et al., arXiv 2407.15507): non-overlapping windows
whose grid moves by a random offset every step.

MultiDiffusion blends overlapping views in every step, so a pixel is denoised by several
windows each time (25 windows per step for a 512x2048 panorama at window 64, stride 8).
SpotDiffusion tiles the canvas once per step instead and shifts the tiling between steps:
a seam of one step lies inside a window the next, so seams are averaged out over time at
about (canvas / window) windows per step.

Along a wrapping axis (the width of a 360-degree panorama) the shifted grid wraps round
the edge. Along any other axis the grid is clamped: the windows at the two edges are
moved inside the canvas, overlapping their neighbour, and that overlap is averaged by
MultiDiffusion's fusion like any other. The official code rolls the whole latent instead,
which puts the left and right edges of an ordinary image side by side in one window; the
clamp never does (at most one extra window per axis).

Offsets are drawn on the host from each image's seed and the step index, so an image is
reproducible and independent of the batch it is in.
"""

from __future__ import annotations

import random

from lib_fusion.fusion.multidiffusion import View


def offsets(seed: int, step_index: int, window: int) -> tuple[int, int]:
    """(rows, columns) shift of the grid for this image and step, each in ``[0, window)``;
    drawn with Python's own generator, so no tensor is made for it."""
    draw = random.Random((int(seed) * 1_000_033 + int(step_index) * 7919 + 17) % 2**63)
    return draw.randrange(window), draw.randrange(window)


def _clamped(size: int, window: int, offset: int) -> list[tuple[int, int]]:
    """Grid cells ``[offset + k window, ...)`` over ``[0, size)``, each moved inside the canvas."""
    if size <= window:
        return [(0, size)]
    starts = sorted({min(max(start, 0), size - window) for start in range(offset - window, size, window) if start + window > 0})
    return [(start, start + window) for start in starts]


def _wrapped(size: int, window: int, offset: int) -> list[tuple[int, int]]:
    """Grid cells from ``offset`` all the way round; a cell past the edge continues at 0
    (``right`` may exceed ``size``, as :func:`lib_fusion.fusion.multidiffusion.crop` wraps)."""
    if size <= window:
        return [(0, size)]
    return [(start % size, start % size + window) for start in range(offset, offset + size, window)]


def shifted_views(latent_h: int, latent_w: int, window: int, shift: tuple[int, int], circular: bool = False) -> list[View]:
    """The windows of one step: the grid of ``window``-sized cells moved by ``shift``
    (:func:`offsets`), covering every latent pixel, row-major."""
    if min(latent_h, latent_w, window) < 1:
        raise ValueError(f"windows need positive sizes, got {latent_h}x{latent_w}, window {window}")
    rows = _clamped(latent_h, window, shift[0] % window)
    columns = (_wrapped if circular else _clamped)(latent_w, window, shift[1] % window)
    return [(top, bottom, left, right) for top, bottom in rows for left, right in columns]


def most_views(latent_h: int, latent_w: int, window: int, circular: bool = False) -> int:
    """The largest number of windows a step can have, whatever the shift (bounds the work)."""

    def along(size: int, wraps: bool) -> int:
        if size <= window:
            return 1
        cells = -(-size // window)
        return cells if wraps else cells + 1

    return along(latent_h, False) * along(latent_w, circular)

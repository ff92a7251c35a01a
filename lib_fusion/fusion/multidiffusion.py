"""MultiDiffusion (Bar-Tal et al., ICML 2023): views, region masks and the least-squares fusion.

Pure torch over latents of shape (N, C, H, W); see ``docs/algorithms.md`` section 2.

The paper's step (equation 3, closed form in equation 5) is, per pixel, the weighted
average of every (view, region) prediction covering it: ``sum(w m F) / sum(w m)``. For
deterministic samplers that equals stepping each crop and averaging the stepped crops
(the official code); averaging the model outputs instead lets the WebUI's own sampler
take one step of the whole latent, which keeps samplers with history (DPM++ 2M, UniPC)
exact, as diffusers' per-view scheduler state does.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

View = tuple[int, int, int, int]
"""(top, bottom, left, right) in latent pixels; with circular wrap ``right`` may pass the width."""


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis, the last flush with the edge so every pixel is covered.

    The official ``get_views`` stops at the last multiple of the stride and leaves the
    remainder (up to ``stride - 1`` pixels) in no view, where it ends as zeros.
    """
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


def get_views(latent_h: int, latent_w: int, window: int, stride: int, circular: bool = False) -> list[View]:
    """Overlapping ``window``-sized views, row-major, covering every latent pixel.

    ``circular`` wraps horizontally (360-degree panoramas): starts every ``stride`` columns
    all the way round, so the seam between the right and left edge is denoised inside
    windows like any other column boundary.
    """
    if min(latent_h, latent_w, window, stride) < 1:
        raise ValueError(f"views need positive sizes, got {latent_h}x{latent_w}, window {window}, stride {stride}")
    if stride > window:
        raise ValueError(f"stride {stride} is larger than the window {window}: pixels between windows would be skipped")
    rows = [(top, min(top + window, latent_h)) for top in _starts(latent_h, window, stride)]
    if circular and latent_w > window:
        columns = [(left, left + window) for left in range(0, latent_w, stride)]
    else:
        columns = [(left, min(left + window, latent_w)) for left in _starts(latent_w, window, stride)]
    return [(top, bottom, left, right) for top, bottom in rows for left, right in columns]


MAX_VIEWS = 1024
"""Views per step: a 2048x2048 canvas at SD1's window 64 and the official stride 8 makes
625; window 8 and stride 1 there would make 62,001, each a model pass."""


def _count(size: int, window: int, stride: int) -> int:
    """``len(_starts(size, window, stride))`` without building the list."""
    if size <= window:
        return 1
    full = (size - window) // stride + 1
    return full + int((full - 1) * stride + window < size)


def view_count(latent_h: int, latent_w: int, window: int, stride: int, circular: bool = False) -> int:
    """How many views :func:`get_views` makes, computed in O(1)."""
    columns = -(-latent_w // stride) if circular and latent_w > window else _count(latent_w, window, stride)
    return _count(latent_h, window, stride) * columns


def check_view_count(latent_h: int, latent_w: int, window: int, stride: int, circular: bool = False) -> None:
    """Refuse a layout of more than :data:`MAX_VIEWS` views, naming a stride that fits."""
    count = view_count(latent_h, latent_w, window, stride, circular)
    if count <= MAX_VIEWS:
        return
    fitting = next((s for s in range(stride + 1, window + 1) if view_count(latent_h, latent_w, window, s, circular) <= MAX_VIEWS), None)
    fix = f"use stride {fitting} or more" if fitting else "use a larger window"
    raise ValueError(
        f"window {window} and stride {stride} make {count} views of the {latent_w * 8}x{latent_h * 8} canvas per step "
        f"(each a model pass), over the limit of {MAX_VIEWS}; {fix}"
    )


def _doubly_covered(size: int, window: int, stride: int, wraps: bool) -> bool:
    """Along one axis: every pixel more than half a window from a non-wrapping edge lies in
    two views or more (an axis within one window has a single view and nothing to blend)."""
    if size <= window:
        return True
    starts = range(0, size, stride) if wraps else _starts(size, window, stride)
    change = [0] * (size + 1)
    for start in starts:
        end = start + window
        change[start] += 1
        change[min(end, size)] -= 1
        if end > size:  # wraps round to the left edge
            change[0] += 1
            change[end - size] -= 1
    inner = range(size) if wraps else range(window // 2, size - window // 2)
    covered, counts = 0, []
    for delta in change[:size]:
        covered += delta
        counts.append(covered)
    return all(counts[p] >= 2 for p in inner)


def auto_stride(latent_h: int, latent_w: int, window: int, circular: bool = False) -> int:
    """``stride: "auto"``: the largest stride at which every latent pixel more than half a
    window from a (non-wrapping) canvas edge is denoised by at least two views, so every seam
    between views is blended; the fewest views that do so. Pixels nearer an edge than half a
    window can lie in one view only, whatever the stride."""
    for stride in range(window, 1, -1):
        if _doubly_covered(latent_h, window, stride, False) and _doubly_covered(latent_w, window, stride, circular):
            return stride
    return 1


class MaskArea:
    """Host-side answers to "does this mask touch that view?" from a summed-area table made
    once per pass, so choosing a step's passes asks the device nothing."""

    def __init__(self, mask: torch.Tensor) -> None:
        """``mask``: (H, W), on the host."""
        table = F.pad((mask != 0).to(torch.int64).cumsum(0).cumsum(1), (1, 0, 1, 0))
        self._table: list[list[int]] = table.tolist()
        self._width = int(mask.shape[-1])

    def _count(self, top: int, bottom: int, left: int, right: int) -> int:
        t = self._table
        return t[bottom][right] - t[top][right] - t[bottom][left] + t[top][left]

    def any_in(self, view: View) -> bool:
        top, bottom, left, right = view
        if right <= self._width:
            return self._count(top, bottom, left, right) > 0
        return self._count(top, bottom, left, self._width) > 0 or self._count(top, bottom, 0, right - self._width) > 0


def _columns(view: View, width: int, device: torch.device) -> torch.Tensor | slice:
    left, right = view[2], view[3]
    if right <= width:
        return slice(left, right)
    return torch.arange(left, right, device=device) % width


def crop(x: torch.Tensor, view: View) -> torch.Tensor:
    """The view's pixels of ``x`` (..., H, W), wrapping round the right edge when needed."""
    top, bottom = view[0], view[1]
    columns = _columns(view, x.shape[-1], x.device)
    rows = x[..., top:bottom, :]
    return rows[..., columns] if isinstance(columns, slice) else rows.index_select(-1, columns)


def _add(target: torch.Tensor, view: View, value: torch.Tensor) -> None:
    """``target[view] += value`` with wrap-around columns."""
    rows = target[..., view[0] : view[1], :]
    columns = _columns(view, target.shape[-1], target.device)
    if isinstance(columns, slice):
        rows[..., columns] += value
    else:
        rows.index_add_(-1, columns, value)


def fuse(
    predictions: Sequence[torch.Tensor], views: Sequence[View], weights: Sequence[torch.Tensor], height: int, width: int
) -> torch.Tensor:
    """MultiDiffusion's least-squares fusion: per pixel ``sum(w F) / sum(w)``.

    ``predictions[i]`` is (N, C, h, w) for ``views[i]``; ``weights[i]`` broadcasts to it
    ((1|N, 1, h, w): region mask times region weight). The weights are normalised first
    (:func:`normalised_weights`), so a pixel with one contributor gets its prediction bit
    for bit (``w / w == 1``). Every pixel needs a positive total weight.
    """
    if not predictions:
        raise ValueError("nothing to fuse: no view has a non-empty region")
    dtype = predictions[0].dtype
    return weighted_sum(predictions, views, normalised_weights(views, [w.to(dtype) for w in weights], height, width), height, width)


def normalised_weights(
    views: Sequence[View], weights: Sequence[torch.Tensor], height: int, width: int, check: bool = True
) -> list[torch.Tensor]:
    """Each weight over the total weight at its pixels: the factors ``w / sum(w)`` of the
    closed form (equation 5). They depend on the layout alone (views, masks, region
    weights). ``check`` refuses a pixel of zero total weight, which reads a value back
    from the device; a caller whose layout covers every pixel by construction skips it."""
    if not weights:
        raise ValueError("nothing to fuse: no view has a non-empty region")
    reference = weights[0]
    total = torch.zeros((*reference.shape[:-2], height, width), dtype=reference.dtype, device=reference.device)
    for view, weight in zip(views, weights):
        _add(total, view, weight)
    if check and bool((total <= 0).any()):
        raise ValueError("some latent pixels are in no view or have zero total weight")
    return [weight / crop(total, view) for view, weight in zip(views, weights)]


def weighted_sum(
    predictions: Sequence[torch.Tensor], views: Sequence[View], normalised: Sequence[torch.Tensor], height: int, width: int
) -> torch.Tensor:
    """The fused (N, C, height, width) latent: each view's prediction times its normalised
    weight, added at the view's place."""
    reference = predictions[0]
    out = torch.zeros((*reference.shape[:-2], height, width), dtype=reference.dtype, device=reference.device)
    for prediction, view, weight in zip(predictions, views, normalised):
        _add(out, view, prediction * weight.to(out.dtype))
    return out


def box_mask(box: Sequence[float], latent_h: int, latent_w: int) -> torch.Tensor:
    """A (H, W) 0/1 mask of ``box = (x, y, w, h)`` given as fractions of the canvas.

    Edges round to the nearest latent pixel, so boxes scale with the canvas (hires fix).
    """
    x, y, w, h = (float(v) for v in box)
    top, bottom = round(y * latent_h), round((y + h) * latent_h)
    left, right = round(x * latent_w), round((x + w) * latent_w)
    mask = torch.zeros(latent_h, latent_w)
    mask[top:bottom, left:right] = 1.0
    return mask


def resize_mask(mask: torch.Tensor, latent_h: int, latent_w: int) -> torch.Tensor:
    """An image-sized mask (H, W) in [0, 1] to the latent: nearest resize, binarised at 0.5
    (the official ``preprocess_mask``)."""
    resized = F.interpolate(mask.float()[None, None], size=(latent_h, latent_w), mode="nearest")[0, 0]
    return (resized >= 0.5).float()


def with_background(foreground: torch.Tensor) -> torch.Tensor:
    """Stack (1 + K, H, W): the background ``clamp(1 - sum fg, 0)`` then the K foreground masks."""
    background = (1 - foreground.sum(dim=0, keepdim=True)).clamp(min=0)
    return torch.cat([background, foreground])


def bootstrap(x: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Bootstrapping (paper section 4.2): a region's input outside its mask is replaced by a
    noised constant-colour background, ``x m + bg (1 - m)``, so the region's prompt is
    denoised as a tight object."""
    return x * mask + background * (1 - mask)

"""A Regions sampling pass: its layout, made once per latent size, and each step's passes
over MultiDiffusion's overlapping views or over shifted windows (SpotDiffusion).

Everything that asks a question of a mask (is it empty, which windows does it touch) is
answered on the host from tables made with the layout; the masks go to the device once
per pass. A step then copies nothing to the device and reads nothing back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lib_fusion.arguments.args import TITLE, FusionArgs, FusionArgumentError
from lib_fusion.fusion import multidiffusion as md
from lib_fusion.fusion import shifted_windows as sw
from lib_fusion.fusion.denoise import StepInput, image_input
from lib_fusion.fusion.regions import Bootstrap, Coverage, Region, StepResult, coverage, regions_step


@dataclass(frozen=True)
class ModelWindow:
    """What the active model's architecture asks of a window."""

    native: int
    """The training size in latent pixels: the window when the arguments leave it to the model."""
    patch: int = 1
    """A DiT reads ``patch`` x ``patch`` latent pixels as one token: a window is a multiple of it."""


@dataclass
class RegionLayout:
    """Latent masks and windows of one pass (its latent size)."""

    size: tuple[int, int]
    masks: torch.Tensor
    """(1 + K, H, W) on the host: background then each foreground region."""
    areas: list[md.MaskArea]
    window: int
    views: list[md.View] | None
    """Overlapping views (the same every step), or None: shifted windows, drawn per step."""
    stride: int | None
    """The stride the overlapping views use (``auto`` resolved); None for shifted windows."""
    circular: bool = False
    device_masks: list[torch.Tensor] | None = None
    """The masks on the sampling device, moved at the pass's first step."""
    noise: torch.Tensor | None = None
    picks: torch.Tensor | None = None
    """Bootstrapping's colour table on the device (:func:`lib_fusion.fusion.regions.pick_table`)."""
    coverage: Coverage | None = None
    """Overlapping views: the passes and fusion weights on the sampling device, made at the pass's first step."""

    @property
    def most_views(self) -> int:
        """Windows per step and image, at most."""
        if self.views is not None:
            return len(self.views)
        return sw.most_views(*self.size, self.window, self.circular)

    def on_device(self, like: torch.Tensor) -> list[torch.Tensor]:
        if self.device_masks is None or self.device_masks[0].device != like.device:
            self.device_masks = [mask.to(like) for mask in self.masks]
        return self.device_masks


def make_layout(args: FusionArgs, images: Sequence[torch.Tensor | None], size: tuple[int, int], model: ModelWindow) -> RegionLayout:
    """The masks at this latent size and the windows the arguments ask for; refuses a region
    that covers no latent pixel and a layout of more than :data:`md.MAX_VIEWS` views."""
    height, width = size
    foreground = []
    for index, (region, image) in enumerate(zip(args.regions, images)):
        mask = md.box_mask(region.box, height, width) if image is None else md.resize_mask(image, height, width)
        if not bool(mask.any()):
            raise FusionArgumentError(
                f"{TITLE}: regions[{index}] covers no latent pixel of the {width * 8}x{height * 8} canvas; make it larger"
            )
        foreground.append(mask)
    masks = md.with_background(torch.stack(foreground)) if foreground else torch.ones(1, height, width)
    window, stride = windows_of(args, size, model)
    areas = [md.MaskArea(mask) for mask in masks]
    views = None if stride is None else md.get_views(height, width, window, stride, args.circular)
    return RegionLayout(size, masks, areas, window, views, stride, args.circular)


def windows_of(args: FusionArgs, size: tuple[int, int], model: ModelWindow) -> tuple[int, int | None]:
    """(window, stride) of a canvas of latent ``size``: the stride of overlapping views
    (``auto`` resolved), None for shifted windows. Refuses a window that is not a multiple of
    the model's patch (every view and shifted window is cut ``window`` wide, or the whole
    canvas where that is narrower, as the model would see the canvas), a stride larger than
    the window and more than :data:`md.MAX_VIEWS` views per step, naming what would fit."""
    height, width = size
    window = args.window or model.native
    if window % model.patch:
        low, high = window - window % model.patch, window - window % model.patch + model.patch
        raise FusionArgumentError(
            f"{TITLE}: window {window} is not a multiple of the active model's patch size {model.patch} (its transformer reads "
            f"{model.patch}x{model.patch} latent pixels as one token); use {low or high} or {high}"
        )
    if args.windows == "shifted":
        if sw.most_views(height, width, window, args.circular) > md.MAX_VIEWS:
            raise FusionArgumentError(f"{TITLE}: window {window} makes over {md.MAX_VIEWS} windows per step; use a larger window")
        return window, None
    stride = md.auto_stride(height, width, window, args.circular) if args.stride == "auto" else args.stride
    if stride > window:
        raise FusionArgumentError(f"{TITLE}: stride {stride} is larger than the window ({window} latent pixels); lower the stride")
    try:
        md.check_view_count(height, width, window, stride, args.circular)
    except ValueError as error:
        raise FusionArgumentError(f"{TITLE}: {error}") from None
    return window, stride


def layout_step(
    layout: RegionLayout,
    regions: Sequence[Region],
    inputs: StepInput,
    view_batch_size: int,
    bootstrap: Bootstrap | None,
    seeds: Sequence[int],
    step_index: int,
) -> StepResult:
    """One step of every region over the layout's windows: the fixed overlapping views for
    the whole batch, or each image's own shifted windows (its seed draws the shift)."""
    if layout.views is not None:
        if layout.coverage is None:
            layout.coverage = coverage(regions, layout.views, inputs.x)
        return regions_step(regions, inputs, layout.views, view_batch_size, bootstrap, layout.coverage)
    height, width = layout.size
    predictions, passes, calls = [], 0, 0
    for image, seed in enumerate(seeds):
        shift = sw.offsets(seed, step_index, layout.window)
        views = sw.shifted_views(height, width, layout.window, shift, layout.circular)
        own = [region.of_image(image) for region in regions]
        own_input = image_input(inputs, image)
        result = regions_step(
            own,
            own_input,
            views,
            view_batch_size,
            None if bootstrap is None else bootstrap.of_image(image),
            coverage(own, views, own_input.x),
        )
        predictions.append(result.prediction)
        passes, calls = passes + result.passes, calls + result.calls
    return StepResult(torch.cat(predictions), passes, calls)

"""One Region MultiDiffusion step: every (view, region) pass, batched per model, then fused.

Plain torch over the batch the host hands over (one row per image); the maths lives in
:mod:`lib_fusion.fusion.multidiffusion`, classifier-free guidance in :func:`lib_fusion.fusion.denoise.guided_prediction`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from lib_fusion.fusion import multidiffusion as md
from lib_fusion.fusion.conds import cat_conds, row_count, token_width
from lib_fusion.fusion.denoise import Conditioning, Model, StepInput, guided_prediction


@dataclass
class Region:
    """A region's model and conditioning for this step; the background comes first."""

    model: Model
    mask: torch.Tensor
    """(H, W) latent mask of this pass, 0/1, on the sampling device."""
    weight: float = 1.0
    bootstrap: bool = False
    """Foreground regions are bootstrapped in the first steps; the background never."""
    area: md.MaskArea | None = None
    """The mask's host-side table: which views it touches, without asking the device."""

    def covers(self, view: md.View) -> bool:
        if self.area is not None:
            return self.area.any_in(view)
        return bool(md.crop(self.mask, view).any())

    def of_image(self, image: int) -> Region:
        """This region for one image of the batch (its own conditioning rows)."""
        model = Model(self.model.name, self.model.fn, self.model.conditioning.of_image(image))
        return replace(self, model=model)


@dataclass
class Bootstrap:
    """What bootstrapping needs this step (paper section 4.2, official ``region_based.py``)."""

    colours: torch.Tensor
    """(K, C): latents of constant-colour images, one is drawn per region, view and image."""
    noise: torch.Tensor
    """(N, C, H, W): a fixed noise per image, the official code's initial latent."""
    noise_to: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    """(x0, noise, sigma per row) -> the sampler's x at that noise level."""
    table: torch.Tensor
    """(N, steps, passes) colour indices on the device (:func:`pick_table`), made once per pass."""
    step_index: int

    def picks(self, count: int) -> torch.Tensor:
        """(N, count) colour indices of this step: a slice of the table, nothing to copy."""
        if count > self.table.shape[2]:
            raise ValueError(f"{count} bootstrapped passes, but colours were drawn for {self.table.shape[2]}")
        return self.table[:, self.step_index, :count]

    def of_image(self, image: int) -> Bootstrap:
        return replace(self, noise=self.noise[image : image + 1], table=self.table[image : image + 1])


def pick_table(seeds: Sequence[int], steps: int, passes: int, colours: int) -> torch.Tensor:
    """(N, steps, passes) colour indices on the host, drawn per image from its seed: a fresh
    pick per pass and step, independent of the batch the image is in."""
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed((int(seed) * 1_000_003) % 2**63)
        rows.append(torch.randint(colours, (steps, passes), generator=generator))
    return torch.stack(rows)


@dataclass
class StepResult:
    prediction: torch.Tensor
    passes: int
    """(view, region) pairs that ran, all models together."""
    calls: int
    """Chunks of passes sent through ``guided_prediction`` (each one or two UNet calls)."""


Item = tuple[int, int]
"""(view index, region index)."""


@dataclass
class Coverage:
    """Which (view, region) passes run and their fusion weights, on the sampling device.

    Fixed by a pass's layout (masks, views, region weights), so made once per pass: a step
    then copies no mask to the device and sums no weights.
    """

    items: list[Item]
    """The (view, region) pairs whose mask is not empty on the view."""
    weights: list[torch.Tensor]
    """Per item, (1, 1, h, w): its mask times its region's weight over the total (equation 5)."""
    masks: list[torch.Tensor]
    """Each region's (H, W) mask on the device (bootstrapping blends with it)."""


def coverage(regions: Sequence[Region], views: Sequence[md.View], like: torch.Tensor) -> Coverage:
    """The passes and normalised weights of ``regions`` (masks on ``like``'s device) over
    ``views``, in ``like``'s dtype.

    Every pixel has a positive total weight by construction (the views cover the canvas, the
    background is ``1 - sum(foreground)`` clamped at 0, weights are positive), so nothing
    is checked on the device: a step waits on no device value."""
    height, width = like.shape[-2:]
    items = [(v, r) for v, view in enumerate(views) for r, region in enumerate(regions) if region.covers(view)]
    masks = [region.mask if region.mask.dtype == like.dtype else region.mask.to(dtype=like.dtype) for region in regions]
    weights = [regions[r].weight * md.crop(masks[r], views[v])[None, None] for v, r in items]
    return Coverage(items, md.normalised_weights([views[v] for v, _ in items], weights, height, width, check=False), masks)


def regions_step(
    regions: Sequence[Region],
    step: StepInput,
    views: Sequence[md.View],
    view_batch_size: int,
    bootstrap: Bootstrap | None = None,
    covered: Coverage | None = None,
) -> StepResult:
    """Run each model once per chunk of ``view_batch_size`` of its (view, region) passes,
    skip a pass whose mask is empty on that view, and fuse by MultiDiffusion's average.

    ``covered`` is :func:`coverage` of these regions and views, made once per pass."""
    height, width = step.x.shape[-2:]
    covered = covered or coverage(regions, views, step.x)
    items = covered.items
    picks = bootstrap.picks(len(items)) if bootstrap is not None else None
    groups: dict[tuple, list[int]] = {}
    for k, (_, r) in enumerate(items):
        conditioning = regions[r].model.conditioning
        key = (regions[r].model.name, token_width(conditioning.cond), token_width(conditioning.uncond))
        groups.setdefault(key, []).append(k)
    predictions: list[torch.Tensor | None] = [None] * len(items)
    calls = 0
    for members in groups.values():
        for start in range(0, len(members), view_batch_size):
            chunk = members[start : start + view_batch_size]
            outputs = _run_chunk(regions, step, views, [items[k] for k in chunk], covered.masks, bootstrap, picks, chunk)
            for k, output in zip(chunk, outputs):
                predictions[k] = output
            calls += 1
    prediction = md.weighted_sum(predictions, [views[v] for v, _ in items], covered.weights, height, width)
    return StepResult(prediction, len(items), calls)


def _run_chunk(
    regions: Sequence[Region],
    step: StepInput,
    views: Sequence[md.View],
    items: list[Item],
    masks: Sequence[torch.Tensor],
    bootstrap: Bootstrap | None,
    picks: torch.Tensor | None,
    item_numbers: list[int],
) -> list[torch.Tensor]:
    """Guided predictions of several passes of one model, as one batch of ``len(items) * N`` rows."""
    batch = step.x.shape[0]
    xs, image_conds, image_unconds, conds, unconds, conds_list = [], [], [], [], [], []
    offset = 0
    for (v, r), k in zip(items, item_numbers):
        view, region = views[v], regions[r]
        x = md.crop(step.x, view)
        if bootstrap is not None and region.bootstrap:
            x = md.bootstrap(x, md.crop(masks[r], view), _background(bootstrap, picks[:, k], view, step.sigma).to(dtype=x.dtype))
        xs.append(x)
        image_conds.append(_crop_spatial(step.image_cond, view, step.x))
        image_unconds.append(_crop_spatial(step.image_uncond, view, step.x))
        conditioning = region.model.conditioning
        conds.append(conditioning.cond)
        unconds.append(conditioning.uncond)
        conds_list.extend([[(row + offset, weight) for row, weight in image] for image in conditioning.conds_list])
        offset += row_count(conditioning.cond)
    n = len(items)
    chunk_step = StepInput(
        x=torch.cat(xs),
        sigma=step.sigma.repeat(n),
        image_cond=torch.cat(image_conds),
        image_uncond=torch.cat(image_unconds),
        cfg_scale=step.cfg_scale,
        units=step.units,
        flow=step.flow,
        max_rows=step.max_rows * n if step.max_rows else None,
        cfg_rule=step.cfg_rule,
        width_join=step.width_join,
    )
    first = regions[items[0][1]].model
    if token_width(conds[0]) == token_width(unconds[0]):  # the chunk's one copy of its text rows
        conditioning = Conditioning.from_joined(conds_list, cat_conds([*conds, *unconds]), offset)
    else:  # a prompt longer than its negative (or the reverse): batched as the host batches them (denoise.rows)
        conditioning = Conditioning(conds_list, cat_conds(conds), cat_conds(unconds))
    model = Model(first.name, first.fn, conditioning)
    return list(guided_prediction(model, chunk_step).split(batch))


def _background(bootstrap: Bootstrap, picks: torch.Tensor, view: md.View, sigma: torch.Tensor) -> torch.Tensor:
    """Per image, a drawn constant colour noised to this step with the image's fixed noise."""
    noise = md.crop(bootstrap.noise, view)
    colour = bootstrap.colours[picks][:, :, None, None].to(dtype=noise.dtype).expand_as(noise)
    return bootstrap.noise_to(colour, noise, sigma)


def _crop_spatial(image_cond: torch.Tensor, view: md.View, x: torch.Tensor) -> torch.Tensor:
    """Inpainting models' image conditioning is latent-sized and is cropped with the view;
    the (N, 5, 1, 1) placeholder of other models is not."""
    if image_cond.shape[-2:] == x.shape[-2:]:
        return md.crop(image_cond, view)
    return image_cond


def seed_noise(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """(N, *shape) standard noise, one draw per image from its seed (batch-independent)."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(seed))) for seed in seeds])

"""The extra images a generation returns: the comparison (each model alone and a labelled
grid) and the previews (saliency and mask per fused step, or the region layout).

Works on what the run kept (finished images per image index, the traces of fused steps,
the region masks); the host adapter adds the results to the WebUI's output with their
infotexts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lib_fusion.engine import pictures
from lib_fusion.engine.preview_maps import Trace
from lib_fusion.engine.run import FusionRun
from lib_fusion.engine.sampling_pass import ALONE_A, ALONE_B, FUSED, alone_variant
from lib_fusion.methods import method_of

OTHER_COLOUR_NAMES = ["green", "pink", "yellow", "teal", "purple", "amber", "grey"]
"""The names of :data:`lib_fusion.engine.pictures.OTHER_COLOURS`, for the captions."""


@dataclass
class Output:
    """One extra image and its label (the infotext's ``Fusion output``)."""

    image: Any
    label: str
    index: int | None
    """The generated image it belongs to (its seed and prompt); None: the whole generation."""
    suffix: str
    """File-name suffix when it is saved."""


@dataclass
class Titles:
    active: str
    fusion: str


def variant_labels(run: FusionRun, titles: Titles) -> dict[str, str]:
    """What the fused image and each comparison variant are called."""
    if method_of(run.args).lays_out_regions:
        return {FUSED: "Regions", ALONE_A: f"active everywhere: {titles.active}", ALONE_B: f"fusion everywhere: {titles.fusion}"}
    title_a, title_b = _roles(run, titles)
    more = {alone_variant(index): f"{alone_variant(index)}: {entry.model}" for index, entry in enumerate(run.args.models)}
    return {FUSED: method_of(run.args).label, ALONE_A: f"A alone: {title_a}", ALONE_B: f"B alone: {title_b}", **more}


def _roles(run: FusionRun, titles: Titles) -> tuple[str, str]:
    """(model A's title, model B's title)."""
    return (titles.active, titles.fusion) if run.args.solo == "active" else (titles.fusion, titles.active)


def comparison(run: FusionRun, titles: Titles, seeds: Sequence[int], font: pictures.Font = pictures.default_font) -> list[Output]:
    """Each model's image alone (image order, A, B, then SNB's further checkpoints) and a grid:
    one row per image, columns fused | A alone | B alone | …. Images that were not completed (interrupted) are left out."""
    labels = variant_labels(run, titles)
    indices = [index for index in sorted(run.results) if all(index in run.alone[variant] for variant in run.variants)]
    if not indices:
        return []
    result = [
        Output(run.alone[variant][index], labels[variant], index, f"-fusion-{variant[0].lower()}")
        for variant in run.variants
        for index in indices
    ]
    rows = [[run.results[index], *(run.alone[variant][index] for variant in run.variants)] for index in indices]
    row_labels = [f"seed {seeds[index]}" for index in indices] if len(indices) > 1 else []
    grid = pictures.labelled_grid(rows, [labels[FUSED], *(labels[variant] for variant in run.variants)], row_labels, font)
    return [*result, Output(grid, "comparison grid", None, "-fusion-compare")]


def chosen(traces: Sequence[Trace], count: int) -> list[Trace]:
    """``count`` traces spread evenly over the fused steps, from the first to the last (all
    when there are fewer): for each evenly spaced position the kept trace nearest to it, so a
    thinned sample (:class:`lib_fusion.engine.preview_maps.Thinned`) shows the steps a full list would."""
    if len(traces) <= count:
        return list(traces)
    first, last = traces[0].position, traces[-1].position
    targets = [(first + last) / 2] if count == 1 else [first + k * (last - first) / (count - 1) for k in range(count)]
    picked: list[Trace] = []
    for target in targets:
        left = [trace for trace in traces if all(trace is not other for other in picked)]
        nearest = min(left, key=lambda trace: abs(trace.position - target))
        picked.append(nearest)
    return sorted(picked, key=lambda trace: trace.position)


def snb_previews(run: FusionRun, titles: Titles, batch_size: int, count: int, font: pictures.Font = pictures.default_font) -> list[Output]:
    """Per image: rows of chosen fused steps; columns A's saliency, B's saliency and the mask
    (SNB), or where cross-model guidance pushes, ``|D_A(c) - D_B(c)|`` (guidance); each over
    the finished image."""
    title_a, title_b = _roles(run, titles)
    soft = run.args.mask != "hard"
    if method_of(run.args).preview == "difference":
        columns, label = [f"|D_A(c) - D_B(c)|: {title_a} vs {title_b}"], "guidance preview"
    elif run.args.models:
        names = ["blue A", "orange B", *OTHER_COLOUR_NAMES]
        legend = ", ".join(f"{names[m]}: {title}" for m, title in enumerate([title_a, title_b, *(e.model for e in run.args.models)]))
        columns, label = [f"winner: {legend}"], "winner preview"
    else:
        mask_label = "mask: B's share (blue A, orange B)" if soft else "mask: blue A, orange B"
        columns, label = [f"A saliency: {title_a}", f"B saliency: {title_b}", mask_label], "saliency and mask preview"
    result = []
    for index, image in sorted(run.results.items()):
        batch, row = divmod(index, batch_size)
        traces = chosen([trace for trace in run.traces if trace.batch == batch], count)
        if not traces:
            continue
        tiles = []
        for trace in traces:
            if run.args.models:  # several models: the map kept is which one won where
                tiles.append([pictures.overlay(image, pictures.choice_picture(trace.saliency_a[row, 0], image.size))])
                continue
            maps = [pictures.heat_map(trace.saliency_a[row, 0], image.size)]
            if trace.saliency_b is not None and trace.mask is not None:
                maps.append(pictures.heat_map(trace.saliency_b[row, 0], image.size))
                maps.append(pictures.mask_picture(trace.mask[row, 0], image.size, soft=soft))
            tiles.append([pictures.overlay(image, picture) for picture in maps])
        rows = [f"{'hires ' if trace.hires else ''}step {trace.step + 1} t={trace.t:.0f}" for trace in traces]
        result.append(Output(pictures.labelled_grid(tiles, columns, rows, font), label, index, "-fusion-preview"))
    return result


def _background(run: FusionRun, titles: Titles) -> str:
    """The checkpoint that denoised the background (uncoloured in the layout)."""
    background = run.args.background
    return {"active": f"active ({titles.active})", "fusion": f"fusion ({titles.fusion})"}.get(background, background)


def region_previews(run: FusionRun, titles: Titles, font: pictures.Font = pictures.default_font) -> list[Output]:
    """Per image: the regions as the method laid them out (latent masks of the last pass),
    coloured by their checkpoint over the finished image."""
    layouts = [sampling_pass.layout for sampling_pass in run.passes if sampling_pass.layout is not None]
    if not layouts:
        return []
    layout = layouts[-1]
    regions = run.args.regions
    models = [region.model for region in regions]
    labels = [f"{k + 1}: {region.prompt or 'main prompt'}" for k, region in enumerate(regions)]
    windows = layout.most_views
    tiling = "" if layout.views is not None else " (shifted each step)"
    others = list(dict.fromkeys(model for model in models if model not in pictures.MODEL_COLOURS))
    named = "".join(f"; {colour_name}: {title}" for colour_name, title in zip(OTHER_COLOUR_NAMES, others))
    caption = (
        f"background: {_background(run, titles)}; blue: active ({titles.active}); orange: fusion ({titles.fusion}){named}; "
        f"{windows} window{'' if windows == 1 else 's'}{tiling}"
    )
    return [
        Output(pictures.region_layout(image, layout.masks[1:], models, labels, caption, font), "region layout", index, "-fusion-layout")
        for index, image in sorted(run.results.items())
    ]

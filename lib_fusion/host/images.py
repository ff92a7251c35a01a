"""What a generation returns besides the WebUI's own images: the comparison (each model
alone from the batch's own noise, finished as the WebUI finishes its images) and the previews."""

from __future__ import annotations

from typing import Any

import torch
from modules import shared

from lib_fusion.arguments.args import TITLE
from lib_fusion.engine import outputs, pictures
from lib_fusion.engine.run import FusionRun
from lib_fusion.host.probe import host_module
from lib_fusion.host.settings import preview_steps

RUN_ATTRIBUTE = "model_fusion_run"


def keep_result(p: Any, image: Any) -> None:
    """``postprocess_image_after_composite``: the finished fused image, for the comparison
    grid and the previews to show."""
    run: FusionRun | None = getattr(p, RUN_ATTRIBUTE, None)
    if run is not None and run.error is None and (run.args.compare or run.args.preview):
        run.results[image_index(p, int(getattr(p, "batch_index", 0)))] = image


def image_index(p: Any, position: int) -> int:
    """Index over the whole generation of the image at ``position`` in the current batch."""
    return int(getattr(p, "iteration", 0)) * p.batch_size + position


def add_outputs(p: Any, processed: Any, run: FusionRun) -> None:
    """The comparison and previews after the WebUI's own images, each with the generation's
    infotext and a ``Fusion output`` label; saved where the WebUI saves its own."""
    images, infotext_utils = host_module("modules.images"), host_module("modules.infotext_utils")
    processing = host_module("modules.processing")
    active = getattr(getattr(shared.sd_model, "sd_checkpoint_info", None), "title", "active checkpoint")
    titles = outputs.Titles(active, run.plan.fusion.title if run.plan.fusion is not None else active)
    extra: list[outputs.Output] = []
    if run.args.compare:
        extra += outputs.comparison(run, titles, p.all_seeds, _font)
    if run.args.preview and run.method.preview == "layout":
        extra += outputs.region_previews(run, titles, _font)
    elif run.args.preview:
        previews = outputs.snb_previews(run, titles, p.batch_size, preview_steps(), _font)
        if run.results and not previews:
            why = (
                f"{run.method.label} makes no per-pixel choice to show"
                if run.method.preview == "none"
                else "the schedule ran one model alone"
            )
            processed.comments = f"{processed.comments or ''}\n{TITLE}: no fused step to preview ({why})".strip()
        extra += previews
    for output in extra:
        index = 0 if output.index is None else output.index
        text = processing.create_infotext(
            p,
            p.all_prompts,
            p.all_seeds,
            p.all_subseeds,
            index=index,
            use_main_prompt=output.index is None,
            all_negative_prompts=p.all_negative_prompts,
        )
        text = f"{text}, Fusion output: {infotext_utils.quote(output.label)}"
        if shared.opts.enable_pnginfo:
            output.image.info["parameters"] = text
        processed.images.append(output.image)
        processed.infotexts.append(text)
        if output.index is None and shared.opts.grid_save and not p.do_not_save_grid:
            images.save_image(
                output.image,
                p.outpath_grids,
                "grid",
                p.all_seeds[0],
                p.all_prompts[0],
                shared.opts.grid_format,
                info=text,
                short_filename=not shared.opts.grid_extended_filename,
                p=p,
                grid=True,
                suffix=output.suffix,
            )
        elif output.index is not None and p.save_samples():
            images.save_image(
                output.image,
                p.outpath_samples,
                "",
                p.all_seeds[index],
                p.all_prompts[index],
                shared.opts.samples_format,
                info=text,
                p=p,
                suffix=output.suffix,
            )


def _font(size: int) -> Any:
    """The WebUI's grid font (Settings > Saving images: font), else PIL's."""
    try:
        return host_module("modules.images").get_font(size)
    except Exception:
        return pictures.default_font(size)


def finished_images(p: Any, samples: Any) -> list[Any]:
    """Latents to images as ``process_images_inner`` finishes them: decode, clamp, colour
    correction and the inpainting overlay (the other scripts' image hooks are theirs)."""
    import numpy as np
    from PIL import Image

    processing, devices = host_module("modules.processing"), host_module("modules.devices")
    if getattr(samples, "already_decoded", False):
        decoded = samples
    else:
        decoded = processing.decode_latent_batch(p.sd_model, samples, target_device=devices.cpu, check_for_nans=True)
    pixels = torch.clamp((torch.stack(list(decoded)).float() + 1.0) / 2.0, min=0.0, max=1.0)
    corrections = getattr(p, "color_corrections", None) or []
    overlays = (getattr(p, "overlay_images", None) or []) if getattr(shared.opts, "overlay_inpaint", True) else []
    images = []
    for index, sample in enumerate(pixels):
        image = Image.fromarray((255.0 * np.moveaxis(sample.cpu().numpy(), 0, 2)).astype(np.uint8))
        if index < len(corrections):
            image = processing.apply_color_correction(corrections[index], image)
        if index < len(overlays):
            image, _ = processing.apply_overlay(image, p.paste_to, overlays[index])
        images.append(image)
    return images

"""The Model Fusion accordion (gradio 3.41, as pinned by the WebUI).

Components are returned in :data:`lib_fusion.args.FIELDS` order so positional API
arguments and UI values line up. The friendly window controls (v1 slider, kg, ke) are not
script arguments: they edit the ``fusion_selection`` text, which stays the one truth.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import gradio as gr

from lib_fusion import host, region_table
from lib_fusion.args import FIELDS, MAX_GUIDANCE, MAX_VIEW_BATCH, OUTPUT_FIELDS, TITLE, FusionArgs
from lib_fusion.infotext import KEYS, paste_value
from lib_fusion.masks import MaskError, canonical
from lib_fusion.methods import TWO_MODEL_METHODS, USED_BY
from lib_fusion.schedule import T_MAX, format_fusion_selection, parse_fusion_selection

MODE_HELP = "0: A alone · 1: fuse when t ≤ v1 · 2: fuse while t > v1"
METHODS = tuple(USED_BY)


@dataclass
class Controls:
    components: list[Any]
    infotext_fields: list[tuple[Any, Any]]
    paste_field_names: list[str]


def build(is_img2img: bool, elem_id: Any) -> Controls:
    defaults = host.ui_defaults()
    tab = "img2img" if is_img2img else "txt2img"
    with gr.Accordion(TITLE, open=False, elem_id=f"model_fusion_{tab}"):
        with gr.Row():
            enabled = gr.Checkbox(label="Enable", value=defaults.enabled, elem_id=elem_id("enabled"))
            method = gr.Radio(label="Method", choices=list(METHODS), value=defaults.method, elem_id=elem_id("method"))
        with gr.Row():
            # "" rather than None when none is chosen: the WebUI's paste (UI and the API's
            # ``infotext``) converts a pasted value to the type of the component's value, and a
            # None there drops the pasted checkpoint.
            model = gr.Dropdown(label="Fusion checkpoint", choices=host.checkpoint_titles(), value=defaults.model, elem_id=elem_id("model"))
            refresh = gr.Button(value="\U0001f504", elem_classes=["tool"], elem_id=elem_id("refresh"))
            unload = gr.Button(value="Unload fusion model", size="sm", scale=0, min_width=120, elem_id=elem_id("unload"))
            text_encoder = gr.Radio(
                label="Text encoder of the fusion checkpoint's prompts",
                choices=["solo", "own"],
                value=defaults.text_encoder,
                elem_id=elem_id("text_encoder"),
            )
        status = gr.Markdown("", elem_id=elem_id("status"))
        with gr.Row():
            compare = gr.Checkbox(
                label="Compare: also return A alone, B alone and a labelled grid (two more samplings)",
                value=defaults.compare,
                elem_id=elem_id("compare"),
            )
            preview = gr.Checkbox(
                label="Preview: saliency maps and mask (SNB) or region layout (Regions) over the result",
                value=defaults.preview,
                elem_id=elem_id("preview"),
            )
        controls = {
            "enabled": enabled,
            "model": model,
            "method": method,
            "text_encoder": text_encoder,
            "compare": compare,
            "preview": preview,
        }
        with gr.Group(visible=defaults.method in TWO_MODEL_METHODS) as two_model_group:
            two_model, guidance_row, snb_options = _two_model_controls(defaults, elem_id)
            controls.update(two_model)
        with gr.Group(visible=defaults.method == "regions") as regions_group:
            controls.update(_region_controls(defaults, elem_id))

    refresh.click(fn=lambda: gr.update(choices=host.refresh_checkpoints()), inputs=[], outputs=[model])
    unload.click(fn=_unload, inputs=[], outputs=[status])
    method.change(
        fn=lambda chosen: tuple(
            gr.update(visible=visible)
            for visible in (chosen in TWO_MODEL_METHODS, chosen == "regions", chosen == "guidance", chosen == "snb")
        ),
        inputs=[method],
        outputs=[two_model_group, regions_group, guidance_row, snb_options],
    )
    components = [controls[field] for field in FIELDS]
    # Compare and preview are output options: pasting an infotext leaves them as they are.
    infotext_fields = [(component, _paster(field)) for component, field in zip(components, FIELDS) if field not in OUTPUT_FIELDS]
    return Controls(components, infotext_fields, [KEYS[field] for field in FIELDS if field in KEYS])


def _two_model_controls(defaults: FusionArgs, elem_id: Any) -> tuple[dict[str, Any], Any, Any]:
    """The fusion checkpoint's prompts, the window (SNB, guidance, base uncond), guidance's
    weight and SNB's options; also the guidance row and SNB's options, whose visibility
    follows the method."""
    v1, kg, ke = defaults.selection
    prompt = gr.Textbox(label="Fusion prompt (empty: the main prompt)", lines=2, elem_id=elem_id("prompt"))
    negative_prompt = gr.Textbox(label="Fusion negative prompt (empty: the main one)", lines=1, elem_id=elem_id("negative_prompt"))
    with gr.Row():
        solo = gr.Radio(
            label="Runs alone outside the window (model A)", choices=["active", "fusion"], value=defaults.solo, elem_id=elem_id("solo")
        )
        mode = gr.Radio(label=f"Mode ({MODE_HELP})", choices=["0", "1", "2"], value=str(defaults.mode), elem_id=elem_id("mode"))
    with gr.Row():
        fusion_selection = gr.Textbox(
            label="fusion_selection (v1,kg,ke)", value=defaults.fusion_selection, elem_id=elem_id("fusion_selection")
        )
        v1_slider = gr.Slider(label="v1: window edge (DDPM timestep)", minimum=0, maximum=T_MAX, step=1, value=v1, elem_id=elem_id("v1"))
        # No minimum/maximum on gradio 3.41's numbers: its preprocess raises for a value out of
        # range, which fails every generation (Enable off too) before the script sees it; the
        # argument model refuses bad values for an enabled fusion only.
        kg_number = gr.Number(label="kg (A's saliency factor)", value=kg, elem_id=elem_id("kg"))
        ke_number = gr.Number(label="ke (B's saliency factor)", value=ke, elem_id=elem_id("ke"))
    with gr.Row(visible=defaults.method == "guidance") as guidance_row:
        guidance_weight = gr.Slider(
            label="Guidance weight w (1 = plain CFG; above 1 pushes A away from B)",
            minimum=0,
            maximum=MAX_GUIDANCE,
            step=0.05,
            value=defaults.guidance_weight,
            elem_id=elem_id("guidance_weight"),
        )
    with gr.Accordion("SNB options (defaults reproduce the official code)", open=False, visible=defaults.method == "snb") as snb_options:
        with gr.Row():
            saliency_uncond = gr.Radio(
                label="B's saliency against", choices=["solo", "own"], value=defaults.saliency_uncond, elem_id=elem_id("saliency_uncond")
            )
            blur = gr.Radio(label="Saliency blur", choices=["box", "gaussian", "gaussian3"], value=defaults.blur, elem_id=elem_id("blur"))
            mask = gr.Radio(label="Mask", choices=["hard", "soft", "mean"], value=defaults.mask, elem_id=elem_id("mask"))
        with gr.Row():
            mask_ema = gr.Slider(
                label="Steadier mask: moving average of the saliency over steps (0 = off)",
                minimum=0,
                maximum=0.95,
                step=0.05,
                value=defaults.mask_ema,
                elem_id=elem_id("mask_ema"),
            )
            mask_freeze = gr.Number(
                label="Freeze the mask after N fused steps (0 = never)", value=defaults.mask_freeze, precision=0,
                elem_id=elem_id("mask_freeze"),
            )  # fmt: skip
            per_channel = gr.Checkbox(
                label="A mask per latent channel (Face-diffuser)", value=defaults.per_channel, elem_id=elem_id("per_channel")
            )

    friendly = [v1_slider, kg_number, ke_number]
    for control in friendly:
        control.change(fn=_selection_from_friendly, inputs=[*friendly, fusion_selection], outputs=[fusion_selection])
    fusion_selection.change(fn=_friendly_from_selection, inputs=[fusion_selection, *friendly], outputs=friendly)
    fields = {
        "prompt": prompt,
        "negative_prompt": negative_prompt,
        "solo": solo,
        "fusion_selection": fusion_selection,
        "mode": mode,
        "saliency_uncond": saliency_uncond,
        "blur": blur,
        "mask": mask,
        "guidance_weight": guidance_weight,
        "mask_ema": mask_ema,
        "mask_freeze": mask_freeze,
        "per_channel": per_channel,
    }
    return fields, guidance_row, snb_options


def _region_controls(defaults: FusionArgs, elem_id: Any) -> dict[str, Any]:
    """The region editor (canvas, table, mask upload) around one JSON value, and the panorama
    settings. ``javascript/model_fusion.js`` draws the canvas and writes the JSON."""
    gr.HTML(
        f'<div id="{elem_id("canvas")}" class="model-fusion-canvas"></div>'
        "<p class='model-fusion-help'>Drag on the canvas to add a box, drag a box to move it, its corner to resize; "
        "Delete removes the selected box. The main prompt is the background (active checkpoint).</p>"
    )
    table = gr.Dataframe(
        headers=region_table.HEADERS,
        datatype=region_table.DATATYPES,
        col_count=(len(region_table.HEADERS), "fixed"),
        row_count=(0, "dynamic"),
        type="array",
        interactive=True,
        label="Regions (kind box|mask · x y w h: fractions of the image · model active|fusion)",
        elem_id=elem_id("table"),
    )
    with gr.Row():
        mask_image = gr.Image(
            label="Mask region (white = inside)", source="upload", type="pil", image_mode="L", elem_id=elem_id("mask_image")
        )
        with gr.Column():
            mask_prompt = gr.Textbox(label="Prompt of the mask region", lines=2, elem_id=elem_id("mask_prompt"))
            add_mask = gr.Button(value="Add mask region", elem_id=elem_id("add_mask"))
            mask_status = gr.Markdown("")
    with gr.Accordion("Regions as JSON (what the API and infotext use)", open=False):
        regions = gr.Textbox(value="[]", label="regions", lines=2, elem_id=elem_id("regions"))
    with gr.Row():
        bootstrapping = gr.Slider(
            label="Bootstrapping (fraction of steps)",
            minimum=0,
            maximum=1,
            step=0.05,
            value=defaults.bootstrapping,
            elem_id=elem_id("bootstrapping"),
        )
        window = gr.Slider(
            label="Window (latent px, 0 = model's own)", minimum=0, maximum=256, step=8, value=defaults.window, elem_id=elem_id("window")
        )
        windows = gr.Radio(
            label="Windows: overlap (MultiDiffusion) or shifted (SpotDiffusion: fewer, moving each step)",
            choices=["overlap", "shifted"],
            value=defaults.windows,
            elem_id=elem_id("windows"),
        )
        stride = gr.Dropdown(
            label="Stride (latent px; overlap only)",
            choices=["auto", 4, 8, 16, 32],
            value=defaults.stride,
            allow_custom_value=True,
            elem_id=elem_id("stride"),
        )
        view_batch_size = gr.Slider(
            label="View batch size",
            minimum=1,
            maximum=MAX_VIEW_BATCH,
            step=1,
            value=defaults.view_batch_size,
            elem_id=elem_id("view_batch_size"),
        )
        circular = gr.Checkbox(label="360° wrap (seam-free panorama)", value=defaults.circular, elem_id=elem_id("circular"))

    table.change(fn=_json_from_table, inputs=[table, regions], outputs=[regions])
    regions.change(fn=_table_from_json, inputs=[regions, table], outputs=[table])
    add_mask.click(fn=_add_mask, inputs=[mask_image, mask_prompt, regions], outputs=[regions, mask_status])
    return {
        "regions": regions,
        "bootstrapping": bootstrapping,
        "window": window,
        "stride": stride,
        "view_batch_size": view_batch_size,
        "circular": circular,
        "windows": windows,
    }


def _json_from_table(rows: Any, current: str) -> Any:
    text = region_table.json_from_table(_rows(rows), current)
    return gr.update() if text == current else text


def _table_from_json(text: str, rows: Any) -> Any:
    """JSON edited (canvas, paste, infotext): refresh the table unless it already says the same."""
    if region_table.json_from_table(_rows(rows), text) == region_table.dump_regions(region_table.load_regions(text)):
        return gr.update()
    return gr.update(value=region_table.table_from_json(text))


def _rows(rows: Any) -> list[list[Any]]:
    """Gradio's array value; an empty table arrives as one row of blanks."""
    return [list(row) for row in rows or []]


def _add_mask(image: Any, prompt: str, current: str) -> tuple[Any, str]:
    if image is None:
        return gr.update(), "Upload a mask image first."
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PNG")
    try:
        mask = canonical(base64.b64encode(buffer.getvalue()).decode("ascii"))
    except MaskError as error:
        return gr.update(), f"Mask not added: {error}."
    return region_table.add_mask(
        current, mask, prompt or ""
    ), f"Mask region added ({image.width}x{image.height}; the image must have this size)."


def _unload() -> str:
    """The unload button: free the cached fusion checkpoint (it loads again on the next fusion)."""
    return "Fusion model unloaded." if host.unload() else "No fusion model was loaded."


def _paster(field: str):
    return lambda params: paste_value(params, field)


def _selection_from_friendly(v1: float, kg: float, ke: float, current: str) -> Any:
    """Slider or number moved: rewrite the text unless it already says the same."""
    try:
        text = format_fusion_selection(float(v1), float(kg), float(ke))
        parse_fusion_selection(text)  # an out-of-range number leaves the text as it is
    except (TypeError, ValueError):
        return gr.update()
    return gr.update() if text == current else text


def _friendly_from_selection(text: str, v1: float, kg: float, ke: float) -> Any:
    """Text edited: move the slider and numbers when the text is valid and says something new."""
    try:
        values = parse_fusion_selection(text)
    except ValueError:
        return gr.update(), gr.update(), gr.update()
    if values == (float(v1), float(kg), float(ke)):
        return gr.update(), gr.update(), gr.update()
    return tuple(gr.update(value=value) for value in values)

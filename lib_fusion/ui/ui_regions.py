"""The accordion's Regions part: the canvas, the table and the mask upload over the
``regions`` JSON (what the API and the infotext carry), and the window options."""

from __future__ import annotations

import base64
import io
from typing import Any

import gradio as gr

from lib_fusion.arguments.args import FusionArgs
from lib_fusion.arguments.masks import MaskError, canonical
from lib_fusion.ui import region_table
from lib_fusion.ui.controls import control
from lib_fusion.ui.ui_models import rows_of
from lib_fusion.ui.ui_text import HINTS


def region_controls(defaults: FusionArgs, elem_id: Any, offered: list[str]) -> dict[str, Any]:
    """The region editor (canvas, table, mask upload) around one JSON value, the panorama
    settings and the background's checkpoint (``offered``: the fusion dropdown's choices).
    ``javascript/model_fusion.js`` draws the canvas and writes the JSON."""
    gr.HTML(
        f'<div id="{elem_id("canvas")}" class="model-fusion-canvas"></div>'
        "<p class='model-fusion-help'>Drag on the canvas to add a box, drag a box to move it, its corner to resize; "
        "Delete removes the selected box. The main prompt is the background (active checkpoint).</p>"
    )
    table = gr.Dataframe(
        value=region_table.table_value([]),
        elem_classes=["model-fusion-table"],
        headers=region_table.HEADERS,
        datatype=region_table.DATATYPES,
        col_count=(len(region_table.HEADERS), "fixed"),
        row_count=(1, "dynamic"),
        type="array",
        interactive=True,
        label="Regions (x y w h: fractions of the image · model: active, fusion or any checkpoint)",
        elem_id=elem_id("table"),
        tooltip=HINTS["table"],
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
        regions = control("regions", "[]", elem_id)
    with gr.Row():
        windows = control("windows", defaults.windows, elem_id)
        stride = control("stride", str(defaults.stride), elem_id)
        window = control("window", defaults.window, elem_id)
    with gr.Row():
        bootstrapping = control("bootstrapping", defaults.bootstrapping, elem_id)
        view_batch_size = control("view_batch_size", defaults.view_batch_size, elem_id)
        circular = control("circular", defaults.circular, elem_id)

    # A list like every other checkpoint choice; a pasted name outside it (a hash, a file not
    # listed yet) is kept as written, and the generation resolves or refuses it.
    background = control("background", defaults.background, elem_id, choices=background_choices(offered))
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
        "background": background,
    }


def background_choices(offered: list[str]) -> list[str]:
    """The background's choices: the two roles, then the checkpoints the fusion dropdown offers."""
    return ["active", "fusion", *offered]


def _json_from_table(rows: Any, current: str) -> Any:
    text = region_table.json_from_table(rows_of(rows), current)
    return gr.update() if text == current else text


def _table_from_json(text: str, rows: Any) -> Any:
    """JSON edited (canvas, paste, infotext): refresh the table unless it already says the same."""
    if region_table.json_from_table(rows_of(rows), text) == region_table.dump_list(region_table.load_list(text)):
        return gr.update()
    # With its headers (a bare list of rows would rename the columns 0, 1, 2 ...) and a row.
    return gr.update(value=region_table.table_value(region_table.table_from_json(text)))


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

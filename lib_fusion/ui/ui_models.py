"""The accordion's list of SNB's further fusion checkpoints: a compact table (a row a
checkpoint: its prompts, k and window) over the ``models`` JSON that the API and the
infotext carry, each editing the other."""

from __future__ import annotations

from typing import Any, Callable

import gradio as gr

from lib_fusion.arguments.args import FusionArgs, models_json
from lib_fusion.ui import model_table
from lib_fusion.ui.controls import control
from lib_fusion.ui.ui_text import HINTS


def models_controls(defaults: FusionArgs, elem_id: Callable[[str], str]) -> Any:
    """The table and, in a closed accordion, the JSON field itself (returned: the field)."""
    table = gr.Dataframe(
        value=model_table.table_value(model_table.table_from_json(models_json(defaults.models))),
        headers=model_table.HEADERS,
        datatype=model_table.DATATYPES,
        col_count=(len(model_table.HEADERS), "fixed"),
        row_count=(1, "dynamic"),
        type="array",
        interactive=True,
        label="More fusion checkpoints (SNB: a row each; k empty = ke; from/to: the part of the denoising it joins, 0-1)",
        elem_classes=["model-fusion-models"],
        elem_id=elem_id("models_table"),
        tooltip=HINTS["models"],
    )
    with gr.Accordion("More checkpoints as JSON (what the API and infotext use)", open=False):
        models = control("models", models_json(defaults.models), elem_id)
    table.change(fn=_json_from_table, inputs=[table, models], outputs=[models])
    models.change(fn=_table_from_json, inputs=[models, table], outputs=[table])
    return models


def _json_from_table(rows: Any, current: str) -> Any:
    text = model_table.json_from_table(rows_of(rows))
    return gr.update() if text == model_table.dump_list(model_table.load_list(current)) else text


def _table_from_json(text: str, rows: Any) -> Any:
    """JSON edited (a paste, an X/Y/Z cell): refresh the table unless it already says the same."""
    if model_table.json_from_table(rows_of(rows)) == model_table.dump_list(model_table.load_list(text)):
        return gr.update()
    return gr.update(value=model_table.table_value(model_table.table_from_json(text)))


def rows_of(rows: Any) -> list[list[Any]]:
    """Gradio's array value of a table (an empty table arrives as one row of blanks)."""
    return [list(row) for row in rows or []]

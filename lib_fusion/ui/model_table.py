"""SNB's further fusion checkpoints as an editable table, kept in step with the ``models``
JSON (what the API and the infotext carry): one row a checkpoint, blank rows ignored, a
row's unreadable cells passed on for the validator to name."""

from __future__ import annotations

from typing import Any

from lib_fusion.ui.region_table import blank, dump_list, load_list, number

HEADERS = ["checkpoint", "prompt", "negative prompt", "k", "from", "to"]
DATATYPES = ["str", "str", "str", "number", "number", "number"]


def table_from_json(text: str) -> list[list[Any]]:
    rows = []
    for entry in load_list(text):
        window = entry.get("window")
        start, end = window if isinstance(window, list) and len(window) == 2 else ("", "")
        k = entry.get("k")
        rows.append([entry.get("model", ""), entry.get("prompt", ""), entry.get("negative_prompt", ""), "" if k is None else k, start, end])
    return rows


def json_from_table(rows: list[list[Any]]) -> str:
    """JSON for the table's rows; a row without a checkpoint is left out."""
    models = []
    for row in rows or []:
        model, prompt, negative, k, start, end = (list(row) + [""] * len(HEADERS))[: len(HEADERS)]
        if blank(model):
            continue
        entry: dict[str, Any] = {"model": str(model).strip()}
        if not blank(prompt):
            entry["prompt"] = str(prompt)
        if not blank(negative):
            entry["negative_prompt"] = str(negative)
        if not blank(k):
            entry["k"] = number(k)
        if not (blank(start) and blank(end)):
            entry["window"] = [0.0 if blank(start) else number(start), 1.0 if blank(end) else number(end)]
        models.append(entry)
    return dump_list(models)


def table_value(rows: list[list[Any]]) -> dict[str, Any]:
    """The table's value with its headers and at least one (blank) row (gradio 4 on Forge
    takes the page down over a table with none)."""
    return {"headers": HEADERS, "data": rows or [[""] * len(HEADERS)]}

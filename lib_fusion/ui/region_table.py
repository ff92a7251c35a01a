"""The region list as an editable table, kept in step with the one JSON value.

The JSON text (what the API, the infotext and the canvas editor use) is the truth; the
table is a view of it a user can type into. Mask regions keep their PNG in the JSON: the
table shows them as ``mask N`` rows without coordinates (N counts the masks), so rows can
be reordered or deleted and each prompt stays with its mask.
"""

from __future__ import annotations

import json
import math
from typing import Any

HEADERS = ["kind", "x", "y", "w", "h", "prompt", "negative prompt", "model", "weight"]
DATATYPES = ["str", "number", "number", "number", "number", "str", "str", "str", "number"]


def load_list(text: str) -> list[dict[str, Any]]:
    """The JSON's dicts (regions, or the further fusion checkpoints); text that is not a JSON
    list reads as none."""
    try:
        value = json.loads(text or "[]")
    except json.JSONDecodeError:
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def dump_list(regions: list[dict[str, Any]]) -> str:
    return json.dumps(regions, separators=(",", ":"))


def table_from_json(text: str) -> list[list[Any]]:
    rows = []
    masks = 0
    for region in load_list(text):
        box = region.get("box")
        coordinates = list(box) if isinstance(box, list) and len(box) == 4 else ["", "", "", ""]
        kind = "box"
        if "mask" in region:
            masks += 1
            kind = f"mask {masks}"
        rows.append(
            [
                kind,
                *coordinates,
                region.get("prompt", ""),
                region.get("negative_prompt", ""),
                region.get("model", "fusion"),
                region.get("weight", 1.0),
            ]
        )
    return rows


def json_from_table(rows: list[list[Any]], current: str) -> str:
    """JSON for the table's rows; blank rows are dropped, masks come from ``current``."""
    masks = [region["mask"] for region in load_list(current) if "mask" in region]
    regions = []
    for row in rows or []:
        cells = (list(row) + [""] * len(HEADERS))[: len(HEADERS)]
        kind, x, y, w, h, prompt, negative, model, weight = cells
        if all(blank(cell) for cell in cells):
            continue
        region: dict[str, Any] = {}
        if str(kind).strip().startswith("mask"):
            ordinal = str(kind).strip()[4:].strip()
            if not ordinal.isdigit() or not 1 <= int(ordinal) <= len(masks):
                continue  # a mask row typed by hand has no mask to show: upload one instead
            region["mask"] = masks[int(ordinal) - 1]
        else:
            region["box"] = [number(v) for v in (x, y, w, h)]
        if not blank(prompt):
            region["prompt"] = str(prompt)
        if not blank(negative):
            region["negative_prompt"] = str(negative)
        if not blank(model) and str(model).strip() != "fusion":
            region["model"] = str(model).strip()
        if not blank(weight) and number(weight) != 1.0:
            region["weight"] = number(weight)
        regions.append(region)
    return dump_list(regions)


def add_mask(current: str, mask_base64: str, prompt: str = "") -> str:
    regions = load_list(current)
    region: dict[str, Any] = {"mask": mask_base64}
    if prompt:
        region["prompt"] = prompt
    regions.append(region)
    return dump_list(regions)


def table_value(rows: list[list[Any]]) -> dict[str, Any]:
    """The table's value with its headers, and at least one (blank) row: gradio 4's table
    (Forge) fails to draw, and takes the whole page down with it, when it has no row."""
    return {"headers": HEADERS, "data": rows or [[""] * len(HEADERS)]}


def blank(value: Any) -> bool:
    """An empty cell: nothing, blank text, or the NaN a number column turns blank text into."""
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and math.isnan(value))


def number(value: Any) -> Any:
    """A typed number where the cell holds one; anything else is passed on for validation to name."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return value

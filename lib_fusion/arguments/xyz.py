"""X/Y/Z plot axes for the fusion parameters (the WebUI's ``scripts/xyz_grid.py``).

The plot copies ``p`` per cell and calls each axis's ``apply(p, x, xs)``; the script's own
arguments are the same for every cell, so an axis records its value on the copy and
:func:`with_overrides` lays the values over the script's arguments in ``process``.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from lib_fusion.arguments.args import FIELDS, TITLE, FusionArgumentError, choices_of
from lib_fusion.arguments.fields import TABLE, Bound
from lib_fusion.arguments.schedule import format_fusion_selection, parse_fusion_selection

OVERRIDES = "model_fusion_overrides"
"""Attribute of the processing object holding this cell's values, by field name."""
SELECTION_PARTS = ("v1", "kg", "ke")


Axis = tuple[str, Callable[[str], Any], str, Callable[[], list[str]] | None]
"""(label, value type, field or part of a field, choices)."""

PART_AXES: dict[str, list[Axis]] = {
    "model": [  # SNB's further fusion checkpoints, beside the first: the list's entries' checkpoints
        ("[Fusion] Checkpoint 2", str, "models.0", None),
        ("[Fusion] Checkpoint 3", str, "models.1", None),
    ],
    "fusion_selection": [
        ("[Fusion] v1 (timestep)", float, "v1", None),
        ("[Fusion] kg", float, "kg", None),
        ("[Fusion] ke", float, "ke", None),
    ],
}
"""Axes over a part of a field, placed after the field's own axis (if any)."""


def _value_type(bound: Bound | None) -> Callable[[str], Any]:
    """How an axis reads a cell's text: as the bound's numbers (and its words, ``auto``)."""
    if bound is None:
        return str
    number = int if bound.integer else float
    words = [word for word in bound.also if isinstance(word, str)]
    if not words:
        return number

    def number_or_word(value: str) -> Any:
        text = str(value).strip()
        return text.lower() if text.lower() in words else number(text)

    return number_or_word


def _choices(name: str) -> Callable[[], list[str]] | None:
    """A field of fixed choices offers them (:func:`~lib_fusion.arguments.args.choices_of`)."""
    choices = choices_of(name)
    return (lambda: list(choices)) if choices else None


AXES: list[Axis] = [
    axis
    for name in FIELDS
    for axis in ([(TABLE[name].axis, _value_type(TABLE[name].bound), name, _choices(name))] if TABLE[name].axis else [])
    + PART_AXES.get(name, [])
]
"""Every X/Y/Z axis, in the fields' order: each field's own (the table's ``axis``), then its parts'."""


def register(xyz_grid: Any, checkpoint_titles: Callable[[], list[str]]) -> None:
    """Append the axes to the plot's ``axis_options`` (once; the UI may be built again)."""
    if xyz_grid is None or any(option.label.startswith("[Fusion]") for option in xyz_grid.axis_options):
        return
    for label, kind, key, choices in AXES:
        choices = checkpoint_titles if key == "model" or key.startswith("models.") else choices
        xyz_grid.axis_options.append(xyz_grid.AxisOption(label, kind, _setter(key), choices=choices))


def _setter(key: str) -> Callable[[Any, Any, Any], None]:
    def apply(p: Any, value: Any, values: Any) -> None:
        setattr(p, OVERRIDES, {**getattr(p, OVERRIDES, {}), key: value})  # a new dict: the cells share the copied p's

    return apply


def with_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The script's argument fields (not yet validated) with this cell's values laid over
    them. Plotting a fusion parameter turns fusion on, unless the plot sets ``enabled`` itself."""
    if not overrides:
        return data
    data = {**data, **{key: value for key, value in overrides.items() if key in FIELDS}}
    if any(part in overrides for part in SELECTION_PARTS):
        try:
            parts = dict(zip(SELECTION_PARTS, parse_fusion_selection(data.get("fusion_selection", "600,1,1"))))
        except ValueError as error:
            raise FusionArgumentError(f"{TITLE}: invalid argument: fusion_selection: {error}") from None
        parts.update({part: float(overrides[part]) for part in SELECTION_PARTS if part in overrides})
        data["fusion_selection"] = format_fusion_selection(*parts.values())
    entries = {int(key.split(".")[1]): value for key, value in overrides.items() if key.startswith("models.")}
    if entries:
        data["models"] = _with_entries(data.get("models"), entries)
    if "enabled" not in overrides:
        data["enabled"] = True
    return data


def _with_entries(models: Any, entries: dict[int, str]) -> list[Any]:
    """The ``models`` list (a list, or the UI's JSON text) with the n-th entry's checkpoint
    set; a list too short grows by entries of that checkpoint alone, in order."""
    current = json.loads(models) if isinstance(models, str) and models.strip() else list(models or [])
    if not isinstance(current, list):
        raise FusionArgumentError(f"{TITLE}: invalid argument: models: a list of checkpoints for the Checkpoint 2/3 axes")
    for index, checkpoint in sorted(entries.items()):
        if index > len(current):
            raise FusionArgumentError(f"{TITLE}: the Checkpoint {index + 2} axis needs a Checkpoint {index + 1} (axis or models entry)")
        known = current[index] if index < len(current) and isinstance(current[index], dict) else {}
        current[index : index + 1] = [{**known, "model": checkpoint}]
    return current

"""The field table is the one place a field is declared: every bound's edges get the same
verdict from the validator, the JSON schema (what the schema route serves), the UI's values,
the infotext's paste and the X/Y/Z axis; and every field has its row."""

import json
import math

import jsonschema
import pytest

from lib_fusion.arguments import fields, infotext, xyz
from lib_fusion.arguments.args import FIELDS, FusionArgs, FusionArgumentError, choices_of, script_data
from lib_fusion.arguments.fields import BOUNDS, TABLE, USED_BY

SCHEMA = FusionArgs.schema()


def reader(field: str) -> str:
    """A method that reads the field (so that a generation validates it)."""
    return next(method for method in fields.METHOD_NAMES if field in USED_BY[method])


def edges(bound: fields.Bound) -> list:
    """Each end of the range, its nearest neighbours outside and inside, the single values
    allowed beside it, and (for whole numbers) a value between two of them."""
    if bound.integer:
        values = [bound.low - 1, bound.low, bound.low + 1, bound.high - 1, bound.high, bound.high + 1, bound.low + 0.5]
        values = [int(v) if float(v).is_integer() else v for v in values]
    else:
        values = [math.nextafter(bound.low, -math.inf), bound.low, bound.high, math.nextafter(bound.high, math.inf)]
        values.append(math.nextafter(bound.high, -math.inf))
    return [*values, *bound.also]


def verdict_of_validator(field, value) -> bool:
    try:
        FusionArgs.parse({"enabled": True, "model": "expert", "method": reader(field), field: value})
        return True
    except FusionArgumentError:
        return False


def verdict_of_schema(field, value) -> bool:
    try:
        jsonschema.validate({field: value}, SCHEMA)
        return True
    except jsonschema.ValidationError:
        return False


def expected(bound: fields.Bound, value) -> bool:
    if isinstance(value, str) or value in bound.also:
        return value in bound.also and type(value) is type(next(v for v in bound.also if v == value))
    if bound.integer and not float(value).is_integer():
        return False
    return bound.low <= value < bound.high if bound.high_open else bound.low <= value <= bound.high


def test_every_field_has_one_row_and_its_derived_tables_agree():
    assert set(TABLE) == set(FIELDS)
    assert set(fields.INFOTEXT_KEYS) == {name for name in FIELDS if name not in ("enabled", *fields.OUTPUT_FIELDS)}
    assert len(set(fields.INFOTEXT_KEYS.values())) == len(fields.INFOTEXT_KEYS)
    assert all(TABLE[name].hint for name in FIELDS)
    read_by_some = {name for name, methods in fields.READ_BY.items() if methods}
    assert read_by_some | set(fields.EVERY_GENERATION) == set(FIELDS) and not read_by_some & set(fields.EVERY_GENERATION)
    assert {axis[2] for axis in xyz.AXES if axis[2] in FIELDS} == {name for name, spec in TABLE.items() if spec.axis}
    for name in ("method", "solo", "mask", "blur", "windows", "text_encoder", "saliency_uncond"):
        assert choices_of(name) == [str(choice) for choice in SCHEMA["properties"][name]["enum"]], name
    assert choices_of("mode") == ["0", "1", "2"]


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_the_validator_and_the_schema_agree_on_every_edge_of_the_bound(field):
    bound = BOUNDS[field]
    for value in edges(bound):
        promised = expected(bound, value)
        assert verdict_of_validator(field, value) == promised, (field, value, "validator")
        assert verdict_of_schema(field, value) == promised, (field, value, "schema")


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_the_ui_the_paste_and_the_axis_read_the_edges_as_the_validator_does(field):
    """The UI sends numbers as floats and the infotext and an axis cell as text: each of them
    turns the value into the field's type and meets the same bound."""
    bound = BOUNDS[field]
    axis = next((axis for axis in xyz.AXES if axis[2] == field), None)
    for value in edges(bound):
        promised = expected(bound, value)
        ui_value = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
        ui_data = script_data([ui_value if name == field else default for name, default in zip(FIELDS, FusionArgs().to_ui())])
        ui_data.update(enabled=True, model="expert", method=reader(field))
        try:
            FusionArgs.for_generation(ui_data)
            assert promised, (field, value, "ui accepted")
        except FusionArgumentError:
            assert not promised, (field, value, "ui refused")
        params = {"Fusion": reader(field), "Fusion model": "expert", fields.INFOTEXT_KEYS[field]: str(value)}
        pasted = getattr(infotext.from_infotext(params), field)  # an unreadable value is left out: the default
        assert pasted == (value if promised else getattr(FusionArgs(), field)), (field, value, "paste")
        if axis is not None:
            _, kind, key, _ = axis
            try:
                cell = kind(str(value))
            except ValueError:
                assert not promised, (field, value, "axis refused a valid value")
                continue
            data = xyz.with_overrides({"model": "expert", "method": reader(field)}, {key: cell})
            try:
                FusionArgs.for_generation(data)
                assert promised, (field, value, "axis accepted")
            except FusionArgumentError:
                assert not promised, (field, value, "axis refused")


ENTRY_OF = {
    "regions.weight": lambda value: {"method": "regions", "regions": [{"box": [0, 0, 0.5, 1], "weight": value}]},
    "models.k": lambda value: {"method": "snb", "models": [{"model": "artist", "k": value}]},
}
"""Arguments holding one list entry with ``value`` at that entry's bounded field."""


@pytest.mark.parametrize("entry", sorted(fields.ENTRY_BOUNDS))
def test_an_entrys_bound_gets_the_same_verdict_from_the_validator_the_schema_and_the_paste(entry):
    """A region's weight and a further fusion checkpoint's k: declared once in the table too."""
    bound = fields.ENTRY_BOUNDS[entry]
    field, name = entry.split(".")
    for value in edges(bound):
        promised = expected(bound, value)
        data = {"enabled": True, "model": "expert", **ENTRY_OF[entry](value)}
        try:
            FusionArgs.parse(data)
            accepted = True
        except FusionArgumentError:
            accepted = False
        assert accepted == promised, (entry, value, "validator")
        assert verdict_of_schema(field, data[field]) == promised, (entry, value, "schema")
        params = {"Fusion": data["method"], "Fusion model": "expert", fields.INFOTEXT_KEYS[field]: json.dumps(data[field])}
        pasted = getattr(infotext.from_infotext(params), field)
        assert (len(pasted) == 1 and getattr(pasted[0], name) == value) == promised, (entry, value, "paste")


def test_every_field_has_a_control_whose_range_and_choices_agree_with_its_row():
    """A field's control is declared in its row: a slider's range lies inside the field's
    bound, and a radio's choices are the schema's (a dropdown of checkpoints gets its list
    from the accordion)."""
    for name, spec in TABLE.items():
        widget = spec.widget
        assert widget is not None and widget.label, name
        if widget.kind == "Slider" and spec.bound is not None:
            assert spec.bound.holds(widget.options["minimum"]) and spec.bound.holds(widget.options["maximum"]), name
        if widget.kind == "Radio" and spec.bound is not None:  # a whole number from a short range (mode)
            assert choices_of(name) == [str(n) for n in range(int(spec.bound.low), int(spec.bound.high) + 1)], name
        elif widget.kind == "Radio":
            assert choices_of(name) == [str(choice) for choice in SCHEMA["properties"][name]["enum"]], name


def test_the_accordion_builds_each_control_from_its_row(monkeypatch):
    """:func:`lib_fusion.ui.controls.control` through a stand-in gradio that records what each
    component was given: the row's label, keywords and hint, the field's choices and default."""
    import importlib
    import sys
    import types

    made = []

    def component(kind):
        def make(**keywords):
            made.append((kind, keywords))
            return keywords

        return make

    fake_gradio = types.SimpleNamespace(
        **{kind: component(kind) for kind in ("Checkbox", "Radio", "Dropdown", "Textbox", "Slider", "Number")}
    )
    monkeypatch.setitem(sys.modules, "gradio", fake_gradio)
    monkeypatch.delitem(sys.modules, "lib_fusion.ui.controls", raising=False)
    controls = importlib.import_module("lib_fusion.ui.controls")
    from lib_fusion.arguments.args import FusionArgs
    from lib_fusion.ui.ui_text import HINTS

    defaults = FusionArgs()
    for name, spec in TABLE.items():
        layout = {"choices": ["a.safetensors"]} if name in ("model", "background") else {}
        keywords = controls.control(name, getattr(defaults, name), lambda field: f"fusion_{field}", **layout)
        assert made[-1][0] == spec.widget.kind
        assert keywords["label"] == spec.widget.label and keywords["tooltip"] == HINTS[name] and keywords["elem_id"] == f"fusion_{name}"
        assert {key: keywords[key] for key in spec.widget.options if key not in layout} == dict(spec.widget.options)
        if spec.widget.kind == "Radio":
            assert keywords["choices"] == choices_of(name) and keywords["value"] == str(getattr(defaults, name))
    monkeypatch.delitem(sys.modules, "lib_fusion.ui.controls")

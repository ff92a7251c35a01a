"""The extension's HTTP routes: schema, version, models, unload."""

import json
import re
from pathlib import Path

import jsonschema
import pytest
from modules import sd_models

from lib_fusion import __version__

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def route(webui, method, path):
    return webui.app().routes[(method, f"/model-fusion/v1/{path}")]


def test_every_route_is_registered(webui):
    assert set(webui.app().routes) == {
        ("GET", "/model-fusion/v1/schema"),
        ("GET", "/model-fusion/v1/version"),
        ("GET", "/model-fusion/v1/models"),
        ("POST", "/model-fusion/v1/unload"),
    }


def test_the_schema_validates_every_readme_example(webui):
    schema = json.loads(json.dumps(route(webui, "GET", "schema")()))  # what the client receives
    jsonschema.Draft7Validator.check_schema(schema)
    bodies = re.findall(r"-d '(\{.*?\})'\n", README, flags=re.S)
    examples = [json.loads(body)["alwayson_scripts"]["model fusion"]["args"][0] for body in bodies]
    assert len(examples) >= 2
    for example in examples:
        jsonschema.validate(example, schema)


@pytest.mark.parametrize(
    "bad",
    [
        {"enabled": True, "kg": 2},
        {"mode": 3},
        {"solo": "both"},
        {"fusion_selection": "600,1"},
        {"view_batch_size": 65},
        {"bootstrapping": 1.5},
        {"regions": [{"box": [0, 0, 1]}]},
        {"regions": [{"box": [0, 0, 1, 1], "weight": 0}]},
        {"regions": [{"box": [0, 0, 1, 1], "colour": "red"}]},
    ],
)
def test_the_schema_rejects_what_the_extension_rejects(webui, bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, route(webui, "GET", "schema")())


def test_version(webui):
    assert route(webui, "GET", "version")() == {"version": __version__, "api": "v1"}


def test_models_says_which_checkpoints_can_fuse_with_the_active_one(webui):
    (webui.models / "broken.safetensors").write_bytes(b"\x10\x00\x00junk")
    (webui.models / "legacy.ckpt").write_bytes(b"not read by the listing")
    sd_models.list_models()
    report = {entry["name"]: entry for entry in route(webui, "GET", "models")()["checkpoints"]}
    assert set(report) == {"general", "expert", "artist", "wide", "other-sdxl", "expert-v", "broken", "legacy"}
    assert report["general"]["usable"] and "active checkpoint" in report["general"]["reason"]
    assert report["expert"]["usable"] and report["artist"]["usable"] and report["expert"]["reason"] is None
    assert report["expert-v"]["usable"]  # another prediction type of the family: fused like any other
    assert report["wide"]["usable"] is False and "input.bias is (24,)" in report["wide"]["reason"]
    assert report["other-sdxl"]["usable"] is False and "unknown" in report["other-sdxl"]["reason"]
    assert report["broken"]["usable"] is False and report["broken"]["reason"].startswith("unreadable")
    assert report["legacy"]["usable"] is None
    assert report["expert"]["title"] == webui.title("expert")


def test_models_reports_the_loaded_fusion_checkpoint_and_its_load_time(webui):
    models = route(webui, "GET", "models")
    assert models()["loaded"] is None
    webui.generate({"enabled": True, "model": "expert", "text_encoder": "own"}, steps=1)
    loaded = models()["loaded"]
    assert loaded["title"] == webui.title("expert") and loaded["parts"] == ["unet", "text_encoder"]
    assert loaded["load_seconds"] > 0
    route(webui, "POST", "unload")()
    assert models()["loaded"] is None


@pytest.mark.parametrize(
    "field, values",
    [
        ("window", [-1, 0, 1, 7, 8, 9, 1024, 1025]),
        ("mode", [-1, 0, 2, 3]),
        ("view_batch_size", [0, 1, 64, 65]),
        ("stride", [0, 1, 1024, 1025, "auto", "fast"]),
        ("mask_freeze", [-1, 0, 10000, 10001]),
    ],
)
def test_the_schema_and_the_validator_agree_on_the_edges_of_every_integer_bound(webui, field, values):
    """The schema route promises to refuse exactly what a generation refuses."""
    from lib_fusion.arguments.args import FusionArgs

    schema = route(webui, "GET", "schema")()
    for value in values:
        fields = {"enabled": True, "model": "expert", "method": "regions" if field in ("window", "stride", "view_batch_size") else "snb"}
        fields[field] = value
        try:
            FusionArgs.parse(fields)
            accepted = True
        except ValueError:
            accepted = False
        try:
            jsonschema.validate({field: value}, schema)
            valid = True
        except jsonschema.ValidationError:
            valid = False
        assert valid == accepted, (field, value, "schema", valid, "validator", accepted)

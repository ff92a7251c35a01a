import pytest

from lib_fusion.arguments.args import FIELDS, FusionArgs, FusionArgumentError
from lib_fusion.arguments.infotext import from_infotext, paste_value, to_infotext


def test_defaults_reproduce_the_official_code():
    args = FusionArgs()
    assert not args.enabled
    assert (args.solo, args.saliency_uncond, args.text_encoder, args.blur, args.mask) == ("active", "solo", "solo", "box", "hard")
    assert args.selection == (600.0, 1.0, 1.0) and args.mode == 2


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"enabled": True}, "model: choose a fusion checkpoint"),
        ({"enabled": "yes", "model": "m"}, "enabled: 'yes'"),
        ({"model": 3}, "model: 3"),
        ({"mode": 3}, "mode: 3: must be 0"),
        ({"mode": "2"}, "mode: '2'"),
        ({"solo": "both"}, "solo: 'both'"),
        ({"fusion_selection": "600"}, "three comma-separated"),
        ({"fusion_selection": "600,-1,1"}, "kg=-1"),
        ({"kg": 1}, "kg: unknown field; valid fields: enabled"),
        ({"blur": "median"}, "blur: 'median'"),
        ({"method": "regions!"}, "method: 'regions!'"),
    ],
)
def test_bad_api_fields_are_named(data, fragment):
    with pytest.raises(FusionArgumentError) as error:
        FusionArgs.parse(data)
    assert fragment in str(error.value)
    assert str(error.value).startswith("Model Fusion: invalid argument")


REGIONS_JSON = '[{"box":[0.0,0.0,0.5,1.0],"prompt":"a cat"},{"box":[0.5,0.0,0.5,1.0],"model":"active","weight":2.0}]'


def test_positional_ui_values_and_api_dict_agree():
    snb = [True, "expert", "snb", "a cartoon lion", "", "fusion", "850,1,1.5", "1", "own", "own", "gaussian", "soft"]
    more = [2.5, 0.5, 3.0, True, "shifted"]  # guidance weight, mask EMA, mask freeze, per channel, windows
    values = [*snb, REGIONS_JSON, 0.25, 16.0, "4", 2.0, True, True, True, *more]  # gradio sliders give floats, a dropdown text
    positional = FusionArgs.from_script_args(values)
    named = FusionArgs.from_script_args([dict(zip(FIELDS, values), mode=1, window=16, stride=4, view_batch_size=2, mask_freeze=3)])
    assert positional == named
    assert positional.to_ui() == [*snb, REGIONS_JSON, 0.25, 16, "4", 2, True, True, True, 2.5, 0.5, 3, True, "shifted", "[]", "active"]
    assert FusionArgs.from_script_args([*values[:15], "auto", *values[16:]]).stride == "auto"
    # A client written before shifted windows still sends the first twenty-four values.
    assert FusionArgs.from_script_args(values[:24]) == positional.copy(update={"windows": "overlap"})
    positional = positional.copy(update={"windows": "overlap"})
    extra = {"guidance_weight": 1.5, "mask_ema": 0.0, "mask_freeze": 0, "per_channel": False}
    # A client written before the two-model options still sends the first twenty values.
    assert FusionArgs.from_script_args(values[:20]) == positional.copy(update=extra)
    positional = positional.copy(update=extra)
    # A client written before the Regions fields still sends the first twelve values.
    regions = {"regions": [], "bootstrapping": 0.4, "window": 0, "stride": 8, "view_batch_size": 4, "circular": False}
    assert FusionArgs.from_script_args(snb) == positional.copy(update={**regions, "compare": False, "preview": False})
    # ... and one written before the output options, the first eighteen.
    assert FusionArgs.from_script_args(values[:18]) == positional.copy(update={"compare": False, "preview": False})


@pytest.mark.parametrize(
    "regions, fragment",
    [
        ([{"box": [0, 0, 1.5, 1]}], "regions[0].box: [0, 0, 1.5, 1]: outside the canvas"),
        ([{"box": [0.1, 0.1, 0.5]}], "regions[0].box: [0.1, 0.1, 0.5]: give 4 numbers"),
        ([{"box": [0, 0, 1, 1]}, {"box": [0.5, 0.5, 0, 0.2]}], "regions[1].box: [0.5, 0.5, 0, 0.2]: width and height must be above 0"),
        ([{"box": [0, 0, "1", 1]}], "regions[0].box: [0, 0, '1', 1]: '1' is not a number"),
        ([{"box": [0, 0, float("nan"), 1]}], "is not a finite number"),
        ([{"prompt": "cat"}], "regions[0]: give exactly one of box"),
        ([{"box": [0, 0, 1, 1], "weight": 0}], "regions[0].weight: 0: must be from 1e-06 to 100"),
        ([{"box": [0, 0, 1, 1], "weight": True}], "regions[0].weight: True is not a number"),
        ([{"box": [0, 0, 1, 1], "model": " "}], "regions[0].model"),
        ([{"box": [0, 0, 1, 1], "colour": "red"}], "regions[0].colour: unknown field; valid fields: box, mask"),
        ([{"mask": "R0lGODlh"}], "regions[0].mask: not a PNG"),
        ("[{", "regions: '[{': not valid JSON"),
        ([{"box": [0, 0, 1, 1]}] * 17, "17 regions; at most 16"),
    ],
)
def test_bad_regions_are_named(regions, fragment):
    with pytest.raises(FusionArgumentError) as error:
        FusionArgs.parse({"method": "regions", "regions": regions})
    assert fragment in str(error.value)


def test_regions_need_a_fusion_checkpoint_only_when_a_region_uses_it():
    active_only = {"enabled": True, "method": "regions", "regions": [{"box": [0, 0, 1, 1], "model": "active"}]}
    assert not FusionArgs.parse(active_only).needs_fusion_checkpoint
    with pytest.raises(FusionArgumentError, match="model: choose a fusion checkpoint"):
        FusionArgs.parse({**active_only, "regions": [{"box": [0, 0, 1, 1]}]})
    assert FusionArgs.parse({**active_only, "regions": REGIONS_JSON, "model": "m"}).regions[1].weight == 2.0


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"bootstrapping": 1.5}, "bootstrapping: 1.5: must be a fraction"),
        ({"bootstrapping": "0.4"}, "bootstrapping: '0.4' is not a number"),
        ({"window": 4}, "window: 4: 0 (the model's native size) or 8 to 1024"),
        ({"window": 16, "stride": 32}, "stride: 32: from 1 to the window size (16"),
        ({"view_batch_size": 0}, "view_batch_size: 0: from 1 to 64"),
        ({"circular": "yes"}, "circular: 'yes'"),
    ],
)
def test_bad_panorama_fields_are_named(data, fragment):
    with pytest.raises(FusionArgumentError) as error:
        FusionArgs.parse({"method": "regions", **data})
    assert fragment in str(error.value)


def test_too_many_positional_values_and_non_dicts_are_rejected():
    with pytest.raises(FusionArgumentError, match="positional"):
        FusionArgs.from_script_args([False] * (len(FIELDS) + 1))
    with pytest.raises(FusionArgumentError, match="object with named fields"):
        FusionArgs.parse(["enabled"])


def test_infotext_round_trip_keeps_every_field():
    args = FusionArgs(
        enabled=True,
        model="expert",
        prompt="cartoon, lion",
        negative_prompt="photo",
        solo="fusion",
        fusion_selection="850,1,1.5",
        mode=1,
        saliency_uncond="own",
        text_encoder="own",
        blur="gaussian",
        mask="soft",
    )
    pairs = to_infotext(args, "expert.safetensors [0123456789]")
    assert pairs["Fusion model"] == "expert.safetensors [0123456789]"
    text_values = {key: str(value) for key, value in pairs.items()}  # what the infotext parser gives back
    restored = from_infotext(text_values)
    assert restored == args.copy(update={"model": "expert.safetensors [0123456789]"})


def test_regions_infotext_round_trip_and_leaves_out_snb_fields():
    args = FusionArgs.parse(
        {
            "enabled": True,
            "model": "expert",
            "method": "regions",
            "regions": REGIONS_JSON,
            "bootstrapping": 0.0,
            "window": 32,
            "stride": 16,
            "view_batch_size": 8,
            "circular": True,
            "text_encoder": "own",
        }
    )
    pairs = to_infotext(args, "expert [abc]")
    assert pairs["Fusion regions"] == REGIONS_JSON
    assert not {"Fusion solo", "Fusion selection", "Fusion mode"} & set(pairs)
    restored = from_infotext({key: str(value) for key, value in pairs.items()})
    assert restored == args.copy(update={"model": "expert [abc]"})
    active_only = args.copy(update={"regions": [args.regions[1]]})
    assert "Fusion model" not in to_infotext(active_only)


def test_infotext_skips_defaults_and_reads_missing_keys_as_defaults():
    pairs = to_infotext(FusionArgs(enabled=True, model="m"))
    assert set(pairs) == {"Fusion", "Fusion model", "Fusion solo", "Fusion selection", "Fusion mode"}
    assert from_infotext({}) == FusionArgs()
    assert to_infotext(FusionArgs()) == {}


def test_a_bad_infotext_value_is_skipped_and_the_rest_pasted(capsys):
    params = {"Fusion": "snb", "Fusion model": "m", "Fusion mode": "7", "Fusion selection": "500,1,2"}
    assert paste_value(params, "enabled") is True
    assert paste_value(params, "mode") == "2"  # the default, with a console line naming the key
    assert paste_value(params, "fusion_selection") == "500,1,2"
    assert "Fusion mode: '7' is not pasted" in capsys.readouterr().out


NESTED = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    "key, value",
    [
        ("Fusion mode", "1e999"),
        ("Fusion mode", "nan"),
        ("Fusion window", "inf"),
        ("Fusion stride", "-" + "9" * 5000),
        ("Fusion view batch", "1.5"),
        ("Fusion bootstrapping", "1e999"),
        ("Fusion circular", "maybe"),
        ("Fusion regions", NESTED),
        ("Fusion regions", '[{"box": [0, 0, 1, ' + "9" * 5000 + "]}]"),
        ("Fusion regions", '[{"box": [0, 0, 1, 1], "weight": 1e-300}]'),
        ("Fusion selection", "600," * 100_000),
        ("Fusion model", "x" * 1_000_000),
    ],
)
def test_pasting_never_raises_and_keeps_the_other_values(key, value):
    params = {"Fusion": "regions", "Fusion model": "m", "Fusion stride": "4", "Fusion window": "16", key: value}
    for field in FIELDS:
        paste_value(params, field)  # the WebUI calls each without a guard
    assert paste_value(params, "method") == "regions"
    if key not in ("Fusion window", "Fusion stride"):
        assert paste_value(params, "stride") == "4" and paste_value(params, "window") == 16  # the stride dropdown holds text


def test_a_paste_reads_the_infotext_once(monkeypatch):
    from lib_fusion.arguments import infotext

    calls = []
    original = infotext.from_infotext
    monkeypatch.setattr(infotext, "from_infotext", lambda params: calls.append(1) or original(params))
    params = {"Fusion": "snb", "Fusion model": "m"}
    assert [infotext.paste_value(params, field) for field in FIELDS][0] is True
    assert len(calls) == 1


def test_ui_defaults_with_an_empty_dropdown_parse_as_disabled():
    """The UI's initial values (and the API's defaults taken from them) have model=None."""
    values = FusionArgs().to_ui()
    values[FIELDS.index("model")] = None
    assert FusionArgs.from_script_args(values) == FusionArgs()

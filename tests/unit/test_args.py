import pytest

from lib_fusion.args import FIELDS, FusionArgs, FusionArgumentError
from lib_fusion.infotext import from_infotext, paste_value, to_infotext


def test_defaults_reproduce_the_official_code():
    args = FusionArgs()
    assert not args.enabled
    assert (args.solo, args.saliency_uncond, args.text_encoder, args.blur, args.mask) == ("active", "solo", "solo", "box", "hard")
    assert args.window == (600.0, 1.0, 1.0) and args.mode == 2


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


def test_positional_ui_values_and_api_dict_agree():
    values = [True, "expert", "snb", "a cartoon lion", "", "fusion", "850,1,1.5", "1", "own", "own", "gaussian", "soft"]
    positional = FusionArgs.from_script_args(values)
    named = FusionArgs.from_script_args([dict(zip(FIELDS, values), mode=1)])
    assert positional == named
    assert positional.to_ui() == values


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


def test_infotext_skips_defaults_and_reads_missing_keys_as_defaults():
    pairs = to_infotext(FusionArgs(enabled=True, model="m"))
    assert set(pairs) == {"Fusion", "Fusion model", "Fusion solo", "Fusion selection", "Fusion mode"}
    assert from_infotext({}) == FusionArgs()
    assert to_infotext(FusionArgs()) == {}


def test_paste_of_a_broken_infotext_turns_fusion_off_instead_of_failing():
    params = {"Fusion": "snb", "Fusion model": "m", "Fusion mode": "7"}
    assert paste_value(params, "enabled") is False
    assert paste_value({"Fusion": "snb", "Fusion model": "m", "Fusion mode": "1"}, "mode") == "1"


def test_ui_defaults_with_an_empty_dropdown_parse_as_disabled():
    """The UI's initial values (and the API's defaults taken from them) have model=None."""
    values = FusionArgs().to_ui()
    values[FIELDS.index("model")] = None
    assert FusionArgs.from_script_args(values) == FusionArgs()

"""The infotext a generation writes pastes back to the same fusion, whatever its text."""

import pytest
from modules import infotext_utils

from lib_fusion.arguments.infotext import from_infotext

PROMPTS = ["64x64", '"in quotes"', "  spaced  ", "a: b, c", 'say "hi"', "line\nbreak", "1920x1080", "ünïcode ✓", '"', "x"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_any_fusion_prompt_survives_the_round_trip(webui, prompt):
    fusion = {"enabled": True, "model": "expert", "prompt": prompt, "negative_prompt": prompt, "fusion_selection": "0,1,1", "mode": 2}
    processed = webui.generate(fusion, steps=1)
    restored = from_infotext(infotext_utils.parse_generation_parameters(processed.infotexts[0]))
    assert restored.prompt == prompt and restored.negative_prompt == prompt
    assert restored.model == webui.title("expert")


def test_several_checkpoints_and_a_background_survive_the_round_trip(webui):
    from modules import shared

    shared.opts.model_fusion_max_models = 2
    snb = {"enabled": True, "model": "expert", "fusion_selection": "0,1,1", "mode": 2,
           "models": [{"model": "artist", "prompt": "a cat, sitting", "k": 1.5, "window": [0, 0.5]}]}  # fmt: skip
    processed = webui.generate(snb, steps=2)
    restored = from_infotext(infotext_utils.parse_generation_parameters(processed.infotexts[0]))
    assert [entry.dict() for entry in restored.models] == [
        {"model": webui.title("artist"), "prompt": "a cat, sitting", "negative_prompt": "", "k": 1.5, "window": [0.0, 0.5]}
    ]
    regions = {"enabled": True, "method": "regions", "regions": [{"box": [0, 0, 0.5, 1], "model": "active"}], "background": "artist"}
    processed = webui.generate(regions, steps=1, width=128)
    restored = from_infotext(infotext_utils.parse_generation_parameters(processed.infotexts[0]))
    assert restored.background == webui.title("artist") and restored.method == "regions"

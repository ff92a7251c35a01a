"""The infotext a generation writes pastes back to the same fusion, whatever its text."""

import pytest
from modules import infotext_utils

from lib_fusion.infotext import from_infotext

PROMPTS = ["64x64", '"in quotes"', "  spaced  ", "a: b, c", 'say "hi"', "line\nbreak", "1920x1080", "ünïcode ✓", '"', "x"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_any_fusion_prompt_survives_the_round_trip(webui, prompt):
    fusion = {"enabled": True, "model": "expert", "prompt": prompt, "negative_prompt": prompt, "fusion_selection": "0,1,1", "mode": 1}
    processed = webui.generate(fusion, steps=1)
    restored = from_infotext(infotext_utils.parse_generation_parameters(processed.infotexts[0]))
    assert restored.prompt == prompt and restored.negative_prompt == prompt
    assert restored.model == webui.title("expert")

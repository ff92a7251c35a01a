"""The accordion's plain words: the schedule said as a share of the denoising, presets, hints."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib_fusion.arguments.args import FIELDS, FusionArgs
from lib_fusion.arguments.fields import OUTPUT_FIELDS
from lib_fusion.arguments.schedule import is_fused
from lib_fusion.ui import presets, schedule_words
from lib_fusion.ui.ui_text import HINTS, status_line

W = schedule_words


@pytest.mark.parametrize(
    ("v1", "mode", "words"),
    [(600, 2, (W.FIRST, 40.0)), (850, 1, (W.LAST, 85.0)), (0, 2, (W.ALL, 100.0)), (1000, 1, (W.ALL, 100.0)), (600, 0, (W.NONE, 40.0))],
)
def test_the_papers_numbers_in_words(v1, mode, words):
    assert W.words_of(v1, mode) == words


@given(v1=st.integers(0, 1000), mode=st.sampled_from([0, 1, 2]))
def test_words_mean_exactly_the_numbers_an_old_infotext_holds(v1, mode):
    """Every whole v1 (the paper's, the presets', any the share slider writes) and mode: the
    words shown mean exactly the timesteps the numbers fuse. (A v1 with decimals is shown to
    the nearest 0.1 %; the accordion keeps the pasted numbers and writes only what is edited.)"""
    choice, share = W.words_of(v1, mode)
    back_v1, back_mode = W.numbers_of(choice, share, v1)
    assert all(is_fused(t, back_v1, back_mode) == is_fused(t, v1, mode) for t in range(1000))
    assert abs(W.numbers_of(*W.words_of(v1 + 0.37, 2), v1)[0] - (v1 + 0.37)) <= 0.5 or v1 + 0.37 > 1000


@given(choice=st.sampled_from(W.CHOICES), share=st.integers(0, 200).map(lambda n: n / 2))
def test_words_to_numbers_and_back(choice, share):
    v1, mode = W.numbers_of(choice, share, 600.0)
    assert 0 <= v1 <= 1000 and mode in (0, 1, 2)
    again = W.words_of(v1, mode)
    if choice in (W.FIRST, W.LAST) and 0 < share < 100:
        assert again == (choice, share)
    fused_share = sum(is_fused(t + 0.5, v1, mode) for t in range(1000)) / 10
    expected = {W.FIRST: share, W.LAST: share, W.ALL: 100.0, W.NONE: 0.0}[choice]
    assert fused_share == pytest.approx(expected, abs=0.1)


def test_the_label_counts_the_steps_of_the_samplers_schedule():
    timesteps = [999.0 - 50 * i for i in range(20)]  # 999, 949, ... 49
    expected = "Fuses while t > 600 (t runs from 1000 to 0), then model A alone: steps 1–8 of 20 with Euler."
    assert W.describe(600, 2, timesteps, "Euler") == expected
    assert W.describe(600, 1, timesteps).endswith("steps 9–20 of 20.")
    assert W.describe(0, 2, timesteps).endswith("all 20 steps.")
    assert W.describe(600, 0, timesteps) == "No step fuses: model A runs alone"
    assert W.describe(600, 2, None) == "Fuses while t > 600 (t runs from 1000 to 0), then model A alone"
    with pytest.raises(ValueError, match="fuse: choose one of"):
        W.numbers_of("sometimes", 50, 600)


def test_presets_fill_fields_and_edits_show_custom():
    active = "general.safetensors [3e3e67a5d7]"
    for preset in presets.PRESETS:
        values = presets.values_of(preset.name, active)
        FusionArgs.parse({"enabled": True, "model": "x", **values})  # every preset is valid arguments
        assert presets.matching(values, active) == preset.name
        assert preset.description and len(preset.description) < 200
    first = presets.values_of(presets.PRESETS[0].name, active)
    assert presets.matching({**first, "mode": "2"}, active) == presets.PRESETS[0].name  # the mode radio gives text
    assert presets.matching({**first, "fusion_selection": "600,1,1.5"}, active) == presets.CUSTOM
    assert presets.values_of(presets.PRESETS[1].name, active)["model"] == active
    assert presets.values_of(presets.CUSTOM, active) == {}
    assert presets.PRESETS[0].values == {"method": "snb", "fusion_selection": "600,1,1", "mode": 2, "solo": "active"}  # the paper's lion


def test_every_control_has_a_hover_hint_and_the_status_line_says_what_is_loaded():
    for field in FIELDS:
        if field not in ("enabled",) + OUTPUT_FIELDS or field in HINTS:
            assert field in HINTS, field
    for control in ("preset", "fuse", "share", "kg", "ke", "refresh", "unload", "table"):
        assert control in HINTS
    expert = {"title": "expert.safetensors [9f56]", "parts": ["unet"], "bytes": 3 * 2**30}
    line = status_line({**expert, "held": [expert]}, [("xl.safetensors", "SDXL <UNet>")])
    assert "Held in memory: expert.safetensors [9f56] (unet, 3.00 GiB)" in line
    assert 'title="xl.safetensors: SDXL &lt;UNet&gt;"' in line and "1 checkpoint of another family not listed" in line
    third = {"title": "third.safetensors", "parts": ["unet", "text_encoder"], "bytes": 2**30}
    line = status_line({**expert, "held": [third, expert]}, [])  # least recently used first: the newest is named first
    assert "Held in memory: expert.safetensors [9f56] (unet, 3.00 GiB), third.safetensors (unet + text_encoder, 1.00 GiB)" in line
    assert "No fusion checkpoint held" in status_line(None, [])


def test_the_words_on_screen_are_kept_while_they_mean_the_numbers():
    # The last 30 %, then none: the share stays 30, so choosing the last again means 30 % again.
    assert W.numbers_of(W.NONE, 30, 300.0) == (300.0, 0)
    assert W.shows(W.NONE, 30, 300.0, 0)
    assert not W.shows(W.LAST, 30, 300.0, 0) and W.numbers_of(W.LAST, 30, 300.0) == (300.0, 1)
    # The last 100 % is v1 = 1000, mode 1: the radio keeps saying the last, not all.
    assert W.shows(W.LAST, 100, *W.numbers_of(W.LAST, 100, 0.0))
    # A pasted v1 with a decimal the slider cannot show is still what the words show.
    assert W.shows(W.FIRST, 39.5, 605.3, 2) and not W.shows(W.FIRST, 39.0, 605.3, 2)
    assert not W.shows(W.FIRST, 40, 600.0, 1)  # another mode: rewritten


def test_the_schedule_line_says_which_checkpoint_is_a_and_which_is_b():
    assert W.roles("active", "general.safetensors", "expert.safetensors") == (
        "A = the active checkpoint (general.safetensors), B = expert.safetensors."
    )
    assert W.roles("fusion", "general.safetensors", "expert.safetensors") == (
        "A = expert.safetensors, B = the active checkpoint (general.safetensors)."
    )
    assert W.roles("active", "", "") == "A = the active checkpoint, B = the fusion checkpoint (none chosen)."

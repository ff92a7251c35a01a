"""The pictures of the comparison and previews: colours, upscaling, grid geometry, step choice."""

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from lib_fusion.engine import outputs, pictures
from lib_fusion.engine.preview_maps import Trace


def test_heat_ramp_runs_from_its_first_to_its_last_stop():
    colours = pictures.heat_colours(np.array([[0.0, 0.5, 1.0, -3.0, 7.0]]))
    assert colours.dtype == np.uint8
    assert tuple(colours[0, 0]) == tuple(pictures.HEAT_STOPS[0]) == tuple(colours[0, 3])
    assert tuple(colours[0, 2]) == tuple(pictures.HEAT_STOPS[-1]) == tuple(colours[0, 4])
    assert tuple(colours[0, 1]) == tuple(pictures.HEAT_STOPS[2])


@given(st.lists(st.floats(0, 1), min_size=2, max_size=50))
def test_heat_ramp_brightness_never_falls_as_saliency_rises(values):
    ordered = np.sort(np.array(values))[None]
    brightness = pictures.heat_colours(ordered).astype(np.int32).sum(axis=-1)[0]
    assert np.all(np.diff(brightness) >= -2)  # rounding only


def test_a_flat_saliency_map_is_drawn_without_dividing_by_zero():
    picture = pictures.heat_map(torch.full((4, 4), 0.3), (32, 32))
    assert picture.size == (32, 32)
    assert set(map(tuple, np.asarray(picture).reshape(-1, 3))) == {tuple(pictures.HEAT_STOPS[0].astype(np.uint8))}


def test_a_hard_mask_shows_each_latent_pixel_as_an_8x8_block_of_its_model():
    mask = torch.zeros(2, 3)
    mask[1, 2] = 1.0
    picture = np.asarray(pictures.mask_picture(mask, (24, 16), soft=False))
    assert picture.shape == (16, 24, 3)
    assert np.all(picture[8:16, 16:24] == pictures.COLOUR_B)
    assert np.all(picture[:8] == pictures.COLOUR_A) and np.all(picture[8:, :16] == pictures.COLOUR_A)


def test_labelled_grid_puts_each_tile_in_its_cell_below_the_labels():
    tiles = [[Image.new("RGB", (20, 10), (r * 100, c * 100, 7)) for c in range(3)] for r in range(2)]
    grid = pictures.labelled_grid(tiles, ["one", "two", "a very long label that will not fit"], ["row 1", "row 2"])
    left, top = grid.width - 3 * 20, grid.height - 2 * 10
    assert left > 0 and top > 0
    array = np.asarray(grid)
    for r in range(2):
        for c in range(3):
            assert tuple(array[top + r * 10 + 5, left + c * 20 + 10]) == (r * 100, c * 100, 7)


def _traces(n):
    empty = torch.zeros(1, 1, 1, 1)
    return [Trace(0, False, step, 1000.0 - step, empty, empty, empty, position=step) for step in range(n)]


@given(st.integers(0, 60), st.integers(1, 10))
def test_chosen_steps_spread_from_the_first_to_the_last(n, count):
    picked = [trace.step for trace in outputs.chosen(_traces(n), count)]
    assert len(picked) == min(n, count)
    assert picked == sorted(set(picked))
    if n and count >= 2:
        assert picked[0] == 0 and picked[-1] == n - 1


@given(st.integers(1, 300), st.integers(1, 10))
def test_a_thinned_sample_shows_the_steps_the_full_list_would_nearly(n, count):
    from lib_fusion.engine.preview_maps import Thinned

    keeper = Thinned(count)
    for trace in _traces(n):
        keeper.add(trace)
    kept = keeper.traces()
    assert len(kept) <= 2 * count + 1
    full = [trace.step for trace in outputs.chosen(_traces(n), count)]
    thinned = [trace.step for trace in outputs.chosen(kept, count)]
    assert len(thinned) == len(full)
    if count >= 2:
        assert thinned[0] == full[0] == 0 and thinned[-1] == full[-1] == n - 1
    stride = keeper.stride  # kept traces lie at most a stride apart: so does each pick from the ideal one
    assert all(abs(a - b) <= stride for a, b in zip(thinned, full))


def test_each_checkpoint_of_a_region_layout_has_its_own_colour():
    masks = torch.zeros(3, 2, 6)
    masks[0, :, 0:2], masks[1, :, 2:4], masks[2, :, 4:6] = 1, 1, 1
    models = ["fusion", "artist.safetensors [0123456789]", "active"]
    picture = pictures.region_layout(Image.new("RGB", (48, 16)), masks, models, ["", "", ""], "caption")
    pixels = np.asarray(picture, dtype=np.float32)
    tile = pixels[pixels.shape[0] - 16 :, (pixels.shape[1] - 48) // 2 :][:, :48]  # the image below the caption band
    expected = [pictures.COLOUR_B, pictures.OTHER_COLOURS[0], pictures.COLOUR_A]
    for k, colour in enumerate(expected):
        centre = tile[8, k * 16 + 8]  # inside the block, away from the outline
        assert np.allclose(centre, np.array(colour) * pictures.OVERLAY_ALPHA, atol=1.5), (k, centre)
    assert pictures.model_colours(["x", "y", "x"]) == {
        **pictures.MODEL_COLOURS,
        "x": pictures.OTHER_COLOURS[0],
        "y": pictures.OTHER_COLOURS[1],
    }


def test_a_winner_map_takes_each_models_colour():
    choice = torch.tensor([[0.0, 1.0, 2.0]])
    picture = pictures.choice_picture(choice, (24, 8))
    expected = [pictures.COLOUR_A, pictures.COLOUR_B, pictures.OTHER_COLOURS[0]]
    assert [picture.getpixel((8 * m + 4, 4)) for m in range(3)] == [tuple(colour) for colour in expected]

"""Shifted windows, the automatic stride and the host-side mask tables."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_fusion.fusion import multidiffusion as md
from lib_fusion.fusion import shifted_windows as sw
from tests.unit.test_multidiffusion import views_per_pixel


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 70),
    width=st.integers(1, 140),
    window=st.integers(1, 40),
    shift=st.tuples(st.integers(0, 100), st.integers(0, 100)),
    circular=st.booleans(),
)
def test_shifted_views_tile_every_pixel_with_whole_windows(height, width, window, shift, circular):
    views = sw.shifted_views(height, width, window, shift, circular)
    count = views_per_pixel(views, height, width)
    assert bool((count >= 1).all())
    assert len(views) <= sw.most_views(height, width, window, circular)
    for top, bottom, left, right in views:
        assert bottom - top == min(window, height) and right - left == min(window, width)
        assert 0 <= top and bottom <= height and 0 <= left < width
        assert right <= width or (circular and right - width < width)
    if circular and width > window:
        assert len({left for _, _, left, _ in views}) == -(-width // window)  # wrapping adds no edge window
        # Wrapping, a width that the window divides is tiled exactly once.
        if width % window == 0 and height <= window:
            assert bool((count == 1).all())


def test_a_shift_moves_the_seams_and_edge_windows_stay_inside():
    assert sw.shifted_views(8, 32, 8, (0, 0)) == [(0, 8, 0, 8), (0, 8, 8, 16), (0, 8, 16, 24), (0, 8, 24, 32)]
    assert sw.shifted_views(8, 32, 8, (0, 3)) == [(0, 8, 0, 8), (0, 8, 3, 11), (0, 8, 11, 19), (0, 8, 19, 27), (0, 8, 24, 32)]
    assert sw.shifted_views(8, 32, 8, (0, 3), circular=True) == [(0, 8, 3, 11), (0, 8, 11, 19), (0, 8, 19, 27), (0, 8, 27, 35)]


def test_offsets_are_reproducible_and_within_the_window():
    assert sw.offsets(5, 3, 64) == sw.offsets(5, 3, 64)
    draws = [sw.offsets(seed, step, 64) for seed in range(3) for step in range(20)]
    assert all(0 <= dy < 64 and 0 <= dx < 64 for dy, dx in draws)
    assert len(set(draws)) > 50


def doubly_covered(height, width, window, stride, circular):
    """Every pixel more than half a window from a non-wrapping edge lies in two views or more."""
    count = views_per_pixel(md.get_views(height, width, window, stride, circular), height, width)
    rows = slice(None) if height <= window else slice(window // 2, height - window // 2)
    columns = slice(None) if width <= window or circular else slice(window // 2, width - window // 2)
    inner = count[rows, columns]
    if height > window and (width > window):  # an inner pixel of either axis: it lies in two views of that axis
        inner = torch.cat([count[rows, :].flatten(), count[:, columns].flatten()])
    return height <= window and width <= window or bool((inner >= 2).all())


@settings(max_examples=120, deadline=None)
@given(height=st.integers(1, 48), width=st.integers(1, 96), window=st.integers(2, 24), circular=st.booleans())
def test_auto_stride_is_the_largest_that_blends_every_inner_seam(height, width, window, circular):
    stride = md.auto_stride(height, width, window, circular)
    assert 1 <= stride <= window
    assert doubly_covered(height, width, window, stride, circular)
    assert stride == window or not doubly_covered(height, width, window, stride + 1, circular)


def test_auto_stride_of_a_panorama_is_half_the_window():
    assert md.auto_stride(64, 256, 64) == 32
    assert md.auto_stride(64, 256, 64, circular=True) == 32
    assert md.auto_stride(64, 64, 64) == 64  # one view: nothing to blend


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 20),
    width=st.integers(2, 30),
    data=st.data(),
)
def test_the_mask_table_answers_as_the_mask_does(height, width, data):
    mask = torch.tensor(data.draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))).view(height, width)
    top = data.draw(st.integers(0, height - 1))
    bottom = data.draw(st.integers(top + 1, height))
    left = data.draw(st.integers(0, width - 1))
    right = data.draw(st.integers(left + 1, left + width))  # past the width: wraps round
    view = (top, bottom, left, right)
    assert md.MaskArea(mask.float()).any_in(view) == bool(md.crop(mask, view).any())

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_fusion.fusion import multidiffusion as md
from lib_fusion.fusion.denoise import Conditioning, Model, StepInput, guided
from lib_fusion.fusion.regions import Bootstrap, Region, coverage, pick_table, regions_step, seed_noise


def views_per_pixel(views, height, width):
    count = torch.zeros(height, width)
    for view in views:
        md._add(count, view, torch.ones(view[1] - view[0], view[3] - view[2]))
    return count


@settings(max_examples=200, deadline=None)
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 300),
    window=st.integers(1, 64),
    stride_fraction=st.floats(0.01, 1.0),
    circular=st.booleans(),
)
def test_views_cover_every_pixel_and_stay_window_sized(height, width, window, stride_fraction, circular):
    stride = max(1, int(window * stride_fraction))
    views = md.get_views(height, width, window, stride, circular)
    assert bool((views_per_pixel(views, height, width) > 0).all())
    for top, bottom, left, right in views:
        assert 0 <= top < bottom <= height and bottom - top == min(window, height)
        assert 0 <= left < right and right - left == min(window, width) if not circular or width <= window else right - left == window
        assert right <= width or (circular and width > window)


def test_the_official_uncovered_edge_is_covered():
    # 64 x 100 latent, window 64, stride 8: the official views stop at column 32 + 64 = 96.
    views = md.get_views(64, 100, 64, 8)
    assert views[-1] == (0, 64, 36, 100)
    assert [v[2] for v in views] == [0, 8, 16, 24, 32, 36]


def test_small_canvases_are_one_view_and_stride_must_fit_the_window():
    assert md.get_views(40, 50, 64, 8) == [(0, 40, 0, 50)]
    assert md.get_views(40, 50, 64, 8, circular=True) == [(0, 40, 0, 50)]
    with pytest.raises(ValueError, match="stride 9 is larger than the window 8"):
        md.get_views(16, 16, 8, 9)


def test_circular_views_wrap_round_the_right_edge():
    views = md.get_views(8, 24, 8, 8, circular=True)
    assert views == [(0, 8, 0, 8), (0, 8, 8, 16), (0, 8, 16, 24)]
    views = md.get_views(8, 20, 8, 4, circular=True)
    assert views[-1] == (0, 8, 16, 24)
    x = torch.arange(20.0).expand(1, 1, 8, 20)
    assert md.crop(x, views[-1])[0, 0, 0].tolist() == [16, 17, 18, 19, 0, 1, 2, 3]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), value=st.floats(-5, 5), scale=st.floats(0.01, 50))
def test_weights_normalise(seed, value, scale):
    g = torch.Generator().manual_seed(seed)
    views = md.get_views(12, 30, 8, 3)
    weights = [torch.rand(1, 1, 8, 8, generator=g) + 0.1 for _ in views]
    constant = [torch.full((2, 4, 8, 8), value) for _ in views]
    fused = md.fuse(constant, views, weights, 12, 30)
    assert torch.allclose(fused, torch.full_like(fused, value), atol=1e-5)
    noisy = [torch.randn(2, 4, 8, 8, generator=g) for _ in views]
    assert torch.allclose(md.fuse(noisy, views, weights, 12, 30), md.fuse(noisy, views, [w * scale for w in weights], 12, 30), atol=1e-5)


def test_a_pixel_with_one_contributor_gets_its_prediction_bit_for_bit():
    prediction = torch.randn(2, 4, 8, 8)
    fused = md.fuse([prediction], [(0, 8, 0, 8)], [torch.full((1, 1, 8, 8), 2.7)], 8, 8)
    assert torch.equal(fused, prediction)


def test_fuse_refuses_uncovered_pixels():
    with pytest.raises(ValueError, match="zero total weight"):
        md.fuse([torch.ones(1, 4, 8, 8)], [(0, 8, 0, 8)], [torch.zeros(1, 1, 8, 8)], 8, 8)


def test_masks_from_boxes_and_images():
    box = md.box_mask([0.25, 0.5, 0.5, 0.5], 8, 16)
    assert box.sum() == 4 * 8 and box[4:, 4:12].all()
    image = torch.zeros(64, 128)
    image[:32, :] = 0.7
    assert md.resize_mask(image, 8, 16)[:4].all() and not md.resize_mask(image, 8, 16)[4:].any()
    stacked = md.with_background(torch.stack([box, box]))
    assert stacked.shape == (3, 8, 16)
    assert torch.equal(stacked[0], 1 - box)  # overlapping foregrounds never make it negative


def test_bootstrap_keeps_the_inside_and_replaces_the_outside():
    x, background = torch.ones(1, 4, 2, 2), torch.full((1, 4, 2, 2), 5.0)
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = md.bootstrap(x, mask, background)
    assert out[0, 0].tolist() == [[1, 5], [5, 1]]


# -- a whole regions step over a small convolutional "model" ------------------------------
CONV = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
torch.nn.init.normal_(CONV.weight, generator=torch.Generator().manual_seed(0))


def conv_model(scale=1.0, calls=None):
    def fn(x, sigma, cond, image_cond):
        if calls is not None:
            calls.append(x.shape[0])
        with torch.no_grad():
            out = torch.nn.functional.conv2d(x, CONV.weight, padding=1)
        return out * scale + cond.mean(dim=(1, 2)).view(-1, 1, 1, 1) * sigma.view(-1, 1, 1, 1)

    return fn


def conditioning(batch, value):
    return Conditioning([[(i, 1.0)] for i in range(batch)], torch.full((batch, 3, 2), value), torch.zeros(batch, 3, 2))


def step_input(x):
    batch = x.shape[0]
    return StepInput(x, torch.full((batch,), 3.0), torch.zeros(batch, 5, 1, 1), torch.zeros(batch, 5, 1, 1), 7.0, "x0")


def test_a_single_full_canvas_region_equals_the_plain_model_bit_for_bit():
    x = torch.randn(2, 4, 8, 8)
    model = Model("active", conv_model(), conditioning(2, 0.5))
    plain = guided(model, step_input(x))[1]
    result = regions_step([Region(model, torch.ones(8, 8), weight=3.3)], step_input(x), md.get_views(8, 8, 8, 4), 4)
    assert torch.equal(result.prediction, plain)


def regions_of_two_models(height, width, calls_a=None, calls_b=None):
    left = torch.zeros(height, width)
    left[:, : width // 2] = 1
    foreground = torch.stack([left])
    masks = md.with_background(foreground)
    a = Model("active", conv_model(1.0, calls_a), conditioning(2, 0.1))
    b = Model("fusion", conv_model(-2.0, calls_b), conditioning(2, 0.9))
    return [Region(a, masks[0]), Region(b, masks[1], weight=2.0, bootstrap=True)]


@pytest.mark.parametrize("view_batch_size", [2, 3, 4, 64])
def test_view_batch_size_never_changes_the_result(view_batch_size, monkeypatch):
    x = torch.randn(2, 4, 8, 40)
    views = md.get_views(8, 40, 8, 4)
    one = regions_step(regions_of_two_models(8, 40), step_input(x), views, 1).prediction
    many = regions_step(regions_of_two_models(8, 40), step_input(x), views, view_batch_size).prediction
    # A convolution may pick another kernel for another batch size (last-bit differences) ...
    assert torch.allclose(one, many, atol=1e-6)
    # ... so with a row-wise model the batching itself is shown to be exact.
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda x, weight, padding: x * weight.sum())
    one = regions_step(regions_of_two_models(8, 40), step_input(x), views, 1).prediction
    many = regions_step(regions_of_two_models(8, 40), step_input(x), views, view_batch_size).prediction
    assert torch.equal(one, many)


def test_a_coverage_made_once_serves_every_step_bit_for_bit():
    views = md.get_views(8, 40, 8, 4)
    covered = coverage(regions_of_two_models(8, 40), views, torch.zeros(2, 4, 8, 40))
    for _ in range(3):
        x = torch.randn(2, 4, 8, 40)
        fresh = regions_step(regions_of_two_models(8, 40), step_input(x), views, 4).prediction
        reused = regions_step(regions_of_two_models(8, 40), step_input(x), views, 4, covered=covered).prediction
        assert torch.equal(fresh, reused)


@settings(max_examples=100, deadline=None)
@given(
    width=st.integers(8, 48),
    window=st.integers(4, 8),
    split=st.floats(0.0, 1.0),
    weight=st.floats(0.05, 20.0),
)
def test_normalised_weights_sum_to_one_at_every_pixel(width, window, split, weight):
    """Equation 5's factors: at each pixel the weights of the passes covering it add to 1,
    so a constant prediction comes out unchanged wherever the regions and views fall."""
    foreground = md.box_mask([0.0, 0.0, split, 1.0], 8, width)[None]
    masks = md.with_background(foreground)
    model = Model("a", conv_model(), conditioning(1, 0.0))
    regions = [Region(model, masks[0]), Region(model, masks[1], weight=weight)]
    views = md.get_views(8, width, window, max(1, window // 2))
    covered = coverage(regions, views, torch.zeros(1, 4, 8, width))
    total = torch.zeros(1, 1, 8, width)
    for (v, _), normalised in zip(covered.items, covered.weights):
        md._add(total, views[v], normalised)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-5)


def test_each_model_runs_once_per_chunk_and_never_on_an_empty_mask():
    calls_a, calls_b = [], []
    views = md.get_views(8, 40, 8, 4)  # 9 views; the left half (20 columns) is region 1
    result = regions_step(regions_of_two_models(8, 40, calls_a, calls_b), step_input(torch.randn(2, 4, 8, 40)), views, 4)
    left_views = [v for v in views if v[2] < 20]
    right_views = [v for v in views if v[3] > 20]
    assert result.passes == len(left_views) + len(right_views)
    rows = 2 * 2  # cond + uncond rows of two images
    assert sum(calls_b) == rows * len(left_views) and sum(calls_a) == rows * len(right_views)
    assert max(calls_a + calls_b) <= 4 * rows
    assert len(calls_a) == -(-len(right_views) // 4) and len(calls_b) == -(-len(left_views) // 4)


def test_inside_a_lone_region_the_prediction_is_its_models():
    x = torch.randn(2, 4, 8, 16)
    regions = regions_of_two_models(8, 16)
    fused = regions_step(regions, step_input(x), [(0, 8, 0, 16)], 4).prediction
    alone_b = guided(regions[1].model, step_input(x))[1]
    alone_a = guided(regions[0].model, step_input(x))[1]
    assert torch.allclose(fused[..., :8], alone_b[..., :8], atol=1e-6)
    assert torch.allclose(fused[..., 8:], alone_a[..., 8:], atol=1e-6)


def test_bootstrapping_replaces_only_the_foreground_passes_outside_their_mask():
    seen = []

    def recording(x, sigma, cond, image_cond):
        seen.append(x.clone())
        return x

    masks = md.with_background(torch.stack([md.box_mask([0, 0, 0.5, 1], 4, 8)]))
    regions = [
        Region(Model("a", recording, conditioning(1, 0.0)), masks[0]),
        Region(Model("b", recording, conditioning(1, 1.0)), masks[1], bootstrap=True),
    ]
    x = torch.zeros(1, 4, 4, 8)
    table = pick_table([5], 1, 2, 3)
    bootstrap = Bootstrap(torch.full((3, 4), 9.0), torch.zeros(1, 4, 4, 8), lambda x0, n, s: x0 + n * s.view(-1, 1, 1, 1), table, 0)
    regions_step(regions, step_input(x), [(0, 4, 0, 8)], 1, bootstrap)
    background_input, region_input = seen
    assert torch.equal(background_input, torch.zeros(2, 4, 4, 8))
    assert region_input[..., :4].eq(0).all() and region_input[..., 4:].eq(9).all()


def test_bootstrap_picks_depend_on_the_image_seed_not_on_the_batch():
    colours = torch.randn(20, 4)
    together = Bootstrap(colours, torch.zeros(2, 4, 1, 1), None, pick_table([7, 8], 5, 10, 20), 3)
    alone = Bootstrap(colours, torch.zeros(1, 4, 1, 1), None, pick_table([8], 5, 10, 20), 3)
    assert torch.equal(together.picks(10)[1], alone.picks(10)[0])
    assert torch.equal(together.of_image(1).picks(4), alone.picks(4))  # a step with fewer passes takes the first picks
    assert not torch.equal(together.picks(10)[0], Bootstrap(colours, None, None, pick_table([7], 5, 10, 20), 4).picks(10)[0])
    with pytest.raises(ValueError, match="11 bootstrapped passes, but colours were drawn for 10"):
        alone.picks(11)
    assert torch.equal(seed_noise([7, 8], (4, 2, 2))[1], seed_noise([8], (4, 2, 2))[0])


def test_circular_views_leave_no_seam():
    """With wrap-around views a shift of the canvas by the stride shifts the result by the
    same amount: the seam between the right and left edge is like any other column."""
    x = torch.randn(1, 4, 8, 32)
    views = md.get_views(8, 32, 8, 4, circular=True)
    model = Model("a", conv_model(), conditioning(1, 0.3))

    def run(latent, views):
        return regions_step([Region(model, torch.ones(8, 32))], step_input(latent), views, 4).prediction

    shifted = run(torch.roll(x, 4, dims=-1), views)
    assert torch.allclose(shifted, torch.roll(run(x, views), 4, dims=-1), atol=1e-5)
    flat = md.get_views(8, 32, 8, 4)
    assert not torch.allclose(run(torch.roll(x, 4, dims=-1), flat), torch.roll(run(x, flat), 4, dims=-1), atol=1e-3)
    # Both edges: denoised with the canvas's left and right edges moved to its middle, the
    # edge columns come out the same as when they are at the edges.
    middle = torch.roll(run(torch.roll(x, 16, dims=-1), views), -16, dims=-1)
    assert torch.allclose(middle[..., [0, -1]], run(x, views)[..., [0, -1]], atol=1e-5)


@given(st.integers(1, 300), st.integers(1, 300), st.integers(1, 64), st.integers(1, 64), st.booleans())
def test_view_count_is_the_number_of_views(h, w, window, stride, circular):
    stride = min(stride, window)
    assert md.view_count(h, w, window, stride, circular) == len(md.get_views(h, w, window, stride, circular))


def test_too_many_views_are_refused_with_a_stride_that_fits():
    with pytest.raises(ValueError, match=r"make 62001 views .* over the limit of 1024; use stride 8 or more"):
        md.check_view_count(256, 256, 8, 1)
    md.check_view_count(256, 256, 64, 8)  # 2048x2048 at the official settings: 625 views

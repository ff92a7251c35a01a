import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_fusion.fusion import snb


def official_blend(uncond_a, cond_a, cond_b, uncond_b, s, kg, ke):
    """The official p_sample_ddim maths, restated at the official 64x64 size."""
    eps_b = uncond_b + s * (cond_b - uncond_b)
    eps_a = uncond_a + s * (cond_a - uncond_a)
    resp_b = s * (cond_b - uncond_a)
    resp_a = s * (cond_a - uncond_a)
    ceps = torch.stack([eps_a, eps_b])
    aceps = torch.stack([resp_a, resp_b]).abs().reshape(-1, 4, 64, 64)
    pooled = torch.nn.AvgPool2d(4, stride=1, padding=1, count_include_pad=True)(aceps)
    sal = F.interpolate(pooled, size=(64, 64), mode="bilinear", align_corners=False)
    sal = sal.reshape(2, -1, 4, 64, 64).mean(dim=2, keepdim=True).repeat(1, 1, 4, 1, 1)
    n = sal.shape[1]
    la = torch.softmax(kg * sal[0].reshape(n * 4, -1), dim=1).reshape(n, 4, 64, 64)
    lb = torch.softmax(ke * sal[1].reshape(n * 4, -1), dim=1).reshape(n, 4, 64, 64)
    choice = torch.argmax(torch.stack([la, lb]), dim=0, keepdim=True)
    return torch.gather(ceps, 0, choice)[0]


def four(n=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 4, h, w, generator=g) for _ in range(4)]


def test_matches_the_official_code_at_64x64():
    ua, ca, ub, cb = four()
    fused, mask = snb.blend(ua, ca, ub, cb, cfg_scale=10.0, kg=1.0, ke=1.3)
    expected = official_blend(ua, ca, cb, ub, 10.0, 1.0, 1.3)
    assert torch.equal(fused, expected)
    assert 0 < mask.mean() < 1


def test_hand_computed_two_pixel_case():
    """1x2 latent, no blur possible on a side of 1: A is salient left, B right."""
    ua = torch.zeros(1, 4, 1, 2)
    ca = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2).expand(1, 4, 1, 2)
    ub = torch.zeros(1, 4, 1, 2)
    cb = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 4, 1, 2)
    fused, mask = snb.blend(ua, ca, ub, cb, cfg_scale=2.0, kg=1.0, ke=1.0)
    assert mask.flatten().tolist() == [0.0, 1.0]
    # left: eps_A = 0 + 2 * 1 = 2; right: eps_B = 0 + 2 * 1 = 2
    assert fused[0, 0].flatten().tolist() == [2.0, 2.0]


def test_identical_models_with_equal_factors_give_a():
    ua, ca, _, _ = four(seed=3)
    fused, mask = snb.blend(ua, ca, ua.clone(), ca.clone(), 7.5, 1.0, 1.0)
    assert torch.equal(mask, torch.zeros_like(mask))  # ties go to A
    assert torch.equal(fused, ua + 7.5 * (ca - ua))


def test_own_uncond_changes_only_b_response():
    ua, ca, ub, cb = four(seed=4)
    _, solo = snb.blend(ua, ca, ub, cb, 5.0, 1.0, 1.0, saliency_uncond="solo")
    _, own = snb.blend(ua, ca, ub, cb, 5.0, 1.0, 1.0, saliency_uncond="own")
    assert not torch.equal(solo, own)


def test_soft_mask_is_b_share_and_blends_linearly():
    ua, ca, ub, cb = four(seed=5, h=16, w=16)
    fused, weight = snb.blend(ua, ca, ub, cb, 3.0, 1.0, 1.0, soft=True)
    assert ((weight > 0) & (weight < 1)).all()
    eps_a, eps_b = ua + 3 * (ca - ua), ub + 3 * (cb - ub)
    assert torch.allclose(fused, eps_a + weight * (eps_b - eps_a))


def test_gaussian_blur_keeps_size_and_constant_maps():
    x = torch.full((1, 4, 9, 13), 2.5)
    assert torch.allclose(snb.gaussian_blur(x), x)
    assert snb.box_blur(torch.rand(2, 4, 9, 13)).shape == (2, 4, 9, 13)


def test_bad_inputs_raise_clear_errors():
    ua, ca, ub, cb = four(h=8, w=8)
    with pytest.raises(ValueError, match="one shape"):
        snb.blend(ua, ca, ub[:1], cb, 7, 1, 1)
    with pytest.raises(ValueError, match="saliency_uncond"):
        snb.blend(ua, ca, ub, cb, 7, 1, 1, saliency_uncond="mine")
    with pytest.raises(ValueError, match="blur"):
        snb.blend(ua, ca, ub, cb, 7, 1, 1, blur="median")


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 20),
    w=st.integers(1, 20),
    n=st.integers(1, 3),
    kg=st.floats(0.1, 50),
    ke=st.floats(0.1, 50),
    blur=st.sampled_from(["box", "gaussian"]),
    seed=st.integers(0, 1000),
)
def test_any_latent_size_hard_mask_is_binary_and_picks_one_model(h, w, n, kg, ke, blur, seed):
    ua, ca, ub, cb = four(n=n, h=h, w=w, seed=seed)
    fused, mask = snb.blend(ua, ca, ub, cb, 7.0, kg, ke, blur=blur)
    assert mask.shape == (n, 1, h, w)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    eps_a, eps_b = ua + 7 * (ca - ua), ub + 7 * (cb - ub)
    chosen = torch.where(mask.bool(), eps_b, eps_a)
    assert torch.equal(fused, chosen)


@pytest.mark.parametrize("rule", ["hard", "soft"])
def test_both_models_maps_made_in_one_stacked_call_equal_each_made_alone(rule):
    """fuse_guided blurs and softmaxes A's and B's maps as one stacked batch. With the official
    box blur (a pooling of each plane on its own) that is bit for bit the maps and mask each
    model's own call gives; a convolution blur may round its last bit differently at another
    batch size on some CPUs, so the Gaussians are checked to that bit and the mask off near-ties."""
    generator = torch.Generator().manual_seed(3)
    response_a, response_b = torch.randn(2, 3, 4, 12, 10, generator=generator)
    eps_a, eps_b = torch.randn(2, 3, 4, 12, 10, generator=generator)
    for blur in ("box", "gaussian3"):
        fused = snb.fuse_guided(eps_a, eps_b, response_a, response_b, 1.3, 0.7, blur, rule)
        sal_a, sal_b = snb.saliency(response_a, blur), snb.saliency(response_b, blur)
        la, lb = snb.spatial_softmax(sal_a, 1.3), snb.spatial_softmax(sal_b, 0.7)
        if blur == "box":
            assert torch.equal(fused.saliency_a, sal_a) and torch.equal(fused.saliency_b, sal_b)
        else:
            assert torch.allclose(fused.saliency_a, sal_a, rtol=1e-6, atol=0) and torch.allclose(fused.saliency_b, sal_b, rtol=1e-6, atol=0)
        if rule == "hard":
            decided = (la - lb).abs() > 1e-5 * torch.maximum(la, lb)
            assert torch.equal(fused.mask[decided], (lb > la).float()[decided])
        else:
            assert torch.allclose(fused.mask, lb / (la + lb), atol=1e-6)  # the share through log-softmax: same value, other rounding


def restated_many(guided, responses, factors):
    """SNB over several models written out again: each model's blurred saliency (official box),
    its spatial softmax, then per pixel the first model with the largest value."""
    values = []
    for response, factor in zip(responses, factors):
        h, w = response.shape[-2:]
        pooled = F.avg_pool2d(response.abs(), kernel_size=4, stride=1, padding=1, count_include_pad=True)
        sal = F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False).mean(dim=1, keepdim=True)
        n = sal.shape[0]
        values.append(torch.softmax(factor * sal.reshape(n, -1), dim=1).reshape(n, 1, h, w))
    stacked = torch.stack(values)
    best = stacked.max(dim=0).values
    first = (stacked == best).float().argmax(dim=0)  # argmax of the 0/1 map: the earliest index reaching the max
    return torch.gather(torch.stack(guided), 0, first[None].expand(1, *guided[0].shape))[0], first, stacked


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), kg=st.floats(0.2, 5.0), ke=st.floats(0.2, 5.0))
def test_two_models_through_the_many_model_rule_are_snb_bit_for_bit(seed, kg, ke):
    eps_a, eps_b, response_a, response_b = four(n=2, h=16, w=24, seed=seed)
    two = snb.fuse_guided(eps_a, eps_b, response_a, response_b, kg, ke)
    many = snb.fuse_many([eps_a, eps_b], [response_a, response_b], [kg, ke])
    assert torch.equal(many.prediction, two.prediction)
    assert torch.equal(many.choice.float(), two.mask)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), factors=st.lists(st.floats(0.2, 5.0), min_size=3, max_size=5))
def test_several_models_pick_per_pixel_as_the_restated_rule(seed, factors):
    g = torch.Generator().manual_seed(seed)
    guided = [torch.randn(2, 4, 12, 16, generator=g) for _ in factors]
    responses = [torch.randn(2, 4, 12, 16, generator=g) * (1 + k) for k in range(len(factors))]
    fused = snb.fuse_many(guided, responses, factors)
    expected, choice, values = restated_many(guided, responses, factors)
    # The blur of a stacked batch may round its last bit otherwise than one map at a time:
    # only where two models' values tie to within that rounding may the choice differ.
    top2 = values.topk(2, dim=0).values
    clear = ((top2[0] - top2[1]) > 1e-6 * top2[0]).expand_as(expected)
    assert torch.equal(fused.choice.expand_as(expected)[clear], choice.expand_as(expected)[clear])
    assert torch.equal(fused.prediction[clear], expected[clear])


def test_ties_go_to_the_earlier_model_and_each_model_can_win():
    flat = torch.zeros(1, 4, 8, 8)
    guided = [torch.full((1, 4, 8, 8), float(m)) for m in range(3)]
    assert torch.equal(snb.fuse_many(guided, [flat, flat, flat], [1.0, 1.0, 1.0]).prediction, guided[0])  # all tie: model 0
    responses = [flat.clone() for _ in range(3)]
    responses[1][..., :, :3] = 5.0  # model 1 salient on the left, model 2 on the right
    responses[2][..., :, 5:] = 5.0
    choice = snb.fuse_many(guided, responses, [1.0, 1.0, 1.0]).choice[0, 0]
    assert set(choice.unique().tolist()) == {0, 1, 2}
    assert (choice[:, 0] == 1).all() and (choice[:, -1] == 2).all()


@given(seed=st.integers(0, 1000), rule=st.sampled_from(["soft", "mean"]))
def test_soft_and_mean_weights_are_shares_that_sum_to_one(seed, rule):
    g = torch.Generator().manual_seed(seed)
    guided = [torch.randn(1, 4, 8, 8, generator=g) for _ in range(3)]
    responses = [torch.randn(1, 4, 8, 8, generator=g) for _ in range(3)]
    fused = snb.fuse_many(guided, responses, [1.0, 2.0, 3.0], rule=rule)
    assert torch.allclose(fused.weights.sum(dim=0), torch.ones(1)) and (fused.weights >= 0).all()
    # Three products and two sums of values up to max|eps|: a few float32 roundings of that size.
    rounding = 8 * torch.finfo(torch.float32).eps * max(float(eps.abs().max()) for eps in guided)
    assert torch.allclose(fused.prediction, sum(w * e for w, e in zip(fused.weights, guided)), rtol=0, atol=rounding)
    if rule == "mean":
        assert torch.allclose(fused.prediction, sum(guided) / 3, rtol=0, atol=rounding)

"""The two extra rules against independent restatements of their papers' equations."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_fusion.fusion import guidance, snb


def tensors(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 6, 6, generator=g) for _ in range(n)]


@settings(max_examples=30, deadline=None)
@given(st.floats(0.5, 15), st.floats(0, 5), st.integers(0, 1000))
def test_cross_model_guidance_is_autoguidance_on_top_of_cfg(scale, weight, seed):
    u_a, c_a, c_b = tensors(3, seed)
    conds_list = [[(0, 1.0)], [(1, 1.0)]]
    guided_a = guidance.combine(u_a, c_a, conds_list, scale)
    got = guidance.cross_model_guidance(
        guided_a, guidance.combine(u_a, c_a, conds_list, 1.0), guidance.combine(u_a, c_b, conds_list, 1.0), weight
    )
    # Karras et al. 2024 with CFG: D = D_A(u) + s (D_A(c) - D_A(u)) + (w - 1) (D_A(c) - D_B(c))
    expected = u_a + scale * (c_a - u_a) + (weight - 1) * (c_a - c_b)
    assert torch.allclose(got, expected, atol=1e-4 * (1 + expected.abs().max()))


def test_weight_one_is_plain_cfg_exactly():
    u_a, c_a, c_b = tensors(3, 1)
    conds_list = [[(0, 1.0)], [(1, 0.7)]]
    guided_a = guidance.combine(u_a, c_a, conds_list, 7.5)
    out = guidance.cross_model_guidance(
        guided_a, guidance.combine(u_a, c_a, conds_list, 1.0), guidance.combine(u_a, c_b, conds_list, 1.0), 1.0
    )
    assert torch.equal(out, guided_a)


def test_and_subprompts_enter_the_guidance_term_with_their_weights():
    u_a, c_a0, c_a1, c_b0, c_b1 = (t[:1] for t in tensors(5, 2))
    conds_list = [[(0, 1.0), (1, 0.5)]]
    pos_a = guidance.combine(u_a, torch.cat([c_a0, c_a1]), conds_list, 1.0)
    pos_b = guidance.combine(u_a, torch.cat([c_b0, c_b1]), conds_list, 1.0)
    assert torch.allclose(pos_a - pos_b, (c_a0 - c_b0) + 0.5 * (c_a1 - c_b1), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.5, 15), st.integers(0, 1000))
def test_base_uncond_is_cfg_around_bs_uncond(scale, seed):
    u_b, c_a = tensors(2, seed)
    got = guidance.base_uncond(u_b, c_a, [[(0, 1.0)], [(1, 1.0)]], scale)
    expected = u_b + scale * (c_a - u_b)  # "Unconditional Priors Matter": D = D_B(u) + s (D_A(c) - D_B(u))
    assert torch.allclose(got, expected, atol=1e-4 * (1 + expected.abs().max()))


def test_the_mean_mask_is_the_composite_and_a_model_with_itself_is_itself():
    a, b, ra, rb = tensors(4, 3)
    fused = snb.fuse_guided(a, b, ra, rb, 1.0, 1.0, rule="mean")
    assert torch.allclose(fused.prediction, (a + b) / 2, atol=1e-6)
    assert torch.equal(snb.fuse_guided(a, a.clone(), ra, rb, 1.0, 1.0, rule="mean").prediction, a)


def test_per_channel_masks_follow_each_channels_saliency():
    a, b = torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 8, 8)
    ra, rb = torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    ra[:, 0, :, :4] = 5.0  # A salient on the left of channel 0 only
    rb[:, 1, :, 4:] = 5.0  # B salient on the right of channel 1 only
    fused = snb.fuse_guided(a, b, ra, rb, 1.0, 1.0, blur="gaussian3", per_channel=True)
    assert fused.mask.shape == (1, 4, 8, 8)
    assert fused.mask[0, 1, :, 5:].all() and not fused.mask[0, 0, :, :3].any()
    # 3x3 Gaussian, sigma 0.8: the weights OpenCV gives a 3-tap kernel
    kernel = torch.exp(-0.5 * (torch.tensor([-1.0, 0.0, 1.0]) / 0.8) ** 2)
    kernel = kernel / kernel.sum()
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[..., 2, 2] = 1
    assert torch.allclose(snb.saliency(impulse, "gaussian3", per_channel=True)[0, 0, 1:4, 1:4], kernel[:, None] * kernel[None], atol=1e-6)


def test_the_temporal_mask_averages_saliency_and_freezes():
    a, b = torch.zeros(1, 4, 8, 8), torch.ones(1, 4, 8, 8)
    memory = snb.MaskMemory(decay=0.5, freeze_after=2)
    left, right = torch.zeros(1, 4, 8, 8), torch.zeros(1, 4, 8, 8)
    left[..., :4], right[..., 4:] = 3.0, 3.0
    first = snb.fuse_guided(a, b, torch.zeros_like(a), left, 1.0, 1.0, memory=memory)
    second = snb.fuse_guided(a, b, torch.zeros_like(a), right, 1.0, 1.0, memory=memory)
    # The second step's B saliency is the mean of left and right: flat, so no pixel strictly wins.
    expected = snb.saliency(left) * 0.5 + snb.saliency(right) * 0.5
    assert torch.allclose(second.saliency_b, expected)
    third = snb.fuse_guided(a, b, torch.zeros_like(a), left, 1.0, 1.0, memory=memory)
    assert torch.equal(third.mask, second.mask) and not torch.equal(first.mask, second.mask)


def test_the_soft_mask_stays_finite_where_both_softmaxes_underflow():
    a, b, ra, rb = tensors(4, 5)
    fused = snb.fuse_guided(a, b, ra * 5, rb * 5, 1000.0, 1000.0, rule="soft")
    assert torch.isfinite(fused.mask).all() and torch.isfinite(fused.prediction).all()
    sal_a, sal_b = snb.saliency(ra), snb.saliency(rb)
    la, lb = snb.spatial_softmax(sal_a, 1.0), snb.spatial_softmax(sal_b, 1.3)
    assert torch.allclose(snb.saliency_mask(sal_a, sal_b, 1.0, 1.3, "soft"), lb / (la + lb), atol=1e-6)  # the same share


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.floats(0.1, 2), min_size=1, max_size=3), min_size=1, max_size=3),
    st.sampled_from([0.0, 1.0, 3.0, 7.5]),
    st.integers(0, 1000),
)
def test_forges_weighted_mean_is_the_same_cfg_as_automatic1111s_sum(weights, scale, seed):
    """Forge averages the ``AND`` sub-prompts by weight and scales the difference by their sum;
    AUTOMATIC1111 adds each weighted difference: the same ``u + s sum_j w_j (c_j - u)``, but at
    CFG 1, where Forge runs no uncond and its shortcut gives ``sum_j w_j c_j``."""
    g = torch.Generator().manual_seed(seed)
    rows = sum(len(image) for image in weights)
    uncond, cond_rows = torch.randn(len(weights), 4, 5, 5, generator=g), torch.randn(rows, 4, 5, 5, generator=g)
    conds_list, row = [], 0
    for image in weights:
        conds_list.append([(row + j, weight) for j, weight in enumerate(image)])
        row += len(image)
    forge = guidance.combine(uncond, cond_rows, conds_list, scale, "weighted_mean")
    expected = []
    for i, conds in enumerate(conds_list):
        if scale == 1.0:
            expected.append(sum(weight * cond_rows[r] for r, weight in conds))
        else:
            expected.append(uncond[i] + scale * sum(weight * (cond_rows[r] - uncond[i]) for r, weight in conds))
    expected = torch.stack(expected)
    assert torch.allclose(forge, expected, rtol=1e-5, atol=1e-4 * (1 + float(expected.abs().max())))
    if scale != 1.0:
        automatic = guidance.combine(uncond, cond_rows, conds_list, scale)
        assert torch.allclose(forge, automatic, rtol=1e-5, atol=1e-4 * (1 + float(expected.abs().max())))

"""The arithmetic behind "no fusion that does nothing wears the label": a further
checkpoint's window edges decided exactly as the decimals were written, and the advice a
refusal gives (a v1 that fuses about the share the user's window meant) always fuses."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from lib_fusion.arguments.args import FusionArgs
from lib_fusion.arguments.model_args import FusionModelArgs
from lib_fusion.arguments.schedule import StepKind, is_fused
from lib_fusion.engine.fused_steps import never_fused, suggested_v1
from lib_fusion.engine.sampling_pass import FUSED, Stats

thousandths = st.integers(min_value=0, max_value=1000)


@given(thousandths, thousandths, st.integers(min_value=0, max_value=1000))
def test_window_edges_are_the_decimals_as_written(a, b, t):
    """``1000 * (1 - 0.399)`` is 601.0000000000001 in floats; an edge is inclusive, so the
    step at t = 601 must join [0.199, 0.399] (checked against exact decimal arithmetic)."""
    start, end = sorted((a, b))
    if start == end:
        return
    window = [float(Decimal(start) / 1000), float(Decimal(end) / 1000)]
    entry = FusionModelArgs(model="x", window=window)
    exact = 1000 * (1 - Decimal(end) / 1000) <= t <= 1000 * (1 - Decimal(start) / 1000)
    assert entry.joins(float(t)) == exact


def test_the_edge_that_floats_miss():
    assert FusionModelArgs(model="x", window=[0.199, 0.399]).joins(601.0)


steps = st.lists(st.floats(min_value=0, max_value=999, allow_nan=False), min_size=1, max_size=60)


@given(steps, st.integers(min_value=0, max_value=1000), st.sampled_from([1, 2]))
def test_the_suggested_v1_fuses_what_it_says(seen, v1, mode):
    args = FusionArgs(enabled=True, model="x", fusion_selection=f"{v1},1,1", mode=mode)
    advice = suggested_v1(args, seen)
    if advice is None:  # only when no v1 can fuse the steps apart (none does for mode 1 at t > 999)
        return
    new_v1, count = advice
    assert count == sum(is_fused(t, new_v1, mode) for t in seen) >= 1
    assert 0 <= new_v1 <= 1000


@given(st.lists(st.integers(min_value=0, max_value=999).map(float), min_size=1, max_size=60, unique=True), st.sampled_from([1, 2]))
def test_the_advice_keeps_the_share_of_the_denoising_the_window_meant(seen, mode):
    """'600' with mode 2 meant the first 40 %: the advice fuses the first 40 % of these steps
    (at least one), counted exactly when the steps' timesteps are distinct whole numbers."""
    args = FusionArgs(enabled=True, model="x", fusion_selection="600,1,1", mode=mode)
    new_v1, count = suggested_v1(args, seen)
    share = 0.4 if mode == 2 else 0.6
    assert count == max(1, round(share * len(seen)))
    fused = sorted((t for t in seen if is_fused(t, new_v1, mode)), reverse=mode == 2)
    assert fused == sorted(seen, reverse=mode == 2)[:count]


def stats_of(kinds, timesteps, more=()):
    stats = Stats(timesteps=list(timesteps), kinds=[kind.value for kind in kinds], variants=[FUSED] * len(kinds))
    stats.more_runs.update(more)
    return stats


def test_never_fused_names_the_steps_and_is_quiet_when_a_step_fused():
    args = FusionArgs(enabled=True, model="x", fusion_selection="600,1,1", mode=2)
    solo = stats_of([StepKind.SOLO] * 3, [500.0, 300.0, 100.0])
    assert never_fused(args, solo).startswith("Model Fusion: no step fell inside the fusion window")
    assert "t = 500 down to 100" in never_fused(args, solo)
    assert never_fused(args, stats_of([StepKind.FUSED, StepKind.SOLO], [700.0, 300.0])) is None
    assert never_fused(args, stats_of([], [])) is None  # nothing sampled (interrupted before the first step)


def test_never_fused_leaves_alone_what_is_one_model_on_purpose_and_regions():
    solo = stats_of([StepKind.SOLO] * 2, [500.0, 100.0])
    for fields in ({"mode": 0, "solo": "fusion"}, {"method": "guidance", "guidance_weight": 1.0, "solo": "fusion"}, {"method": "regions"}):
        assert never_fused(FusionArgs(enabled=True, model="x", **fields), solo) is None


def test_a_further_checkpoint_that_joined_nothing_is_named_by_place():
    args = FusionArgs(enabled=True, model="x", models=[{"model": "c"}, {"model": "d", "window": [0.9, 1.0]}])
    fused = stats_of([StepKind.FUSED, StepKind.SOLO], [900.0, 100.0], more={"c": 1})
    assert never_fused(args, fused).startswith("Model Fusion: models[1].model 'd' joined no fused step: its window [0.9, 1.0]")

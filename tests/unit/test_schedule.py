import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib_fusion.arguments.schedule import StepKind, format_fusion_selection, is_fused, parse_fusion_selection, step_kind


def test_parse_official_examples():
    assert parse_fusion_selection("600,1,1") == (600.0, 1.0, 1.0)
    assert parse_fusion_selection(" 850 , 1.5 ,2 ") == (850.0, 1.5, 2.0)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("600", "three comma-separated"),
        ("600,1", "three comma-separated"),
        ("600,1,1,1", "three comma-separated"),
        ("a,b,c", "v1='a' is not a number"),
        ("600,x,1", "kg='x' is not a number"),
        ("600,-1,1", "kg=-1 must be in [1e-06, 1000]"),
        ("600,1,0", "ke=0 must be in [1e-06, 1000]"),
        ("nan,1,1", "v1=nan must be finite"),
        ("600,inf,1", "kg=inf must be finite"),
        ("1e9,1,1", "v1=1e+09 must be a DDPM timestep"),
        ("-1,1,1", "v1=-1 must be a DDPM timestep"),
        ("600,,1", "three comma-separated"),
    ],
)
def test_parse_rejects_with_a_message_naming_the_part(text, fragment):
    with pytest.raises(ValueError) as error:
        parse_fusion_selection(text)
    assert fragment in str(error.value)
    assert text in str(error.value) or fragment.startswith("three")


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError, match="string"):
        parse_fusion_selection(600)  # type: ignore[arg-type]


def test_official_lion_schedule_at_100_ddim_steps():
    """600,1,1 mode 2 with t = 991, 981, ..., 1: 40 fused steps, then 60 of A."""
    timesteps = list(range(991, 0, -10))
    kinds = [step_kind(t, 600, 2) for t in timesteps]
    assert kinds.count(StepKind.FUSED) == 40
    assert kinds[:40] == [StepKind.FUSED] * 40 and kinds[40:] == [StepKind.SOLO] * 60


def test_strict_comparison_at_the_edge():
    assert is_fused(600, 600, 1) and not is_fused(600, 600, 2)
    assert is_fused(600.0001, 600, 2) and not is_fused(600.0001, 600, 1)


def test_the_ends_of_v1_mean_never_and_always_on_every_sampler():
    """k-diffusion samplers reach t = 0 (Euler's last step); the official DDIM stops at t = 1."""
    ends = [0.0, 0.5, 1.0, 11.0, 500.0, 998.9, 999.0]
    assert not any(is_fused(t, 0, 1) for t in ends) and all(is_fused(t, 0, 2) for t in ends)
    assert all(is_fused(t, 1000, 1) for t in ends) and not any(is_fused(t, 1000, 2) for t in ends)
    assert is_fused(0.0, 0.5, 1) and not is_fused(0.0, 0.5, 2)  # only v1 = 0 itself is the end


def test_mode_zero_never_fuses_and_bad_mode_raises():
    assert not any(is_fused(t, 500, 0) for t in range(0, 1000, 7))
    with pytest.raises(ValueError, match="mode"):
        is_fused(10, 5, 3)


@given(st.floats(0, 1000), st.floats(0, 1000))
def test_modes_one_and_two_are_complementary(t, v1):
    assert is_fused(t, v1, 1) != is_fused(t, v1, 2)


@given(st.floats(0, 1000, allow_nan=False), st.floats(1e-3, 1000), st.floats(1e-3, 1000))
def test_format_round_trips_exactly(v1, kg, ke):
    assert parse_fusion_selection(format_fusion_selection(v1, kg, ke)) == (v1, kg, ke)
    assert not math.isnan(v1)

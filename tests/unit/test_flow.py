"""Rectified flow's terms (``lib_fusion.fusion.flow``) by their properties: the eps response
is the derivative of the flow's eps in its x0, and a step's DDPM timestep is 1000 times its
share of the family's own time, whatever the shift."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lib_fusion.fusion.denoise import StepInput, eps_response
from lib_fusion.fusion.flow import ddpm_timestep, eps_per_x0


def sd3_table(shift: float, count: int = 1000) -> torch.Tensor:
    """Neo's ``PredictionDiscreteFlow`` table: ``shift u / (1 + (shift - 1) u)`` at ``u = k / N``."""
    u = torch.arange(1, count + 1, dtype=torch.float32) / count
    return shift * u / (1 + (shift - 1) * u)


def flux_table(mu: float, count: int = 10000) -> torch.Tensor:
    """Neo's ``PredictionFlux`` table: ``e^mu / (e^mu + 1 / u - 1)``."""
    u = torch.arange(1, count + 1, dtype=torch.float32) / count
    return math.exp(mu) / (math.exp(mu) + (1 / u - 1))


def eps_of(x: torch.Tensor, x0: torch.Tensor, sigma: float) -> torch.Tensor:
    """From ``x = (1 - sigma) x0 + sigma eps``."""
    return (x - (1 - sigma) * x0) / sigma


@given(sigma=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
def test_the_eps_response_of_a_flow_is_the_change_of_its_eps(sigma, seed):
    """Two x0 predictions at one latent differ in eps by ``(1 - sigma) / sigma`` times their
    difference (the sign drops out of the saliency's ``|d|``)."""
    generator = torch.Generator().manual_seed(seed)
    x, x0_a, x0_b = (torch.randn(1, 4, 3, 3, generator=generator, dtype=torch.float64) for _ in range(3))
    step = StepInput(x, torch.tensor([sigma], dtype=torch.float64), x, x, 5.0, "x0", flow=True)
    change = eps_of(x, x0_a, sigma) - eps_of(x, x0_b, sigma)
    assert torch.allclose(eps_response(x0_a - x0_b, step).abs(), change.abs(), rtol=1e-9, atol=1e-12)


def test_at_sigma_1_no_response_survives_and_sd_units_are_unchanged():
    """Pure noise: every x0 gives the same eps, so the response is exactly 0; the Stable
    Diffusion families' conversion is still ``d_x0 / sigma``."""
    response = torch.ones(1, 4, 2, 2)
    assert torch.equal(eps_per_x0(torch.tensor([1.0])), torch.tensor([0.0]))
    assert torch.equal(
        eps_response(response, StepInput(response, torch.tensor([1.0]), response, response, 5.0, "x0", flow=True)), response * 0
    )
    sd = StepInput(response, torch.tensor([2.0]), response, response, 5.0, "x0")
    assert torch.equal(eps_response(response, sd), response / 2.0)


@settings(max_examples=200)
@given(share=st.floats(0.0, 1.0), shift=st.floats(0.5, 12.0), flux=st.booleans())
def test_a_steps_timestep_is_its_share_of_the_familys_time(share, shift, flux):
    """Any shift reads back: ``t = 1000 u`` for the noise level ``S(u)``, within a hundredth of
    a timestep (linear between the table's entries), exactly 0 and 1000 at the ends."""
    u = torch.tensor([share], dtype=torch.float64)
    if flux:
        mu = math.log(shift)
        table, sigma = flux_table(mu), (math.exp(mu) / (math.exp(mu) + (1 / u - 1))) if share > 0 else u
    else:
        table, sigma = sd3_table(shift), shift * u / (1 + (shift - 1) * u)
    t = float(ddpm_timestep(table, sigma.float())[0])
    assert abs(t - 1000 * share) <= 0.01 + 1000 * share * 2e-6  # float32 sigmas: a few ulps of u


@given(shift=st.floats(0.5, 12.0))
def test_the_tables_own_entries_read_back_exactly_and_in_order(shift):
    table = sd3_table(shift)
    t = ddpm_timestep(table, table[[0, 99, 599, 999]])
    assert t.tolist() == [1.0, 100.0, 600.0, 1000.0]
    sigmas = torch.linspace(0, 1, 101)
    assert bool((ddpm_timestep(table, sigmas).diff() >= 0).all())
    assert float(ddpm_timestep(table, torch.tensor([0.0]))[0]) == 0.0

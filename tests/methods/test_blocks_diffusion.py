"""DDPM schedule, forward noising, posterior and ancestral sampler against hand-computed formulas (float64 numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from methods.blocks.diffusion import DDPMSchedule

T = 2000


@pytest.fixture(scope="module")
def schedule() -> DDPMSchedule:
    return DDPMSchedule(T, 1e-4, 0.02)


def _beta(t: int) -> float:
    return 1e-4 + t * (0.02 - 1e-4) / (T - 1)


def _abar(t: int) -> float:
    return float(np.prod([1.0 - _beta(s) for s in range(t + 1)]))


def test_linear_betas_and_cumulative_alphas(schedule: DDPMSchedule) -> None:
    assert schedule.num_steps == T
    for t in (0, 1, 999, 1999):
        assert schedule.betas[t].item() == pytest.approx(_beta(t), rel=1e-6)
        assert schedule.alphas[t].item() == pytest.approx(1 - _beta(t), rel=1e-7)
    assert schedule.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4, rel=1e-7)
    assert schedule.alphas_cumprod[1].item() == pytest.approx((1 - 1e-4) * (1 - _beta(1)), rel=1e-7)
    # abar_999 = 0.006353..., abar_1999 = 4.04e-9 (float32 cumprod drifts slowly: 1e-4 relative is plenty)
    assert schedule.alphas_cumprod[999].item() == pytest.approx(_abar(999), rel=1e-4)
    assert schedule.alphas_cumprod[1999].item() == pytest.approx(_abar(1999), rel=1e-3)
    assert schedule.state_dict() == {}  # schedule tensors are non-persistent buffers


def test_q_sample_is_the_closed_form(schedule: DDPMSchedule) -> None:
    x0, noise = torch.randn(3, 4, 3), torch.randn(3, 4, 3)
    t = torch.tensor([0, 500, 1999])
    out = schedule.q_sample(x0, t, noise)
    for i, ti in enumerate(t.tolist()):
        a = _abar(ti)
        expected = math.sqrt(a) * x0[i].double() + math.sqrt(1 - a) * noise[i].double()
        torch.testing.assert_close(out[i].double(), expected, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("t", [1, 10, 1500])
def test_posterior_mean_and_variance(schedule: DDPMSchedule, t: int) -> None:
    x_t, x0 = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mean, variance = schedule.posterior(x_t, x0, t)
    beta, a_t, a_prev = _beta(t), _abar(t), _abar(t - 1)
    expected_mean = (
        math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x_t.double()
        + math.sqrt(a_prev) * beta / (1 - a_t) * x0.double()
    )
    torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-5, atol=1e-6)
    assert variance == pytest.approx(beta * (1 - a_prev) / (1 - a_t), rel=1e-9)


def test_last_step_returns_x0_without_noise(schedule: DDPMSchedule) -> None:
    x_t, x0 = torch.randn(4, 3), torch.randn(4, 3)
    mean, variance = schedule.posterior(x_t, x0, 0)
    torch.testing.assert_close(mean, x0)
    assert variance == 0.0
    torch.testing.assert_close(schedule.p_sample(x_t, x0, 0), x0)


def test_one_ancestral_step_matches_the_formula(schedule: DDPMSchedule) -> None:
    t = 700
    x_t, x0 = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    out = schedule.p_sample(x_t, x0, t, generator=torch.Generator().manual_seed(3))
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(3))
    beta, a_t, a_prev = _beta(t), _abar(t), _abar(t - 1)
    mean = math.sqrt(1 - beta) * (1 - a_prev) / (1 - a_t) * x_t.double() + math.sqrt(a_prev) * beta / (1 - a_t) * x0
    expected = mean + math.sqrt(beta * (1 - a_prev) / (1 - a_t)) * z.double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)


def test_respaced_step_reduces_to_the_plain_step(schedule: DDPMSchedule) -> None:
    """The strided posterior (alpha = abar_t / abar_t') equals the plain one at t' = t - 1, and a 2-step stride
    uses the composed alpha_t alpha_{t-1}."""
    plain = schedule.step_coefficients(900, 899)
    a_t, a_prev = _abar(900), _abar(899)
    alpha = a_t / a_prev
    expected = (math.sqrt(alpha) * (1 - a_prev) / (1 - a_t), math.sqrt(a_prev) * (1 - alpha) / (1 - a_t),
                (1 - alpha) * (1 - a_prev) / (1 - a_t))  # fmt: skip
    assert plain == pytest.approx(expected, rel=1e-9)
    a_prev2 = _abar(898)
    alpha2 = (1 - _beta(900)) * (1 - _beta(899))
    strided = schedule.step_coefficients(900, 898)
    assert strided == pytest.approx(
        (math.sqrt(alpha2) * (1 - a_prev2) / (1 - a_t), math.sqrt(a_prev2) * (1 - alpha2) / (1 - a_t),
         (1 - alpha2) * (1 - a_prev2) / (1 - a_t)), rel=1e-9,
    )  # fmt: skip


def test_timesteps_and_sampler(schedule: DDPMSchedule) -> None:
    assert schedule.timesteps(5) == [1999, 1499, 1000, 500, 0]
    full = schedule.timesteps()
    assert len(full) == T and full[0] == T - 1 and full[-1] == 0
    target = torch.randn(2, 4, 3)
    seen: list[int] = []

    def predict(x: torch.Tensor, t: int) -> torch.Tensor:
        seen.append(t)
        return target

    out = schedule.sample((2, 4, 3), predict, steps=5, generator=torch.Generator().manual_seed(0))
    assert seen == [1999, 1499, 1000, 500, 0]
    torch.testing.assert_close(out, target)  # the last step returns the x0 prediction


def test_invalid_arguments(schedule: DDPMSchedule) -> None:
    with pytest.raises(ValueError, match="num_steps"):
        DDPMSchedule(0)
    with pytest.raises(ValueError, match="t_prev"):
        schedule.step_coefficients(5, 5)
    with pytest.raises(ValueError, match="steps"):
        schedule.timesteps(0)

"""DDPM (Ho et al., 2020) noise schedule, forward noising, posterior and ancestral sampler, x0-parametrised.

Conventions (as Point-MaDi's ``q_sample`` / ``p_sample_*``):
- Timesteps are 0-based, t in {0, ..., T-1}; betas = linspace(beta_start, beta_end, T) in float32,
  alphas = 1 - betas, alphas_cumprod[t] = prod_{s<=t} alphas[s] (so alphas_cumprod[0] = alphas[0]).
- ``q_sample``: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; ``t`` is one timestep per sample (dim 0).
- The network predicts x0 (not eps). Posterior q(x_{t'} | x_t, x0) from t to t' < t with
  abar' = abar_{t'} (1 at t' = -1), a = abar_t / abar' (= alphas[t] when t' = t - 1), b = 1 - a:
  mean = sqrt(a) (1 - abar') / (1 - abar_t) x_t + sqrt(abar') b / (1 - abar_t) x0,
  variance = b (1 - abar') / (1 - abar_t) (the "beta tilde" choice). The last step (t' = -1) adds no noise.
- ``sample`` runs t = T-1, ..., 0 (every step) or ``steps`` evenly spaced timesteps (respaced DDPM).
- Schedule tensors are float32 non-persistent buffers (as the reference's; ``q_sample`` uses them): they follow
  ``.to(device)`` but stay out of state dicts. The sampler's posterior coefficients are computed in float64
  (near t = 0, 1 - abar_t ~ 1e-4 keeps only ~3 significant digits in float32).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

#: x0-predictor of the sampler: (x_t, t) -> predicted x0 of x_t's shape
X0Predictor = Callable[[Tensor, int], Tensor]


class DDPMSchedule(nn.Module):
    """Linear-beta DDPM schedule over ``num_steps`` timesteps (see the module docstring)."""

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor

    def __init__(self, num_steps: int = 2000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__()
        if num_steps < 1 or not 0.0 < beta_start <= beta_end < 1.0:
            raise ValueError(
                f"DDPM schedule needs num_steps >= 1 and 0 < beta_start <= beta_end < 1, got num_steps={num_steps}, "
                f"beta_start={beta_start}, beta_end={beta_end}"
            )
        betas = torch.linspace(beta_start, beta_end, num_steps)
        alphas = 1.0 - betas
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas", alphas, persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(alphas, dim=0), persistent=False)
        self._betas64 = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
        self._abar64 = np.cumprod(1.0 - self._betas64)

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    def sample_timesteps(self, batch: int, device: torch.device | str | None = None) -> Tensor:
        """One timestep per sample, uniform on {0, ..., T-1} (global RNG): (batch,) int64."""
        return torch.randint(0, self.num_steps, (batch,), device=device)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, ``t`` (B,) indexing dim 0 of ``x0`` (B, ...)."""
        abar = self.alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
        return torch.sqrt(abar) * x0 + torch.sqrt(1 - abar) * noise

    def step_coefficients(self, t: int, t_prev: int) -> tuple[float, float, float]:
        """(coef of x_t, coef of x0, variance) of q(x_{t_prev} | x_t, x0); ``t_prev = -1`` is the clean end."""
        if not -1 <= t_prev < t < self.num_steps:
            raise ValueError(f"posterior step needs -1 <= t_prev < t < {self.num_steps}, got t={t}, t_prev={t_prev}")
        abar_t = float(self._abar64[t])
        abar_prev = float(self._abar64[t_prev]) if t_prev >= 0 else 1.0
        beta = float(self._betas64[t]) if t_prev == t - 1 else 1.0 - abar_t / abar_prev
        coef_xt = (1.0 - beta) ** 0.5 * (1.0 - abar_prev) / (1.0 - abar_t)
        coef_x0 = abar_prev**0.5 * beta / (1.0 - abar_t)
        variance = beta * (1.0 - abar_prev) / (1.0 - abar_t)
        return coef_xt, coef_x0, variance

    def posterior(self, x_t: Tensor, x0: Tensor, t: int, t_prev: int | None = None) -> tuple[Tensor, float]:
        """Mean and variance of q(x_{t_prev} | x_t, x0); ``t_prev`` defaults to ``t - 1``."""
        coef_xt, coef_x0, variance = self.step_coefficients(t, t - 1 if t_prev is None else t_prev)
        return coef_xt * x_t + coef_x0 * x0, variance

    def p_sample(
        self, x_t: Tensor, x0: Tensor, t: int, t_prev: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """One ancestral step: posterior mean + sqrt(variance) z, z ~ N(0, I); no noise on the last step."""
        t_prev = t - 1 if t_prev is None else t_prev
        mean, variance = self.posterior(x_t, x0, t, t_prev)
        if t_prev < 0:
            return mean
        z = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype, device=x_t.device)
        return mean + variance**0.5 * z

    def timesteps(self, steps: int | None = None) -> list[int]:
        """Descending sampling timesteps: all T (``steps`` None or >= T) or ``steps`` evenly spaced ones."""
        if steps is None or steps >= self.num_steps:
            return list(range(self.num_steps - 1, -1, -1))
        if steps < 1:
            raise ValueError(f"the sampler needs steps >= 1, got {steps}")
        picked = torch.linspace(0, self.num_steps - 1, steps).round().long().unique().tolist()
        return sorted(picked, reverse=True)

    def sample(
        self,
        shape: tuple[int, ...],
        predict_x0: X0Predictor,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Ancestral sampling from x_T ~ N(0, I) of ``shape`` down to x0; ``predict_x0(x_t, t)`` is the model."""
        x = torch.randn(shape, generator=generator, device=device)
        ts = self.timesteps(steps)
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            x = self.p_sample(x, predict_x0(x, t), t, t_prev, generator)
        return x

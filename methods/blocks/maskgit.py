"""Mask-ratio schedules for masked generative training and MaskGIT-style iterative decoding (wave2.md 1.4, 1.5).

Mask-ratio schedules (:class:`MaskSchedule`, ``kind``):
- ``sliding`` (default): a truncated normal on [``low``, 1.0] whose mean and spread slide with training progress
  p = epoch / (epochs - 1) along s(p) = (1 - cos(pi p)) / 2: mean ``start`` -> ``end``, std ``start_std`` ->
  ``end_std``. It starts in Point-MAE's representation regime (about 0.6, narrow) and ends in the generative
  regime, whose support reaches 1.0, since sampling starts from an all-masked sequence. Defaults end at
  N(0.75, 0.25) on [0.5, 1]: 16.9% of the mass above 0.9 (MAGE's N(0.55, 0.25) puts 8.3% there).
- ``mage``: MAGE's fixed truncated normal (mean 0.55, std 0.25, on [0.5, 1.0]) at every epoch.
- ``sliding_exp``: the unofficial code's r(e) = max(beta, 1 - beta^(u e / (E - 1))), beta 0.5, u 2: it never
  exceeds 0.75, so it cannot train an all-masked start (kept as an ablation; the method warns).
- ``fixed``: ``start`` at every epoch.

MaskGIT decoding (:func:`maskgit_decode`): T steps; after step t the number of slots still masked is
floor(G cos(pi/2 (t+1)/T)) (0 after the last); every masked slot samples an id (temperature, top-k, top-p) and
the slots with the least confident samples stay masked, confidence = log p(sampled id) + Gumbel noise x
``choice_temperature`` x (1 - (t+1)/T) (MAGE's annealed choice temperature). All randomness comes from the
``generator`` passed in (a CPU generator: draws are made on the CPU and moved, so samples do not depend on the
device's RNG).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

SCHEDULES = ("sliding", "mage", "sliding_exp", "fixed")


@dataclass
class MaskSchedule:
    """The mask ratio of each training sample as a function of training progress (see the module docstring)."""

    kind: str = "sliding"
    start: float = 0.6
    end: float = 0.75
    start_std: float = 0.05
    end_std: float = 0.25
    low: float = 0.5
    beta: float = 0.5
    u: float = 2.0

    def check(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"mask.kind must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if not 0.0 <= self.low < 1.0 or not 0.0 < self.start <= 1.0:
            raise ValueError(f"mask.low must lie in [0, 1) and mask.start in (0, 1], got {self.low}, {self.start}")
        if self.kind == "sliding_exp":
            warnings.warn("mask.kind=sliding_exp never masks more than 75% of the slots, so sampling from an "
                          "all-masked sequence is out of distribution (wave2.md 0.3)", stacklevel=2)

    def progress(self, epoch: int, epochs: int) -> float:
        """s(p) in [0, 1] at ``epoch`` of ``epochs`` (cosine ease)."""
        p = epoch / (epochs - 1) if epochs > 1 else 1.0
        return (1 - math.cos(math.pi * min(max(p, 0.0), 1.0))) / 2

    def distribution(self, epoch: int, epochs: int) -> tuple[float, float, float, float]:
        """(mean, std, low, high) of the truncated normal at ``epoch`` (std 0: a point mass at the mean)."""
        if self.kind == "fixed":
            return self.start, 0.0, self.start, self.start
        if self.kind == "mage":
            return 0.55, 0.25, 0.5, 1.0
        if self.kind == "sliding_exp":
            value = max(self.beta, 1 - self.beta ** (self.u * epoch / max(epochs - 1, 1)))
            return value, 0.0, value, value
        s = self.progress(epoch, epochs)
        return (self.start + (self.end - self.start) * s, self.start_std + (self.end_std - self.start_std) * s,
                self.low, 1.0)

    def sample(self, epoch: int, epochs: int, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n,) mask ratios drawn for ``epoch`` (inverse-CDF truncated normal)."""
        mean, std, low, high = self.distribution(epoch, epochs)
        if std == 0.0:
            return torch.full((n,), mean)
        normal = torch.distributions.Normal(mean, std)
        lo, hi = normal.cdf(torch.tensor(low)), normal.cdf(torch.tensor(high))
        u = torch.rand(n, generator=generator)
        return normal.icdf(lo + (hi - lo) * u).clamp(low, high)

    def mass_above(self, threshold: float, epoch: int, epochs: int) -> float:
        """P(ratio > threshold) at ``epoch`` (exact, from the truncated normal's CDF)."""
        mean, std, low, high = self.distribution(epoch, epochs)
        if std == 0.0:
            return float(mean > threshold)
        normal = torch.distributions.Normal(mean, std)
        cdf = [float(normal.cdf(torch.tensor(x))) for x in (low, max(threshold, low), high)]
        return (cdf[2] - cdf[1]) / (cdf[2] - cdf[0])


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Keep the ``top_k`` largest logits (0: all) and the smallest set whose probability reaches ``top_p``
    (1.0: all); the rest become -inf. The most likely id always survives."""
    out = logits.clone()
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]
        out[out < kth] = float("-inf")
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # mass before this id already reaches top_p
        sorted_logits[drop] = float("-inf")
        out = torch.full_like(out, float("-inf")).scatter(-1, order, sorted_logits)
    return out


def sample_ids(logits: Tensor, temperature: float, top_k: int, top_p: float,
               generator: torch.Generator | None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(..., K) logits -> (sampled ids, their log-probabilities under the filtered, tempered distribution);
    temperature 0 takes the argmax."""
    filtered = filter_logits(logits.float(), top_k, top_p)
    if temperature <= 0:
        ids = filtered.argmax(-1)
        return ids, filtered.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    logp = (filtered / temperature).log_softmax(-1)
    flat = logp.reshape(-1, logp.shape[-1]).exp()
    ids = torch.multinomial(flat.cpu(), 1, generator=generator).to(logp.device).view(logp.shape[:-1])
    return ids, logp.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


@dataclass
class SamplerConfig:
    """MaskGIT sampler settings (MAGE ``gen_img_uncond.py`` defaults: 12 steps, choice temperature 4.5)."""

    steps: int = 12
    schedule: str = "cosine"  # cosine | linear: the share of slots still masked after each step
    temperature: float = 1.0  # token sampling temperature
    choice_temperature: float = 4.5  # Gumbel noise on the confidences, annealed by (1 - (t+1)/T)
    top_k: int = 0
    top_p: float = 1.0

    def check(self) -> None:
        if self.steps < 1 or self.schedule not in ("cosine", "linear"):
            raise ValueError(f"sampler.steps must be >= 1 and sampler.schedule cosine|linear, got {self.steps}, "
                             f"{self.schedule!r}")
        if not 0.0 < self.top_p <= 1.0 or self.top_k < 0:
            raise ValueError(f"sampler.top_p must lie in (0, 1] and top_k >= 0, got {self.top_p}, {self.top_k}")

    def still_masked(self, step: int, slots: int) -> int:
        """Slots left masked after 0-based ``step`` (0 after the last)."""
        frac = (step + 1) / self.steps
        share = math.cos(math.pi / 2 * frac) if self.schedule == "cosine" else 1 - frac
        return 0 if step + 1 >= self.steps else int(math.floor(slots * share + 1e-9))


#: (ids (n, G), centres (n, G, 3), known (n, G) bool) -> (id logits (n, G, K), centre predictions (n, G, 3))
Predictor = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def maskgit_decode(predict: Predictor, ids: Tensor, centers: Tensor, known: Tensor, cfg: SamplerConfig,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Fill every slot that is not ``known`` (see the module docstring); returns (ids, centres). Known slots
    (partial-shape completion) keep their ids and centres; the predictor must ignore the content of unknown
    slots (their ids and centres are placeholders)."""
    ids, centers, known = ids.clone(), centers.clone(), known.clone()
    n, slots = ids.shape
    for step in range(cfg.steps):
        logits, predicted = predict(ids, centers, known)
        sampled, logp = sample_ids(logits, cfg.temperature, cfg.top_k, cfg.top_p, generator)
        unknown = ~known
        keep_masked = [min(cfg.still_masked(step, slots), int(c)) for c in unknown.sum(1)]
        uniform = torch.rand(logp.shape, generator=generator).to(logp.device)  # a CPU generator on any device
        noise = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0)))
        anneal = cfg.choice_temperature * (1 - (step + 1) / cfg.steps)
        confidence = torch.where(unknown, logp + anneal * noise, torch.full_like(logp, float("inf")))
        order = confidence.argsort(dim=1)  # least confident first; known slots last
        fill = unknown.clone()
        for row in range(n):
            fill[row, order[row, : keep_masked[row]]] = False
        ids = torch.where(fill, sampled, ids)
        centers = torch.where(fill.unsqueeze(-1), predicted, centers)
        known = known | fill
    return ids, centers

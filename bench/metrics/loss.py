"""Held-out loss of a method's own pretext: the scaling study's metric (G3PT's test cross-entropy against model size;
wave2.md 2.2 item 7).

``test_loss`` is the mean over samples of a pretext loss evaluated on a held-out split: ``update(losses, counts)``
takes per-batch mean losses and the number of samples behind each, so the value is ``sum_b n_b * loss_b / sum_b
n_b`` (a smaller last batch weighs less; streaming equals one pass over everything). Lower is better. Unit: nats,
as a cross-entropy with the natural logarithm (``torch.nn.functional.cross_entropy``) is; a suite whose loss key is
not a cross-entropy says so in its yaml.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.metrics.base import MIN, Metric
from bench.registry import METRICS


@METRICS.register("test_loss")
class HeldOutLoss(Metric):
    """Sample-weighted mean of per-batch mean losses (see the module docstring); NaN when nothing was seen."""

    name, direction, unit = "test_loss", MIN, "nats"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._total = 0.0
        self._count = 0.0

    def update(self, preds: Tensor, target: Tensor) -> None:
        """``preds``: per-batch mean losses (a scalar or (k,)); ``target``: the samples behind each, same shape."""
        losses = torch.as_tensor(preds, dtype=torch.float64).detach().cpu().reshape(-1)
        counts = torch.as_tensor(target, dtype=torch.float64).detach().cpu().reshape(-1)
        if losses.shape != counts.shape:
            raise ValueError(f"test_loss: {losses.numel()} losses but {counts.numel()} sample counts")
        if (counts < 0).any():
            raise ValueError("test_loss: sample counts must be non-negative")
        self._total += float((losses * counts).sum())
        self._count += float(counts.sum())

    def compute(self) -> float:
        return self._total / self._count if self._count > 0 else float("nan")

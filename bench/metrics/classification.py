"""Classification metrics from a confusion matrix accumulated over batches.

- ``acc`` (overall accuracy, OA): correct / total over every test sample, in percent.
- ``macc`` (mean class accuracy): the mean over classes *present in the targets* of per-class recall, in percent.
Predictions may be logits / scores (B, C) (argmax taken) or class indices (B,).
"""

from __future__ import annotations

import torch
from torch import Tensor

from bench.metrics.base import Metric
from bench.registry import METRICS


class ConfusionMatrix(Metric):
    """Counts[i, j] = number of samples of true class i predicted as j."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.counts = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def update(self, preds: Tensor, target: Tensor) -> None:
        pred = preds.argmax(-1) if preds.dim() == target.dim() + 1 else preds
        pred, target = pred.reshape(-1).long().cpu(), target.reshape(-1).long().cpu()
        if target.numel() and (target.min() < 0 or target.max() >= self.num_classes):
            raise ValueError(f"targets must lie in [0, {self.num_classes}), got [{target.min()}, {target.max()}]")
        flat = target * self.num_classes + pred
        self.counts += torch.bincount(flat, minlength=self.num_classes**2).reshape(self.num_classes, -1)


@METRICS.register("acc")
class OverallAccuracy(ConfusionMatrix):
    name = "acc"
    unit = "%"

    def compute(self) -> float:
        total = self.counts.sum().item()
        return 100.0 * self.counts.diag().sum().item() / total if total else float("nan")


@METRICS.register("macc")
class MeanClassAccuracy(ConfusionMatrix):
    name = "macc"
    unit = "%"

    def compute(self) -> float:
        support = self.counts.sum(1)
        present = support > 0
        if not present.any():
            return float("nan")
        recall = self.counts.diag()[present].double() / support[present].double()
        return 100.0 * recall.mean().item()

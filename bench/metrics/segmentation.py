"""Part-segmentation metrics of the reference ``segmentation/main.py`` (protocols.md 2.5), streaming per shape.

Conventions:
- ``parts``: per category, its global part ids (ShapeNetPart: ``bench.data.shapenetpart.CATEGORY_PARTS``); an
  int n means one category holding parts 0..n-1. A shape's category is the one owning its first GT label (the
  reference's ``seg_label_to_cat[target[i, 0]]``).
- ``update(preds, target)``: target (B, N) or (N,) global part ids of B shapes (or one); preds are logits
  (target dims + 1, argmax taken over the shape's category's parts only: the reference's restriction) or part
  ids (same shape as target, used as given).
- Per-shape IoU = mean over the category's parts of |P & G| / |P | G|, a part absent from both counting 1.0.
- ``inst_miou`` = mean of per-shape IoU over all shapes; ``cls_miou`` = mean over categories of their mean
  per-shape IoU, over the categories with at least one shape seen (the reference averages all 16, each present
  in the real test split). Both in percent; NaN when nothing was seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from bench.metrics.base import Metric
from bench.registry import METRICS


def restricted_argmax(logits: Tensor, parts: Sequence[int]) -> Tensor:
    """(N, K) logits -> (N,) the part id among ``parts`` with the highest logit (ties: the first)."""
    index = torch.as_tensor(list(parts), dtype=torch.long, device=logits.device)
    return index[logits.index_select(-1, index).argmax(-1)]


def shape_iou(pred: np.ndarray, target: np.ndarray, parts: Sequence[int]) -> float:
    """Mean over ``parts`` of the IoU of one shape's (N,) predicted and true part ids (absent in both: 1)."""
    ious = []
    for part in parts:
        p, g = pred == part, target == part
        union = int(np.count_nonzero(p | g))
        ious.append(1.0 if union == 0 else np.count_nonzero(p & g) / union)
    return float(np.mean(ious))


class ShapeIoU(Metric):
    """Collects (category, per-shape IoU) pairs; subclasses average them differently."""

    unit = "%"

    def __init__(self, parts: int | Sequence[Sequence[int]]) -> None:
        self.parts = [list(range(parts))] if isinstance(parts, int) else [list(p) for p in parts]
        self.owner = {part: c for c, ps in enumerate(self.parts) for part in ps}
        self.reset()

    def reset(self) -> None:
        self.categories: list[int] = []
        self.ious: list[float] = []

    def update(self, preds: Tensor, target: Tensor) -> None:
        logits = preds.dim() == target.dim() + 1
        if target.dim() == 1:
            preds, target = preds.unsqueeze(0), target.unsqueeze(0)
        if preds.shape[: target.dim()] != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} do not match")
        for pred, truth in zip(preds.detach().cpu(), target.detach().cpu(), strict=True):
            first = int(truth[0])
            if first not in self.owner:
                raise ValueError(f"target part id {first} belongs to no category (known ids: {sorted(self.owner)})")
            category = self.owner[first]
            parts = self.parts[category]
            labels = restricted_argmax(pred.float(), parts) if logits else pred
            self.categories.append(category)
            self.ious.append(shape_iou(labels.numpy(), truth.numpy(), parts))

    def per_category(self) -> dict[int, float]:
        """Category index -> mean per-shape IoU (fraction), for the categories seen."""
        cats, ious = np.asarray(self.categories), np.asarray(self.ious)
        return {int(c): float(ious[cats == c].mean()) for c in np.unique(cats)}


@METRICS.register("inst_miou")
class InstanceMeanIoU(ShapeIoU):
    """Inst. mIoU (the reference's ``inctance_avg_iou``): mean per-shape IoU over all shapes, percent."""

    name = "inst_miou"

    def compute(self) -> float:
        return 100.0 * float(np.mean(self.ious)) if self.ious else float("nan")


@METRICS.register("cls_miou")
class ClassMeanIoU(ShapeIoU):
    """Cls. mIoU (``class_avg_iou``): mean over categories seen of the category's mean per-shape IoU, percent."""

    name = "cls_miou"

    def compute(self) -> float:
        per_category = self.per_category()
        return 100.0 * float(np.mean(list(per_category.values()))) if per_category else float("nan")

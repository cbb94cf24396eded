"""Scene (semantic) segmentation metrics over points, from ONE global confusion matrix (PCP / PQAE / MaDi
``semantic_segmentation/main.py``, reference/protocols.md 2.6), in percent.

Predictions are per-point logits (..., C) (argmax taken) or class indices with the target's shape; every point
of every batch counts once, whatever the batch sizes.

- ``miou``: mean over ALL ``num_classes`` classes of TP / (TP + FP + FN). A class absent from both the targets
  and the predictions contributes 0, as in the reference (whose ``+1e-6`` denominator turns 0/0 into 0); no
  epsilon otherwise, so a perfect prediction gives exactly 100.
- ``scene_macc``: mean over ALL classes of TP / (number of target points of the class); a class absent from the
  targets contributes 0 (reference ``+1e-6`` again). Unlike the classification ``macc``, absent classes are not
  skipped: on real Area 5 every one of the 13 classes is present, so both agree there.
- ``scene_oa``: correct / number of points seen. The reference divides by ``batch_size * num_point`` per batch,
  also for the test loader's short last batch (``drop_last`` False), which over-counts the points seen and
  slightly UNDER-estimates OA; here the denominator is the true number of points, so this OA is the correct
  value (>= the reference's printout on the same predictions).
Every metric returns NaN when nothing was seen since the last reset.
"""

from __future__ import annotations

import torch

from bench.metrics.classification import ConfusionMatrix
from bench.registry import METRICS


def _percent_mean(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """100 * mean over classes of numerator / denominator, with 0 where the denominator is 0."""
    ratio = torch.where(denominator > 0, numerator.double() / denominator.clamp(min=1).double(), 0.0)
    return 100.0 * ratio.mean().item()


@METRICS.register("miou")
class MeanIoU(ConfusionMatrix):
    name = "miou"
    unit = "%"

    def per_class(self) -> torch.Tensor:
        """IoU per class (fraction, 0 for a class absent from targets and predictions)."""
        tp = self.counts.diag()
        union = self.counts.sum(0) + self.counts.sum(1) - tp
        return torch.where(union > 0, tp.double() / union.clamp(min=1).double(), 0.0)

    def compute(self) -> float:
        if self.counts.sum() == 0:
            return float("nan")
        return 100.0 * self.per_class().mean().item()


@METRICS.register("scene_macc")
class SceneMeanAccuracy(ConfusionMatrix):
    name = "scene_macc"
    unit = "%"

    def compute(self) -> float:
        if self.counts.sum() == 0:
            return float("nan")
        return _percent_mean(self.counts.diag(), self.counts.sum(1))


@METRICS.register("scene_oa")
class SceneOverallAccuracy(ConfusionMatrix):
    name = "scene_oa"
    unit = "%"

    def compute(self) -> float:
        total = self.counts.sum().item()
        return 100.0 * self.counts.diag().sum().item() / total if total else float("nan")


#: report column name -> registered metric, in the order S3DIS tables print them
SCENE_METRICS = {"miou": "miou", "macc": "scene_macc", "oa": "scene_oa"}


def scene_scores(counts: torch.Tensor) -> dict[str, float]:
    """{miou, macc, oa} (percent) of one accumulated confusion matrix (rows: target, columns: prediction)."""
    out = {}
    for column, name in SCENE_METRICS.items():
        metric = METRICS.get(name)(int(counts.shape[0]))
        metric.counts = counts.clone().long()
        out[column] = metric.compute()
    return out

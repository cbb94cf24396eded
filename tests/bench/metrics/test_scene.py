"""Scene segmentation metrics: hand-computed values, sklearn's confusion matrix, streaming with a short last batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from bench.metrics.scene import SCENE_METRICS, scene_scores
from bench.registry import METRICS, load_plugins

load_plugins()
NAMES = list(SCENE_METRICS.values())


def test_hand_computed_values_count_absent_classes_as_zero():
    # 4 classes; class 3 never appears in targets or predictions
    target = torch.tensor([[0, 0, 0, 1], [1, 2, 2, 2]])
    preds = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])
    scores = {}
    for name in NAMES:
        metric = METRICS.get(name)(4)
        metric.update(preds, target)
        scores[name] = metric.compute()
    # IoU: class 0: TP 2, FP 1, FN 1 -> 2/4; class 1: TP 1, FP 1, FN 1 -> 1/3; class 2: TP 2, FP 1, FN 1 -> 2/4
    assert scores["miou"] == pytest.approx(100 * (0.5 + 1 / 3 + 0.5 + 0) / 4)
    # recall: 2/3, 1/2, 2/3, absent -> 0
    assert scores["scene_macc"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 2 / 3 + 0) / 4)
    assert scores["scene_oa"] == pytest.approx(100 * 5 / 8)


def test_perfect_prediction_is_exactly_100():
    target = torch.tensor([0, 1, 1, 2])
    metric = METRICS.get("miou")(3)
    metric.update(torch.nn.functional.one_hot(target, 3).float(), target)
    assert metric.compute() == 100.0


def test_agrees_with_sklearn_confusion_matrix():
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 13, (5, 200), generator=g)
    logits = torch.randn(5, 200, 13, generator=g) + 1.5 * torch.nn.functional.one_hot(target, 13)
    pred = logits.argmax(-1)
    cm = confusion_matrix(target.reshape(-1).numpy(), pred.reshape(-1).numpy(), labels=list(range(13)))
    tp = np.diag(cm).astype(float)
    iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    expected = {"miou": 100 * iou.mean(), "macc": 100 * (tp / cm.sum(1)).mean(), "oa": 100 * tp.sum() / cm.sum()}
    metric = METRICS.get("miou")(13)
    metric.update(logits, target)
    assert np.array_equal(metric.counts.numpy(), cm)
    assert scene_scores(metric.counts) == pytest.approx(expected)


@pytest.mark.parametrize("name", NAMES)
def test_streaming_with_short_last_batch_equals_one_shot(name):
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 5, (11, 64), generator=g)  # 11 blocks: batches of 4, 4 and a short 3
    logits = torch.randn(11, 64, 5, generator=g) + torch.nn.functional.one_hot(target, 5)
    streamed, once = METRICS.get(name)(5), METRICS.get(name)(5)
    for start in range(0, 11, 4):
        streamed.update(logits[start : start + 4], target[start : start + 4])
    once.update(logits.reshape(-1, 5), target.reshape(-1))
    assert streamed.compute() == pytest.approx(once.compute())


def test_oa_fixes_the_reference_short_batch_denominator():
    """The reference divides by batch_size * num_point for every batch; ours by the points actually seen."""
    target = torch.zeros(3, 10, dtype=torch.long)  # 3 blocks, batch size 2: the last batch holds 1 block
    preds = target.clone()
    oa = METRICS.get("scene_oa")(2)
    for start in (0, 2):
        oa.update(preds[start : start + 2], target[start : start + 2])
    reference = 100 * 30 / (2 * 2 * 10)  # the reference's printout: 75%
    assert oa.compute() == 100.0 and reference == 75.0


def test_nan_before_any_update_and_bad_targets():
    for name in NAMES:
        assert np.isnan(METRICS.get(name)(3).compute())
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        METRICS.get("miou")(3).update(torch.tensor([0, 1]), torch.tensor([0, 3]))

"""Classification metrics: hand-computed cases, sklearn agreement, streaming == one-shot."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from bench.metrics.base import Direction
from bench.registry import METRICS, load_plugins

load_plugins()


def test_hand_computed_values():
    target = torch.tensor([0, 0, 0, 1, 2, 2])
    preds = torch.tensor([0, 0, 1, 1, 2, 0])
    acc, macc = METRICS.get("acc")(3), METRICS.get("macc")(3)
    for metric in (acc, macc):
        metric.update(preds, target)
    assert acc.compute() == pytest.approx(100 * 4 / 6)
    assert macc.compute() == pytest.approx(100 * (2 / 3 + 1 + 1 / 2) / 3)


def test_logits_are_argmaxed_and_absent_classes_are_skipped():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    macc = METRICS.get("macc")(3)
    macc.update(logits, torch.tensor([0, 0]))  # class 1 and 2 absent from the targets
    assert macc.compute() == pytest.approx(50.0)


@pytest.mark.parametrize("name", ["acc", "macc"])
def test_streaming_equals_one_shot_and_matches_sklearn(name):
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 7, (300,), generator=g)
    logits = torch.randn(300, 7, generator=g) + torch.nn.functional.one_hot(target, 7) * 0.8
    streamed, once = METRICS.get(name)(7), METRICS.get(name)(7)
    for chunk in range(0, 300, 37):
        streamed.update(logits[chunk : chunk + 37], target[chunk : chunk + 37])
    once.update(logits, target)
    reference = {"acc": accuracy_score, "macc": balanced_accuracy_score}[name]
    expected = 100 * reference(target.numpy(), logits.argmax(-1).numpy())
    assert streamed.compute() == pytest.approx(once.compute()) == pytest.approx(expected)


def test_out_of_range_target_is_an_error():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        METRICS.get("acc")(3).update(torch.tensor([0, 1]), torch.tensor([0, 3]))


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_declares_its_contract(name):
    cls = METRICS.get(name)
    assert cls.name == name and Direction.parse(str(cls.direction)) == cls.direction
    assert isinstance(cls.unit, str) and cls.scale > 0 and cls.spec().name == name


#: per-shape reconstruction metrics (IoU, CD, F-score) and the held-out loss are not built from a class count
#: (test_reconstruction.py, tests/suites/test_scaling.py)
NOT_COUNTING = ("bench.metrics.generation", "bench.metrics.reconstruction", "bench.metrics.loss")
COUNTING = [n for n in METRICS.names() if METRICS.origin(n) not in NOT_COUNTING]


@pytest.mark.parametrize("name", COUNTING)
def test_every_counting_metric_streams_percentages(name):
    """Classification and segmentation metrics: built from the class count, in percent, NaN when empty."""
    cls = METRICS.get(name)
    assert str(cls.direction) in ("max", "min") and cls.unit == "%"
    metric = cls(2)
    metric.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert metric.compute() == pytest.approx(100.0)
    metric.reset()
    assert metric.compute() != metric.compute()  # NaN when nothing was seen

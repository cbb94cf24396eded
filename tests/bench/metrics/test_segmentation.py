"""Part-segmentation metrics: hand-computed IoUs (absent-in-both = 1, category restriction), sklearn agreement,
streaming over batches equals one-shot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from bench.data.shapenetpart import CATEGORY_PARTS
from bench.metrics.segmentation import restricted_argmax
from bench.registry import METRICS, load_plugins

load_plugins()
#: two categories: A owns parts 0-2, B owns parts 3-4
PARTS = [[0, 1, 2], [3, 4]]


def metrics(parts=PARTS):
    return METRICS.get("inst_miou")(parts), METRICS.get("cls_miou")(parts)


def test_hand_computed_shapes():
    inst, cls = metrics()
    # shape 1 (A): part 0 IoU 1/2 (pred {0,1}, gt {0}), part 1 IoU 1/2 (pred {2}, gt {1,2}), part 2 absent in both
    # -> (1/2 + 1/2 + 1) / 3 = 2/3;  shape 2 (B): part 3 IoU 1, part 4 IoU 1 -> 1;  shape 3 (B): all wrong -> 0
    for metric in (inst, cls):
        metric.update(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
        metric.update(torch.tensor([[3, 4, 4], [4, 3, 3]]), torch.tensor([[3, 4, 4], [3, 4, 4]]))
    assert inst.compute() == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)
    assert cls.compute() == pytest.approx(100 * (2 / 3 + (1 + 0) / 2) / 2)


def test_part_absent_from_prediction_and_truth_counts_one():
    inst, _ = metrics()
    inst.update(torch.tensor([0, 0, 0]), torch.tensor([0, 0, 0]))  # parts 1 and 2 nowhere: IoU 1 each
    assert inst.compute() == pytest.approx(100.0)
    inst.reset()
    inst.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]))  # part 1 predicted, never true: IoU 0
    assert inst.compute() == pytest.approx(100 * (2 / 3 + 0 + 1) / 3)


def test_logits_are_restricted_to_the_true_category():
    # the highest logit is part 4 (category B), but the shape is category A: argmax among parts 0-2 only
    logits = torch.tensor([[0.0, 1.0, 0.5, 0.0, 9.0], [2.0, 0.0, 0.1, 9.0, 0.0]])
    assert restricted_argmax(logits, [0, 1, 2]).tolist() == [1, 0]
    inst, _ = metrics()
    inst.update(logits, torch.tensor([1, 0]))
    assert inst.compute() == pytest.approx(100.0)


def test_category_is_read_from_the_first_true_label():
    inst, cls = metrics()
    for metric in (inst, cls):
        metric.update(torch.tensor([[3, 3]]), torch.tensor([[3, 3]]))
    assert cls.per_category() == {1: 1.0} and cls.compute() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="belongs to no category"):
        inst.update(torch.tensor([7]), torch.tensor([7]))


def test_against_sklearn_confusion_matrix_on_shapenet_parts():
    g = np.random.default_rng(0)
    inst, cls = metrics(CATEGORY_PARTS)
    expected, by_cat = [], {}
    for _ in range(40):
        cat = int(g.integers(16))
        parts = CATEGORY_PARTS[cat]
        target = g.choice(parts[: max(1, len(parts) - 1)], size=64)  # the last part often absent in truth
        logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(int(g.integers(1 << 30))))
        logits[torch.arange(64), torch.as_tensor(target)] += 1.0
        inst.update(logits, torch.as_tensor(target))
        cls.update(logits, torch.as_tensor(target))
        pred = np.asarray(parts)[logits[:, parts].argmax(-1).numpy()]
        cm = confusion_matrix(target, pred, labels=parts)
        tp, union = np.diag(cm), cm.sum(0) + cm.sum(1) - np.diag(cm)
        iou = np.where(union == 0, 1.0, tp / np.maximum(union, 1)).mean()
        expected.append(iou)
        by_cat.setdefault(cat, []).append(iou)
    assert inst.compute() == pytest.approx(100 * np.mean(expected))
    assert cls.compute() == pytest.approx(100 * np.mean([np.mean(v) for v in by_cat.values()]))


@pytest.mark.parametrize("name", ["inst_miou", "cls_miou"])
def test_streaming_equals_one_shot(name):
    g = torch.Generator().manual_seed(1)
    cats = torch.randint(0, 16, (30,), generator=g)
    target = torch.stack([torch.as_tensor(CATEGORY_PARTS[c])[torch.randint(0, len(CATEGORY_PARTS[c]), (50,),
                                                                            generator=g)] for c in cats.tolist()])
    logits = torch.randn(30, 50, 50, generator=g)
    streamed, once = METRICS.get(name)(CATEGORY_PARTS), METRICS.get(name)(CATEGORY_PARTS)
    for chunk in range(0, 30, 7):
        streamed.update(logits[chunk : chunk + 7], target[chunk : chunk + 7])
    once.update(logits, target)
    assert streamed.compute() == pytest.approx(once.compute())
    assert 0 <= once.compute() <= 100


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="do not match"):
        METRICS.get("inst_miou")(PARTS).update(torch.zeros(2, 4, 5), torch.zeros(2, 3, dtype=torch.long))

"""Classification head and the authors' flat fine-tune layout."""

from __future__ import annotations

import pytest
import torch
from methods_support import TINY_ENCODER, TINY_POINTS

from bench.errors import CheckpointError
from methods.blocks.encoder import PointEncoder
from methods.blocks.heads import ClassificationHead, PointClassifier


def _classifier(cls_token: bool = True) -> PointClassifier:
    backbone = PointEncoder(TINY_ENCODER, num_group=16, group_size=8, drop_path=0.0, cls_token=cls_token)
    return PointClassifier(backbone, 5)


def test_head_official_indices() -> None:
    head = ClassificationHead(64, 5)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert head[3].p == 0.5 and head[0].out_features == 256 and head[8].out_features == 5


@pytest.mark.parametrize("cls_token", [True, False])
def test_classifier_logits(cls_token: bool, cloud: torch.Tensor) -> None:
    model = _classifier(cls_token)
    assert model(cloud).shape == (2, 5)
    model.eval()
    out = model.backbone(cloud)
    first = out.cls if cls_token else out.tokens.mean(dim=1)
    expected = model.head(torch.cat([first, out.tokens.max(dim=1).values], dim=-1))
    torch.testing.assert_close(model(cloud), expected)


def test_load_official_finetune_state() -> None:
    source, target = _classifier(), _classifier()
    flat = {}
    for key, value in source.state_dict().items():
        top, rest = key.split(".", 1)
        flat["module." + (rest if top == "backbone" else f"cls_head_finetune.{rest}")] = value
    target.load_official_finetune_state({"model": flat})
    xyz = torch.rand(2, TINY_POINTS, 3)
    torch.testing.assert_close(target.eval()(xyz), source.eval()(xyz))
    del flat["module.cls_head_finetune.8.bias"]
    with pytest.raises(CheckpointError, match="head.8.bias"):
        target.load_official_finetune_state(flat)

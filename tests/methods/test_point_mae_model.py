"""Point-MAE: official parameter counts and state-dict layouts, pretext step, config validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from methods_support import SHARED, TINY_POINTS, tiny_config
from torch import nn

from bench.errors import ConfigError
from methods.blocks.heads import PointClassifier
from methods.point_mae import PointMAE, PointMAEConfig
from methods.scratch import Scratch, ScratchConfig

LAYOUTS = SHARED / "reference" / "state_dicts"


@pytest.fixture(scope="module")
def paper_mae() -> PointMAE:
    return PointMAE(PointMAEConfig())


def _classifier(num_group: int, classes: int) -> PointClassifier:
    backbone = PointMAE.build_backbone(PointMAEConfig(), num_group=num_group, group_size=32, drop_path=0.1)
    return PointClassifier(backbone, classes)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts(paper_mae: PointMAE) -> None:
    assert _count(paper_mae) == 29_006_432
    assert _count(_classifier(128, 15)) == 22_093_327
    assert _count(_classifier(64, 40)) == 22_099_752


def _layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    path = LAYOUTS / name
    if not path.is_file():
        pytest.skip(f"reference layouts not found at {path}")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [(key, tuple(int(d) for d in shape.strip("()").split(",") if d.strip())) for key, shape in rows]


def _flat_finetune_names(model: PointClassifier) -> list[tuple[str, tuple[int, ...]]]:
    """Our classifier's state dict renamed to the authors' flat fine-tune layout."""
    out = []
    for key, value in model.state_dict().items():
        top, rest = key.split(".", 1)
        out.append((rest if top == "backbone" else f"cls_head_finetune.{rest}", tuple(value.shape)))
    return out


@pytest.mark.shared
def test_pretrain_state_dict_layout(paper_mae: PointMAE) -> None:
    ours = [(k, tuple(v.shape)) for k, v in paper_mae.state_dict().items()]
    assert ours == _layout("point_mae_pretrain.tsv")


@pytest.mark.shared
@pytest.mark.parametrize(
    ("tsv", "groups", "classes"),
    [("point_mae_finetune_scanobjectnn.tsv", 128, 15), ("point_mae_finetune_modelnet40.tsv", 64, 40)],
)
def test_finetune_state_dict_layout(tsv: str, groups: int, classes: int) -> None:
    assert _flat_finetune_names(_classifier(groups, classes)) == _layout(tsv)


@pytest.mark.parametrize(("mask_type", "loss"), [("rand", "cdl2"), ("block", "cdl1")])
def test_pretrain_step_trains_every_parameter(mask_type: str, loss: str, cloud: torch.Tensor) -> None:
    model = PointMAE(replace(tiny_config(PointMAEConfig), mask_type=mask_type, loss=loss))
    out = model.pretrain_step({"xyz": cloud})
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_reconstruction_targets_are_the_masked_patches(cloud: torch.Tensor) -> None:
    model = PointMAE(tiny_config(PointMAEConfig))
    predicted, target = model.reconstruct(cloud)
    masked = round(0.6 * 16)
    assert predicted.shape == target.shape == (2 * masked, 8, 3)
    neighborhood, _ = model.MAE_encoder.group_divider(cloud)
    patches = {tuple(p.flatten().tolist()) for p in neighborhood.reshape(-1, 8, 3)}
    assert all(tuple(t.flatten().tolist()) in patches for t in target)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("mask_type", "grid", "mask_type"),
        ("loss", "emd", "loss"),
        ("mask_ratio", 0.0, "mask_ratio"),
        ("mask_ratio", 1.0, "mask_ratio"),
        ("decoder_num_heads", 5, "decoder_num_heads"),
    ],
)
def test_config_errors(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        PointMAE(replace(tiny_config(PointMAEConfig), **{field: value}))


def test_encoder_config_from_mapping() -> None:
    cfg = PointMAEConfig(encoder={"trans_dim": 48, "depth": 2, "num_heads": 4, "encoder_dims": 48})
    assert cfg.encoder.trans_dim == 48
    with pytest.raises(ConfigError, match="unknown encoder config key"):
        PointMAEConfig(encoder={"width": 48})


def test_scratch_is_random_init_baseline(tmp_path: Path) -> None:
    assert not Scratch.pretrains() and Scratch.checkpoint_prefix is None
    backbone = Scratch.build_backbone(tiny_config(ScratchConfig), num_group=16, group_size=8, drop_path=0.0)
    assert backbone(torch.rand(1, TINY_POINTS, 3)).cls.shape == (1, 32)
    with pytest.raises(ConfigError, match="method.ckpt"):
        Scratch(ScratchConfig(ckpt=str(tmp_path / "x.pth")))

"""Importing encoder weights from official-layout pre-training checkpoints, and writing them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.checkpoints import load_encoder_checkpoint, save_pretrain_checkpoint
from bench.errors import CheckpointError
from methods.point_mae import PointMAE, PointMAEConfig
from tests.methods.methods_support import TINY_ENCODER, tiny_config


@pytest.fixture
def tiny_mae() -> PointMAE:
    return PointMAE(tiny_config(PointMAEConfig))


def _backbone(cfg: PointMAEConfig | None = None) -> torch.nn.Module:
    cfg = cfg or tiny_config(PointMAEConfig)
    return PointMAE.build_backbone(cfg, num_group=16, group_size=8, drop_path=0.1)


def _official_file(tmp_path: Path, state: dict[str, torch.Tensor], wrap: bool = True) -> Path:
    """As the authors' runner saves it under DataParallel: module.-prefixed keys inside 'base_model'."""
    path = tmp_path / "ckpt-last.pth"
    body = {f"module.{k}": v for k, v in state.items()}
    torch.save({"base_model": body, "optimizer": {}, "epoch": 300} if wrap else body, path)
    return path


@pytest.mark.parametrize("wrap", [True, False])
def test_official_layout_loads_with_expected_report(tmp_path: Path, tiny_mae: PointMAE, wrap: bool) -> None:
    state = tiny_mae.state_dict()
    backbone = _backbone()
    report = load_encoder_checkpoint(backbone, _official_file(tmp_path, state, wrap), "MAE_encoder")
    assert sorted(report.missing) == ["cls_pos", "cls_token"]
    outside = sorted(k for k in state if not k.startswith("MAE_encoder."))
    assert sorted(report.unexpected) == outside
    assert any(k.startswith("MAE_decoder.") for k in report.unexpected)
    assert {"mask_token", "increase_dim.0.weight"} <= set(report.unexpected)
    loaded = backbone.state_dict()
    assert sorted(report.loaded) == sorted(k for k in loaded if k not in ("cls_token", "cls_pos"))
    for key in report.loaded:
        assert torch.equal(loaded[key], state[f"MAE_encoder.{key}"]), key


def test_save_pretrain_checkpoint_roundtrip(tmp_path: Path, tiny_mae: PointMAE) -> None:
    path = save_pretrain_checkpoint(tiny_mae, tmp_path / "sub" / "ckpt-epoch-300.pth", 300, {"metrics": {"loss": 0.5}})
    assert [p.name for p in path.parent.iterdir()] == ["ckpt-epoch-300.pth"]  # no temp file left behind
    payload = torch.load(path, weights_only=True)
    assert payload["epoch"] == 300 and payload["metrics"] == {"loss": 0.5}
    assert list(payload["base_model"]) == list(tiny_mae.state_dict())
    report = load_encoder_checkpoint(_backbone(), path, "MAE_encoder")
    assert sorted(report.missing) == ["cls_pos", "cls_token"]


def test_other_architecture_is_refused(tmp_path: Path, tiny_mae: PointMAE) -> None:
    state = {k.replace("MAE_encoder.", "transformer_q."): v for k, v in tiny_mae.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_encoder_checkpoint(_backbone(), _official_file(tmp_path, state), "MAE_encoder")
    message = str(err.value)
    assert "another architecture" in message and "transformer_q" in message and "MAE_encoder" in message


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path, tiny_mae: PointMAE) -> None:
    wide = replace(tiny_config(PointMAEConfig), encoder=replace(TINY_ENCODER, trans_dim=64, encoder_dims=64))
    with pytest.raises(CheckpointError) as err:
        load_encoder_checkpoint(_backbone(wide), _official_file(tmp_path, tiny_mae.state_dict()), "MAE_encoder")
    message = str(err.value)
    assert "MAE_encoder.encoder.second_conv.3.weight: checkpoint (32, 512, 1) vs model (64, 512, 1)" in message


def test_missing_key_outside_allowed(tmp_path: Path, tiny_mae: PointMAE) -> None:
    state = tiny_mae.state_dict()
    del state["MAE_encoder.norm.weight"]
    with pytest.raises(CheckpointError, match=r"lacks 1 encoder key.*norm\.weight"):
        load_encoder_checkpoint(_backbone(), _official_file(tmp_path, state), "MAE_encoder")


def test_deeper_checkpoint_is_refused(tmp_path: Path) -> None:
    deep = replace(tiny_config(PointMAEConfig), encoder=replace(TINY_ENCODER, depth=3))
    path = _official_file(tmp_path, PointMAE(deep).state_dict())
    with pytest.raises(CheckpointError, match=r"blocks\.blocks\.2\."):
        load_encoder_checkpoint(_backbone(), path, "MAE_encoder")


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_unreadable_file_names_path(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "broken.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.pth"):
        load_encoder_checkpoint(_backbone(), path, "MAE_encoder")

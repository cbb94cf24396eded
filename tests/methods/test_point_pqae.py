"""Point-PQAE: official parameter count and layout, VRPE values, cross-reconstruction wiring, losses, init,
config validation, and the import of an official-layout pre-training checkpoint (API and CLI)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from methods_support import SHARED, TINY_POINTS, tiny_config
from omegaconf import OmegaConf

from bench.checkpoints import load_encoder_checkpoint
from bench.errors import ConfigError
from extensions import ops
from methods.blocks.views import View
from methods.point_pqae import PointPQAE, PointPQAEConfig, view_relative_embedding

LAYOUT = SHARED / "reference" / "state_dicts" / "point_pqae_pretrain.tsv"


@pytest.fixture(scope="module")
def paper_pqae() -> PointPQAE:
    return PointPQAE(PointPQAEConfig())


@pytest.fixture
def tiny_pqae() -> PointPQAE:
    return PointPQAE(tiny_config(PointPQAEConfig))


def _views(b: int = 2, n1: int = 100, n2: int = 90) -> tuple[View, View]:
    return (
        View(torch.rand(b, n1, 3) * 2 - 1, torch.randn(b, 3), torch.zeros(b)),
        View(torch.rand(b, n2, 3) * 2 - 1, torch.randn(b, 3), torch.zeros(b)),
    )


def test_parameter_count(paper_pqae: PointPQAE) -> None:
    assert sum(p.numel() for p in paper_pqae.parameters()) == 29_597_024


@pytest.mark.shared
def test_pretrain_state_dict_layout(paper_pqae: PointPQAE) -> None:
    if not LAYOUT.is_file():
        pytest.skip(f"reference layout not found at {LAYOUT}")
    rows = [line.split("\t") for line in LAYOUT.read_text().splitlines() if line.strip()]
    expected = [(k, tuple(int(d) for d in s.strip("()").split(",") if d.strip())) for k, s in rows]
    assert [(k, tuple(v.shape)) for k, v in paper_pqae.state_dict().items()] == expected


def test_reference_init(paper_pqae: PointPQAE) -> None:
    """Point_PQAE._init_weights: every Linear normal(0.02, 0.01), bias 0; Conv1d keep trunc_normal(0, .02)."""
    fc1 = paper_pqae.PQAE_encoder.blocks.blocks[0].mlp.fc1
    assert abs(fc1.weight.mean().item() - 0.02) < 1e-3 and abs(fc1.weight.std().item() - 0.01) < 1e-3
    assert (fc1.bias == 0).all()
    conv = paper_pqae.PQAE_encoder.encoder.second_conv[0].weight
    assert abs(conv.mean().item()) < 1e-3 and abs(conv.std().item() - 0.02) < 2e-3


def test_vrpe_against_hand_computation() -> None:
    centers = torch.tensor([[[0.5, -1.0, 0.25]]])
    offset = torch.tensor([[2.0, 0.0, -3.0]])
    out = view_relative_embedding(centers, offset, 24)  # 6 coordinates x (sin, cos) x 2 frequencies (1, 0.01)
    coords = [0.5, -1.0, 0.25, 2.0, 0.0, -3.0]
    expected = []
    for c in coords:
        expected += [math.sin(c), math.sin(c * 0.01), math.cos(c), math.cos(c * 0.01)]
    torch.testing.assert_close(out[0, 0], torch.tensor(expected))


def test_cross_reconstruction_directions(tiny_pqae: PointPQAE) -> None:
    """predicted[0] rebuilds view 1 from view 2 (and back): swapping the views swaps the two directions."""
    tiny_pqae.eval()
    view1, view2 = _views()
    pred, target = tiny_pqae.reconstruct(view1, view2)
    pred_sw, target_sw = tiny_pqae.reconstruct(view2, view1)
    assert pred.shape == target.shape == (2, 2 * 16, 8, 3)
    torch.testing.assert_close(pred_sw.flip(0), pred, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(target_sw.flip(0), target)
    neigh1, centers1 = tiny_pqae.PQAE_encoder.group_divider(view1.points)
    torch.testing.assert_close(target[0], neigh1.reshape(-1, 8, 3))
    # by hand: the VRPE of view 1 (offset box2 - box1) queries view 2's encoded tokens
    tokens2 = tiny_pqae.PQAE_encoder(view2.points).tokens
    query = view_relative_embedding(centers1, view2.box_center - view1.box_center, 32)
    decoded = tiny_pqae.PQ_decoder(tiny_pqae.PQattn_contrast(query, tokens2))
    torch.testing.assert_close(pred[0], tiny_pqae.PQ_linear(decoded).reshape(-1, 8, 3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("loss", ["cdl2", "cdl1", "cos"])
def test_loss_is_the_sum_of_both_directions(tiny_pqae: PointPQAE, loss: str) -> None:
    model = PointPQAE(replace(tiny_config(PointPQAEConfig), loss=loss))
    pred, target = torch.randn(2, 6, 8, 3), torch.randn(2, 6, 8, 3)
    losses = model.direction_losses(pred, target)
    for i in range(2):
        if loss == "cos":
            p, t = pred[i].reshape(6, -1), target[i].reshape(6, -1)
            expected = -(p / p.norm(dim=-1, keepdim=True) * t / t.norm(dim=-1, keepdim=True)).sum(-1).mean()
        else:
            expected = (ops.chamfer_l2 if loss == "cdl2" else ops.chamfer_l1)(pred[i], target[i])
        torch.testing.assert_close(losses[i], expected)


def test_pretrain_step_trains_every_used_parameter(tiny_pqae: PointPQAE, cloud: torch.Tensor) -> None:
    out = tiny_pqae.pretrain_step({"xyz": cloud})
    assert set(out) == {"loss", "pq_loss1", "pq_loss2"}
    torch.testing.assert_close(out["loss"].detach(), out["pq_loss1"] + out["pq_loss2"])
    out["loss"].backward()
    for name, param in tiny_pqae.named_parameters():
        if name.startswith("decoder_pos_embed."):  # in the reference's layout, never used by its forward
            assert param.grad is None, name
            continue
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_views_come_from_the_config(cloud: torch.Tensor) -> None:
    model = PointPQAE(replace(tiny_config(PointPQAEConfig), min_crop_rate=1.0, rotate_views=False))
    view1, view2 = model.make_views(cloud)
    # no crop, no rotation: both views are the centred cloud (each ordered by distance to its own seed point)
    order1, order2 = view1.points[..., 0].argsort(dim=1), view2.points[..., 0].argsort(dim=1)
    sort1 = view1.points.gather(1, order1[..., None].expand(-1, -1, 3))
    torch.testing.assert_close(sort1, view2.points.gather(1, order2[..., None].expand(-1, -1, 3)))
    torch.testing.assert_close(view1.box_center, view2.box_center)
    assert view1.points.shape == (2, TINY_POINTS, 3)
    model = PointPQAE(tiny_config(PointPQAEConfig))
    view1, view2 = model.make_views(cloud)
    assert view1.points.shape[1] >= int(0.6 * TINY_POINTS) and view1.points.abs().max() <= math.sqrt(2) + 1e-5


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [("loss", "emd", "loss"), ("min_crop_rate", 0.0, "min_crop_rate"), ("decoder_num_heads", 5, "decoder_num_heads")],
)
def test_config_errors(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        PointPQAE(replace(tiny_config(PointPQAEConfig), **{field: value}))


def test_vrpe_pads_widths_the_reference_cannot_split() -> None:
    centers, offset = torch.randn(2, 3, 3), torch.randn(2, 3)
    out = view_relative_embedding(centers, offset, 32)  # 24 sin/cos channels + 8 zeros
    torch.testing.assert_close(out[..., :24], view_relative_embedding(centers, offset, 24))
    assert (out[..., 24:] == 0).all()
    enc = replace(tiny_config(PointPQAEConfig).encoder, trans_dim=8, encoder_dims=8, num_heads=2)
    with pytest.raises(ConfigError, match="at least 12"):
        PointPQAE(replace(tiny_config(PointPQAEConfig), encoder=enc, decoder_num_heads=2))


def _official_file(path: Path, model: PointPQAE) -> Path:
    """As the authors' runner saves it under DataParallel: module.-prefixed keys inside 'base_model'."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"base_model": state, "optimizer": {}, "epoch": 300, "metrics": {}}, path)
    return path


def test_official_checkpoint_imports_the_whole_encoder(tmp_path: Path, tiny_pqae: PointPQAE) -> None:
    state = tiny_pqae.state_dict()
    backbone = PointPQAE.build_backbone(tiny_pqae.cfg, num_group=16, group_size=8, drop_path=0.1)
    report = load_encoder_checkpoint(backbone, _official_file(tmp_path / "ckpt-300.pth", tiny_pqae), "PQAE_encoder")
    assert report.missing == []  # PQAE pre-trains with the cls token: it is imported too
    assert sorted(report.unexpected) == sorted(k for k in state if not k.startswith("PQAE_encoder."))
    assert {"PQattn_contrast.q.weight", "PQ_linear.weight", "decoder_pos_embed.0.weight"} <= set(report.unexpected)
    assert sorted(report.loaded) == sorted(backbone.state_dict())
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[f"PQAE_encoder.{key}"]), key


@pytest.mark.slow
def test_finetune_from_an_official_checkpoint(tiny_data_root, tiny_run, tmp_path) -> None:
    from bench.cli import main
    from bench.config import resolve
    from bench.records import load_records

    cfg = resolve("modelnet40", "point_pqae", profile="demo")
    ckpt = _official_file(tmp_path / "pretrain.pth", PointPQAE(OmegaConf.to_object(cfg.method)))
    args = [
        "--quiet",
        "run",
        "suite=modelnet40", "suite.variants=[1k]",
        "method=point_pqae",
        f"method.ckpt={ckpt}",
        *tiny_run,
        f"data.root={tiny_data_root}",
        f"output.dir={tmp_path / 'runs'}",
        "tracking.enabled=false",
    ]
    assert main(args) == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert record.pretrain["source"] == "import" and record.pretrain["ckpt"] == str(ckpt.resolve())
    assert record.pretrain["load_report"]["missing"] == []
    assert not (tmp_path / "runs" / "pretrain").exists()

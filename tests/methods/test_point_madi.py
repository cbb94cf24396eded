"""Point-MaDi: official parameter count and layout, two masks and averaged losses, diffusion wiring, sampler,
checkpoint import (ours and the authors' layout) and fine-tuning from it through the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from methods_support import SHARED, tiny_config

from bench.checkpoints import load_encoder_checkpoint
from bench.errors import ConfigError
from methods.blocks.recon_figure import write_reconstruction_figure
from methods.point_madi import (
    MaDiDraws,
    PointMaDi,
    PointMaDiConfig,
    stream_drop_path,
    two_stream_block,
    visible_first_mask,
)

LAYOUT = SHARED / "reference" / "state_dicts" / "point_madi_pretrain.tsv"


def _tiny(**overrides: object) -> PointMaDi:
    return PointMaDi(replace(tiny_config(PointMaDiConfig), **overrides))


def _grouped(model: PointMaDi, cloud: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MaDiDraws]:
    neighborhood, centers = model.MAE_encoder.group_divider(cloud)
    return neighborhood, centers, model.draw(centers)


@pytest.fixture(scope="module")
def paper_madi() -> PointMaDi:
    return PointMaDi(PointMaDiConfig())


def test_parameter_count_equals_the_reference(paper_madi: PointMaDi) -> None:
    assert sum(p.numel() for p in paper_madi.parameters()) == 29_092_582


@pytest.mark.shared
def test_pretrain_state_dict_layout(paper_madi: PointMaDi) -> None:
    if not LAYOUT.is_file():
        pytest.skip(f"reference layout not found at {LAYOUT}")
    rows = [line.split("\t") for line in LAYOUT.read_text().splitlines() if line.strip()]
    ref = [(k, tuple(int(d) for d in s.strip("()").split(",") if d.strip())) for k, s in rows]
    ours = [(k, tuple(v.shape)) for k, v in paper_madi.state_dict().items()]
    assert sorted(ours) == sorted(ref)  # decoder blocks list attn after mlp here; names and shapes are identical
    encoder = [row for row in ref if row[0].startswith("MAE_encoder.")]
    assert ours[: len(encoder)] == encoder


def test_two_masks_per_sample(cloud: torch.Tensor) -> None:
    model = _tiny()
    _, centers, draws = _grouped(model, cloud)
    b, g = centers.shape[:2]
    m = round(0.6 * g)
    assert draws.masks.shape == (2, b, g) and draws.masks.dtype == torch.bool
    assert (draws.masks.sum(-1) == m).all()
    for i in range(b):  # block mask: every masked centre is nearer to the masked set's anchor than any visible one
        block = draws.masks[1, i]
        dist = torch.cdist(centers[i], centers[i])
        anchor = [j for j in range(g) if block[j] and (dist[j][block] <= dist[j][~block].min()).all()]
        assert anchor, "the block mask is not a nearest-neighbour set of any of its centres"
    assert draws.t_center.shape == draws.t_patch.shape == (b,)
    assert draws.noise_center.shape == (2, b, g, 3) and draws.noise_patch.shape == (2, b, m, 3 * 8)


def test_losses_are_averaged_over_the_two_masks(cloud: torch.Tensor) -> None:
    model = _tiny(drop_path=0.0)
    neighborhood, centers, draws = _grouped(model, cloud)

    def only(i: int) -> MaDiDraws:
        pick = [i, i]
        return replace(draws, masks=draws.masks[pick], noise_center=draws.noise_center[pick],
                       noise_patch=draws.noise_patch[pick])  # fmt: skip

    both = model.losses(neighborhood, centers, draws)
    rand, block = model.losses(neighborhood, centers, only(0)), model.losses(neighborhood, centers, only(1))
    for key in ("loss", "center_mse", "patch_cd"):
        torch.testing.assert_close(both[key], (rand[key] + block[key]) / 2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both["loss"], 0.1 * both["center_mse"] + both["patch_cd"])


def test_noise_wiring(cloud: torch.Tensor) -> None:
    """Centre noise enters the encoder (both losses move); patch noise only the decoder (centre MSE fixed)."""
    model = _tiny(drop_path=0.0)
    neighborhood, centers, draws = _grouped(model, cloud)
    base = model.losses(neighborhood, centers, draws)
    again = model.losses(neighborhood, centers, draws)
    assert torch.equal(base["loss"], again["loss"])  # a step is a function of its draws
    patch = model.losses(neighborhood, centers, replace(draws, noise_patch=torch.randn_like(draws.noise_patch)))
    assert torch.equal(patch["center_mse"], base["center_mse"]) and patch["patch_cd"] != base["patch_cd"]
    late = replace(draws, t_center=torch.full_like(draws.t_center, 1999))
    moved = model.losses(neighborhood, centers, late)
    assert moved["center_mse"] != base["center_mse"] and moved["patch_cd"] != base["patch_cd"]


def test_decoder_positions_are_detached(cloud: torch.Tensor) -> None:
    model = _tiny(gamma=0.0)
    model.pretrain_step({"xyz": cloud})["loss"].backward()
    for head in (model.pred_pos_vis, model.pred_pos_msk):
        assert all(p.grad is None or not p.grad.any() for p in head.parameters())
    assert model.mask_token.weight.grad.abs().sum() > 0


def test_two_stream_block_visible_tokens_ignore_masked_ones() -> None:
    block = _tiny().MAE_encoder.blocks.blocks[0].eval()
    x, y = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = visible_first_mask(5, 12)
    out = two_stream_block(block, torch.cat([x, y], dim=1), 5, mask)
    torch.testing.assert_close(out[:, :5], block(x), rtol=1e-5, atol=1e-5)  # visible stream = a block on x alone
    other = two_stream_block(block, torch.cat([x, torch.randn(2, 7, 32)], dim=1), 5, mask)
    torch.testing.assert_close(other[:, :5], out[:, :5])
    joint = block(torch.cat([x, y], dim=1))[:, 5:]  # masked stream = full attention rows of the masked tokens
    torch.testing.assert_close(out[:, 5:], joint, rtol=1e-5, atol=1e-5)


def test_stream_drop_path_draws_per_stream() -> None:
    block = _tiny(drop_path=0.5).MAE_encoder.blocks.blocks[-1].train()
    h = torch.ones(400, 6, 1)
    out = stream_drop_path(block.drop_path, h, 2)
    assert set(out.unique().tolist()) <= {0.0, 2.0}  # kept branches are scaled by 1 / (1 - p)
    assert (out[:, :2] == out[:, :1]).all() and (out[:, 2:] == out[:, 2:3]).all()  # one draw per stream
    assert (out[:, 0] != out[:, 2]).any()  # the two streams' draws are independent
    assert torch.equal(stream_drop_path(block.drop_path.eval(), h, 2), h)


def test_pretrain_step_trains_every_parameter(cloud: torch.Tensor) -> None:
    model = _tiny(loss="cdl1")
    out = model.pretrain_step({"xyz": cloud})
    assert set(out) == {"loss", "center_mse", "patch_cd"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_reconstruct_and_figure(cloud: torch.Tensor, tmp_path: Path) -> None:
    model = _tiny().eval()
    calls: list[int] = []
    model.MAE_encoder.pos_embed.register_forward_hook(lambda *_: calls.append(1))
    result = model.reconstruct(cloud, steps=3, generator=torch.Generator().manual_seed(0))
    b, g, k, m = 2, 16, 8, round(0.6 * 16)
    assert result["centers"].shape == (b, g, 3) and result["patches"].shape == (b, m, k, 3)
    assert result["masked"].shape == (b, (g - m) * k, 3) and result["reconstruction"].shape == (b, m * k, 3)
    assert len(calls) == 3 + 3  # the encoder re-runs at each centre step, the decoder at each patch step
    visible = {tuple(p.tolist()) for p in result["masked"][0]}
    assert visible <= {tuple(p.tolist()) for p in cloud[0]}
    path = write_reconstruction_figure(result, tmp_path / "fig.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def _official_file(model: PointMaDi, path: Path) -> Path:
    """As the authors' runner saves it under DataParallel: module.-prefixed keys inside 'base_model'."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"base_model": state, "optimizer": {}, "epoch": 300, "metrics": {}}, path)
    return path


def test_official_checkpoint_imports_the_encoder(tmp_path: Path) -> None:
    model = _tiny()
    backbone = PointMaDi.build_backbone(model.cfg, num_group=16, group_size=8, drop_path=0.1)
    report = load_encoder_checkpoint(
        backbone, _official_file(model, tmp_path / "ckpt.pth"), PointMaDi.checkpoint_prefix
    )
    assert sorted(report.missing) == ["cls_pos", "cls_token"]
    assert {"mask_token.weight", "pred_pos_vis.0.weight", "pred_pos_msk.2.bias", "increase_dim.0.weight"} <= set(
        report.unexpected
    )
    for key in report.loaded:
        assert torch.equal(backbone.state_dict()[key], model.state_dict()[f"MAE_encoder.{key}"]), key


@pytest.mark.slow
def test_finetune_from_an_official_madi_checkpoint(tiny_data_root, tiny_run, tmp_path) -> None:
    from omegaconf import OmegaConf

    from bench.cli import main
    from bench.config import resolve
    from bench.records import load_records

    model = PointMaDi(OmegaConf.to_object(resolve("modelnet40", "point_madi", profile="demo")).method)
    ckpt = _official_file(model, tmp_path / "pretrain.pth")
    args = ["--quiet", "run", "suite=modelnet40", "suite.variants=[1k]", "method=point_madi", f"method.ckpt={ckpt}",
            *tiny_run,
            f"data.root={tiny_data_root}", f"output.dir={tmp_path / 'runs'}", "tracking.enabled=false"]  # fmt: skip
    assert main(args) == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert record.pretrain["source"] == "import"
    assert sorted(record.pretrain["load_report"]["missing"]) == ["cls_pos", "cls_token"]


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("loss", "emd", "loss"),
        ("mask_ratio_rand", 1.0, "mask_ratio_rand"),
        ("mask_ratio_block", 0.3, "same number"),
        ("decoder_num_heads", 5, "decoder_num_heads"),
        ("num_steps2", 0, "num_steps"),
    ],
)
def test_config_errors(field: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _tiny(**{field: value})

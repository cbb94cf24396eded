"""The svm protocol: the feature (hand-computed), C selection on held-out train data against a direct sklearn
computation, and end-to-end runs of `bench run suite=svm` over ModelNet40 and ScanObjectNN on the tiny stand-in."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.svm import LinearSVC

from bench.api import EncoderOutput
from bench.cli import main
from bench.config import resolve, variant_config
from bench.errors import ConfigError
from bench.records import load_records
from bench.registry import load_plugins
from suites.protocols.svm import SVMProbe, SVMSuite, probe, summarize, svm_feature
from suites.protocols.toolkit import stratified_split

load_plugins()  # the metric specs (acc) that summarize reads, when this module runs alone
C_GRID, HOLDOUT = SVMSuite().c_grid, SVMSuite().validation


def values(result) -> dict[str, float]:
    """A typed result's statistics as {name: value}."""
    return {name: stat.value for name, stat in result.statistics.items()}


def test_feature_is_cls_then_max_plus_mean_or_max_then_mean():
    tokens = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [-1.0, 5.0]]])  # (B=1, G=3, C=2)
    cls = torch.tensor([[7.0, 8.0]])
    with_cls = svm_feature(EncoderOutput(tokens=tokens, centers=torch.zeros(1, 3, 3), cls=cls))
    # max = (3, 5), mean = (1, 1): ReCon concat(cls, max + mean)
    assert with_cls.tolist() == [[7.0, 8.0, 4.0, 6.0]]
    without = svm_feature(EncoderOutput(tokens=tokens, centers=torch.zeros(1, 3, 3)))
    assert without.tolist() == [[3.0, 5.0, 1.0, 1.0]]  # Point-M2AE concat(max, mean)


def blobs(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping Gaussian classes in 6-D, so that C matters."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.2, size=(3, 6))
    y = np.repeat(np.arange(3), n_per_class)
    return centres[y] + rng.normal(size=(len(y), 6)), y


def test_c_is_selected_on_held_out_train_data_like_sklearn():
    train, test, seed = blobs(30, 0), blobs(20, 1), 4
    grid = sorted({*C_GRID, 0.075})
    rows, _ = probe(train, test, grid, seed, HOLDOUT)
    (x, y), (tx, ty) = train, test
    kept, held = stratified_split(y, HOLDOUT, seed=seed)
    assert len(held) == 18 and not set(kept) & set(held)  # round(0.2 * 30) = 6 per class
    for row, c in zip(rows, grid, strict=True):
        small = LinearSVC(C=c, dual=True, random_state=seed).fit(x[kept], y[kept])
        full = LinearSVC(C=c, dual=True, random_state=seed).fit(x, y)
        assert row["C"] == c
        assert row["val_acc"] == pytest.approx(100 * small.score(x[held], y[held]))
        assert row["test_acc"] == pytest.approx(100 * full.score(tx, ty))
    result = summarize(rows, 0.075, HOLDOUT)
    final = values(result)
    val = [r["val_acc"] for r in rows]
    chosen = grid[int(np.argmax(val))]  # argmax takes the first maximum: the smallest C on ties
    assert final["c_selected"] == chosen and final["last"] == rows[grid.index(chosen)]["test_acc"]
    assert final["best"] == rows[grid.index(0.075)]["test_acc"] and final["best_epoch"] == grid.index(0.075)
    assert final["grid_best"] == max(r["test_acc"] for r in rows) and final["c_reference"] == 0.075


def test_standardize_scales_on_the_fitted_rows_only_like_a_sklearn_pipeline():
    # a large shared offset and tiny class signal in half of the dimensions: what pre-trained tokens look like
    (x, y), (tx, ty) = blobs(30, 0), blobs(20, 1)
    x, tx = [np.concatenate([a[:, :3] * 0.01 + 50.0, a[:, 3:]], 1) for a in (x, tx)]
    seed, grid = 4, [0.01, 1.0]
    rows, _ = probe((x, y), (tx, ty), grid, seed, HOLDOUT, standardize=True)
    kept, held = stratified_split(y, HOLDOUT, seed=seed)
    for row, c in zip(rows, grid, strict=True):
        mu, sd = x[kept].mean(0), x[kept].std(0)  # the scaler of the held-out fit sees the kept rows only
        small = LinearSVC(C=c, dual=True, random_state=seed).fit((x[kept] - mu) / sd, y[kept])
        assert row["val_acc"] == pytest.approx(100 * small.score((x[held] - mu) / sd, y[held]))
        mu, sd = x.mean(0), x.std(0)
        full = LinearSVC(C=c, dual=True, random_state=seed).fit((x - mu) / sd, y)
        assert row["test_acc"] == pytest.approx(100 * full.score((tx - mu) / sd, ty))
    raw, _ = probe((x, y), (tx, ty), grid, seed, HOLDOUT)
    assert [r["test_acc"] for r in raw] != [r["test_acc"] for r in rows]  # the option changes the fit


def test_the_demo_standardizes_and_the_paper_setting_fits_raw_features():
    assert resolve("svm", "point_mae", profile="demo").suite.standardize is True
    assert resolve("svm", "point_mae", profile="paper").suite.standardize is False


def test_ties_go_to_the_smaller_c():
    rows = [{"C": 0.01, "val_acc": 80.0, "test_acc": 1.0}, {"C": 0.1, "val_acc": 80.0, "test_acc": 2.0},
            {"C": 1.0, "val_acc": 70.0, "test_acc": 3.0}]  # fmt: skip
    final = values(summarize(rows, 1.0, HOLDOUT))
    assert (final["c_selected"], final["last"], final["best"], final["grid_best"]) == (0.01, 1.0, 3.0, 3.0)


def test_suite_has_one_data_set_per_variant():
    cfg = resolve("svm", "scratch", profile="paper")
    assert cfg.suite.protocol == "svm" and list(cfg.seeds) == [0, 1, 2]
    data = {v: (variant_config(cfg, v).suite.dataset, variant_config(cfg, v).suite.num_classes)
            for v in cfg.suite.variants}  # fmt: skip
    assert data == {"modelnet40": ("modelnet40", 40), "objbg": ("scanobjectnn", 15)}
    assert {k: v.c for k, v in cfg.suite.reference_c.items()} == {"modelnet40": 0.075, "scanobjectnn": 0.042}


def test_a_data_set_without_reference_c_is_a_config_error(tmp_path):
    from bench.api import JobContext
    from methods.scratch import Scratch

    cfg = resolve("svm", "scratch", profile="demo", overrides=["suite.dataset=shapenet55"])
    ctx = JobContext(cfg=cfg, method_cls=Scratch, variant="default", seed=0, data_root=tmp_path, workdir=tmp_path)
    with pytest.raises(ConfigError, match='reference_c has no entry for data set "shapenet55"'):
        SVMProbe().run(ctx)


def test_the_encoder_is_frozen_with_its_pretraining_weights(tmp_path):
    from bench.api import JobContext
    from methods.point_mae import PointMAE

    cfg = variant_config(resolve("svm", "point_mae", profile="demo"), "modelnet40")
    method_cfg = OmegaConf.to_object(cfg.method)
    torch.manual_seed(123)
    trained = PointMAE.build_backbone(method_cfg, num_group=32, group_size=16, drop_path=0.0).state_dict()
    path = tmp_path / "pretrain.pth"
    torch.save({"base_model": {f"MAE_encoder.{k}": v for k, v in trained.items() if "cls" not in k}}, path)
    ctx = JobContext(cfg=cfg, method_cls=PointMAE, variant="modelnet40", seed=0, data_root=tmp_path,
                     workdir=tmp_path, encoder_ckpt=path)
    backbone, report = SVMProbe.build_encoder(ctx)
    assert report["path"] == str(path) and set(report["missing"]) == {"cls_token", "cls_pos"}
    assert not any(p.requires_grad for p in backbone.parameters())
    for key, value in backbone.state_dict().items():
        if "cls" not in key:
            assert torch.equal(value, trained[key]), key


@pytest.mark.slow
def test_svm_end_to_end_on_both_data_sets(tiny_data_root, tiny_run, tmp_path, capsys):
    """scratch: the random-init encoder (a legitimate baseline row); point_mae's loading is tested above."""
    out = tmp_path / "runs"
    args = ["--quiet", "run", "suite=svm", "method=scratch", *tiny_run, "tracking.enabled=false",
            f"data.root={tiny_data_root}", f"output.dir={out}"]  # fmt: skip
    assert main(args) == 0
    records = {r.variant: r for r in load_records(out / "records")}
    assert set(records) == {"modelnet40", "objbg"}
    grid = {v: sorted({*C_GRID, c}) for v, c in (("modelnet40", 0.075), ("objbg", 0.042))}
    for variant, record in records.items():
        assert record.protocol == "svm" and record.data_kind == "synthetic" and record.method == "scratch"
        assert [row["C"] for row in record.epochs] == grid[variant]
        final = values(record.headline)
        assert all(math.isfinite(final[k]) for k in ("last", "best", "grid_best"))
        assert final["grid_best"] >= max(final["last"], final["best"])
        assert record.headline.role("paper")[0] == "best" and record.headline.role("honest")[0] == "last"
    assert records["objbg"].pretrain.get("ckpt") is None
    capsys.readouterr()
    assert main(["report", f"output.dir={out}"]) == 0
    shown = capsys.readouterr().out
    assert "svm" in shown and "objbg" in shown and "modelnet40" in shown

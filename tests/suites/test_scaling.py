"""The scaling protocol: its settings and their errors, strict size overrides, the partial checkpoint load (frozen
modules from the checkpoint, the rest fresh), the deterministic held-out loss, and tiny point_mge jobs on the tiny
ShapeNet-55 stand-in (directly and through `bench run`, with the scaling figure in the HTML report)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from bench.api import JobContext
from bench.checkpoints import save_pretrain_checkpoint
from bench.cli import main
from bench.config import resolve, variant_config
from bench.errors import CheckpointError, ConfigError
from bench.metrics.loss import HeldOutLoss
from bench.records import load_records
from bench.registry import METHODS, load_plugins
from suites.protocols.generation import generation_stage
from suites.protocols.scaling import (
    Scaling,
    dotted,
    held_out_loss,
    is_frozen,
    load_frozen,
    parameter_counts,
    sized_config,
    split_dataset,
)
from suites.protocols.toolkit import enter_stage

load_plugins()
PointMGE = METHODS.get("point_mge")
FROZEN = ("MGE_encoder.tokenizer", "field_decoder")  # point_mge's generator stage freezes these
TINY_METHOD = """
method:
  num_group: 8
  group_size: 8
  cloud_points: 128
  tokenizer: {trans_dim: 32, depth: 1, decoder_depth: 1, num_heads: 2, patch_hidden: 8, codebook_size: 16,
              code_dim: 4, field_hidden: 16, queries: 64}
  encoder: {trans_dim: 32, depth: 1, num_heads: 2, mlp_ratio: 2.0, encoder_dims: 32, patch_hidden: 8}
  generator_depth: 1
  generator_num_heads: 2
  center_bins: 16
  sampler: {steps: 2}
  surface: {seeds: 8}
pretrain:
  npoints: 128
  stages:
    - {name: tokenizer, train: [MGE_encoder.tokenizer, field_decoder], trainer: {epochs: 1, batch_size: 4}}
    - {name: generator, freeze: [MGE_encoder.tokenizer, field_decoder], trainer: {epochs: 1, batch_size: 4}}
"""
SIZES = {"small": {"generator_depth": 1}, "medium": {"generator_depth": 2},
         "large": {"generator_depth": 3, "generator_num_heads": 4}}


def point_mge_suite() -> dict:
    """suites/scaling.yaml with point_mge's sizes on ShapeNet-55 (the stand-in's default variant), one epoch."""
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "suites" / "scaling.yaml").read_text())
    data["suite"].update(dataset="shapenet55", data_variant="", loss_key="loss", epochs=1, sizes=SIZES)
    data["trainer"] = {"batch_size": 4, "lr": 1.0e-3, "warmup_epochs": 0}
    data["profiles"] = {"demo": {"seeds": [0]}}
    return data


@pytest.fixture()
def suites(tmp_path, monkeypatch):
    """A suites folder whose scaling.yaml is :func:`point_mge_suite`, and the tiny method config file."""
    from bench import config

    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "scaling.yaml").write_text(yaml.safe_dump(point_mge_suite()))
    monkeypatch.setattr(config, "SUITES_DIR", folder)
    (tmp_path / "tiny.yaml").write_text(TINY_METHOD)
    return tmp_path


def tiny_cfg(folder: Path, *overrides: str):
    return resolve("scaling", "point_mge", profile="demo",
                   overrides=[f"+overrides={folder / 'tiny.yaml'}", "data.standin_size=tiny", *overrides])


def checkpoint(cfg, path: Path, seed: int = 123) -> Path:
    """A whole point_mge at the yaml's size, initialised from ``seed`` (stands in for the pre-training)."""
    torch.manual_seed(seed)
    return save_pretrain_checkpoint(PointMGE(OmegaConf.to_object(cfg.method)), path, epoch=0)


def context(cfg, variant: str, data_root: Path, workdir: Path, ckpt: Path | None, seed: int = 0) -> JobContext:
    return JobContext(cfg=variant_config(cfg, variant), method_cls=PointMGE, variant=variant, seed=seed,
                      data_root=data_root / "synthetic", workdir=workdir, encoder_ckpt=ckpt)


# --- settings ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, needle", [
    ("suite.metric=acc", "suite.metric='acc'"),
    ("~suite.sizes", "suite.sizes is empty"),
    ("suite.sizes.small=3", "suite.sizes.small must be a mapping"),
    ("~suite.sizes.large", "variant 'large' is not a size of suite.sizes (small, medium)"),
    ("suite.epochs=0", "suite.epochs=0 must be at least 1"),
    ("suite.eval_batches=-1", "suite.eval_batches=-1"),
    ("suite.loss_key=''", "suite.loss_key is empty"),
    ("suite.eval_split=holdout", "suite.eval_split='holdout' is not a split of shapenet_occ"),
    ("suite.data_variant=lamp", "suite.data_variant='lamp' is not a variant of shapenet_occ"),
])
def test_check_names_the_bad_setting(override, needle):
    cfg = resolve("scaling", "point_mge", profile="demo", overrides=[override])
    with pytest.raises(ConfigError) as err:
        Scaling.check(cfg.suite)
    assert needle in str(err.value)


@pytest.mark.parametrize("sizes, needle", [
    ({"car": {"width": 48}}, "suite.sizes.small: car is not a key of point_mge's config (PointMGEConfig)"),
    ({"tokenizer": {"widht": 8}}, "suite.sizes.small: tokenizer.widht is not a key"),
    ({"ckpt": "other.pth"}, "suite.sizes.small: ckpt is not a key"),
    ({"generator_depth": "deep"}, "suite.sizes.small: "),
])
def test_size_overrides_are_strict(suites, sizes, needle):
    cfg = tiny_cfg(suites, f"suite.sizes.small={sizes}".replace("'", ""))
    with pytest.raises(ConfigError) as err:
        sized_config(cfg, PointMGE, "small")
    assert needle in str(err.value)


def test_a_size_is_merged_over_the_method_config(suites):
    cfg = tiny_cfg(suites)
    large = sized_config(cfg, PointMGE, "large")
    assert (large.generator_depth, large.generator_num_heads, large.tokenizer.trans_dim) == (3, 4, 32)
    assert cfg.method.generator_depth == 1  # the resolved config is untouched
    assert dotted({"car": {"width": 48, "depth": 2}, "epochs": 3}) == "car.width=48, car.depth=2, epochs=3"


@pytest.mark.parametrize("profile", ["paper", "quick", "demo"])
def test_the_suite_yaml_holds_three_growing_g3pt_sizes(profile):
    cfg = resolve("scaling", "g3pt", profile=profile)
    suite = cfg.suite
    assert list(suite.variants) == ["small", "medium", "large"] and list(cfg.seeds) == [0]
    assert (suite.dataset, suite.data_variant, suite.metric, suite.loss_key) == ("shapenet_occ", "all", "test_loss",
                                                                                   "ce")
    g3pt = METHODS.get("g3pt")
    cars = [sized_config(cfg, g3pt, size).car for size in suite.variants]
    assert all(c.width % c.heads == 0 for c in cars)
    assert [c.width for c in cars] == sorted(c.width for c in cars) and cars[0].width < cars[-1].width
    assert [c.depth for c in cars] == sorted(c.depth for c in cars)
    for variant in suite.variants:
        Scaling.check(variant_config(cfg, variant).suite)
    assert generation_stage(cfg, g3pt).name == "car"


def test_the_held_out_loss_is_sample_weighted():
    metric = HeldOutLoss()
    assert math.isnan(metric.compute())
    metric.update(torch.tensor(2.0), torch.tensor(3.0))
    metric.update(torch.tensor([4.0]), torch.tensor([1.0]))
    assert metric.compute() == pytest.approx((3 * 2.0 + 1 * 4.0) / 4)  # not the batch mean 3.0
    with pytest.raises(ValueError, match="2 losses but 1 sample counts"):
        metric.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0]))
    spec = HeldOutLoss.spec()
    assert (spec.name, str(spec.direction), spec.unit) == ("test_loss", "min", "nats")


# --- weights -----------------------------------------------------------------------------------------------------
def test_only_the_frozen_modules_come_from_the_checkpoint(suites, tmp_path):
    cfg = tiny_cfg(suites)
    ckpt = checkpoint(cfg, tmp_path / "pretrain.pth")
    saved = torch.load(ckpt, weights_only=True)["base_model"]
    stage = generation_stage(cfg, PointMGE)
    torch.manual_seed(0)
    fresh = PointMGE(sized_config(cfg, PointMGE, "large")).state_dict()
    torch.manual_seed(0)
    method = PointMGE(sized_config(cfg, PointMGE, "large"))
    enter_stage(method, stage)
    report = load_frozen(method, stage, ckpt)
    state = method.state_dict()
    frozen = [k for k in state if k.startswith(tuple(p + "." for p in FROZEN))]
    assert frozen and set(frozen) == {k for k in state if is_frozen(k, stage)}
    assert all(torch.equal(state[k], saved[k]) for k in frozen)
    assert not all(torch.equal(fresh[k], saved[k]) for k in frozen)  # the checkpoint differs from a fresh init
    assert all(torch.equal(state[k], fresh[k]) for k in state if k not in frozen)  # the rest is the fresh init
    assert (report.loaded, report.fresh) == (len(frozen), len(state) - len(frozen))
    assert report.frozen_modules == ["MGE_encoder", "field_decoder"] and report.path == str(ckpt)
    assert load_frozen(method, stage, None).loaded == 0


def test_a_size_that_changes_a_frozen_module_fails_naming_it(suites, tmp_path):
    cfg = tiny_cfg(suites, "suite.sizes.small={tokenizer: {codebook_size: 8}}")
    ckpt = checkpoint(cfg, tmp_path / "pretrain.pth")
    method = PointMGE(sized_config(cfg, PointMGE, "small"))
    stage = generation_stage(cfg, PointMGE)
    with pytest.raises(CheckpointError, match=r"shape mismatches MGE_encoder\.tokenizer\..*\(16, 4\) vs \(8, 4\)"):
        load_frozen(method, stage, ckpt)


def test_parameters_counted_are_those_the_stage_trains(suites):
    cfg = tiny_cfg(suites)
    method = PointMGE(sized_config(cfg, PointMGE, "small"))
    enter_stage(method, generation_stage(cfg, PointMGE))
    trained, total = parameter_counts(method)
    frozen = sum(p.numel() for n, p in method.named_parameters() if n.startswith(FROZEN))
    assert frozen > 0 and trained == total - frozen


# --- the held-out loss and whole jobs ----------------------------------------------------------------------------
def test_the_held_out_loss_is_deterministic_and_leaves_the_global_generator(suites, tiny_data_root):
    cfg = tiny_cfg(suites)
    ctx = context(cfg, "small", tiny_data_root, Path("."), None)
    stage = generation_stage(cfg, PointMGE)
    method = PointMGE(sized_config(cfg, PointMGE, "small"))
    enter_stage(method, stage)
    test = split_dataset(ctx, "test", list(stage.transforms), 0)
    torch.manual_seed(7)
    first = held_out_loss(method, test, cfg.suite, 2, torch.device("cpu"))
    after = torch.rand(3)
    torch.manual_seed(7)
    again = held_out_loss(method, test, cfg.suite, 2, torch.device("cpu"))
    assert torch.equal(after, torch.rand(3))  # the pass drew from a forked generator
    assert first == again and math.isfinite(first.value)
    assert (first.samples, first.batches, first.split) == (len(test), math.ceil(len(test) / 2), "test")
    one = held_out_loss(method, test, OmegaConf.merge(cfg.suite, {"eval_batches": 1}), 2, torch.device("cpu"))
    assert (one.samples, one.batches) == (2, 1)
    with pytest.raises(ConfigError, match="suite.loss_key='ce': point_mge.pretrain_step returns center_loss"):
        held_out_loss(method, test, OmegaConf.merge(cfg.suite, {"loss_key": "ce"}), 2, torch.device("cpu"))


def test_tiny_jobs_give_finite_losses_and_growing_parameter_counts(suites, tiny_data_root, tmp_path):
    cfg = tiny_cfg(suites)
    ckpt = checkpoint(cfg, tmp_path / "pretrain.pth")
    results = {v: Scaling().run(context(cfg, v, tiny_data_root, tmp_path / v, ckpt)) for v in ("small", "large")}
    again = Scaling().run(context(cfg, "small", tiny_data_root, tmp_path / "again", ckpt))
    small, large = results["small"], results["large"]
    assert again.headline.value("honest") == small.headline.value("honest")  # same seed, same test loss
    for result in results.values():
        loss = result.headline
        assert (loss.name, loss.direction, loss.unit) == ("test_loss", "min", "nats")
        assert {n: s.role for n, s in loss.statistics.items()} == {"last": "honest", "final": "paper"}
        assert math.isfinite(loss.value("honest")) and loss.value("honest") == loss.value("paper")
        assert len(result.epochs) == 1 and "train_loss" in result.epochs[0]
        details = result.extra["scaling"]
        assert details["epochs"] == 1 and details["train_loss"] == [result.epochs[0]["train_loss"]]
        assert details["stage"] == "generator" and details["loss_key"] == "loss"
        assert details["eval"]["split"] == "test" and details["eval"]["samples"] > 0
        assert result.extra["checkpoint_load"]["loaded"] > 0
    assert small.extra["scaling"]["overrides"] == {"generator_depth": 1}
    assert small.extra["scaling"]["params_trained"] < large.extra["scaling"]["params_trained"]
    assert small.extra["scaling"]["params_total"] - small.extra["scaling"]["params_trained"] == \
        large.extra["scaling"]["params_total"] - large.extra["scaling"]["params_trained"]  # the same frozen part
    assert "point_mge large: " in large.extra["table_notes"][0] and "generator_num_heads=4" in \
        large.extra["table_notes"][0]


@pytest.mark.slow
def test_bench_run_trains_every_size_and_reports_the_scaling_law(suites, tiny_data_root):
    out = suites / "runs"
    assert main(["--quiet", "run", "suite=scaling", "method=point_mge", "profile=demo", f"data.root={tiny_data_root}",
                 f"output.dir={out}", "data.standin_size=tiny", "executor.workers=1", "tracking.enabled=false",
                 f"+overrides={suites / 'tiny.yaml'}"]) == 0
    records = load_records(out / "records")
    assert sorted(r.variant for r in records) == ["large", "medium", "small"]
    assert all(r.protocol == "scaling" and r.metric == "test_loss" for r in records)
    assert all(r.pretrain["load_report"]["kind"] == "frozen modules of the generation stage" for r in records)
    markdown = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "| small | medium | large |" in markdown and "test_loss in nats, lower is better" in markdown
    html = (out / "leaderboard" / "leaderboard.html").read_text()
    assert 'data-plot="scaling"' in html and "Fits: Point-MGE: b = " in html

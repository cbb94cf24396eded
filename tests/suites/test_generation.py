"""The generation protocol: the frame, the generation stage, and `bench run suite=generation` end to end with the toy
generator on the tiny stand-in (record results, roles, directions, units, the samples file, the details)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.cli import main
from bench.config import resolve, variant_config
from bench.data.base import build_dataset
from bench.data.shapenet15k import global_stats
from bench.errors import ConfigError
from bench.records import load_records
from suites.protocols.generation import Frame, Generation, generation_stage, model_frame
from tests.bench.kinds_support import STAGES_YAML, ToyGenerator, registered

ORDER = ["nna_cd", "nna_emd", "cov_cd", "cov_emd", "mmd_cd", "mmd_emd"]
TINY = ["profile=demo", "data.standin_size=tiny", "suite.npoints=64", "suite.finetune_epochs=2",
        "suite.variants=[airplane]", "pretrain.npoints=64", "pretrain.trainer.epochs=1",
        "pretrain.trainer.batch_size=4", "trainer.batch_size=4", "executor.workers=1", "tracking.enabled=false"]


@pytest.fixture()
def toys(tmp_path, monkeypatch):
    from bench import config

    folder = tmp_path / "suites"
    folder.mkdir()
    with registered(folder):
        monkeypatch.setattr(config, "SUITES_DIR", folder)
        yield folder


def run(tmp_path, data_root, *extra: str) -> int:
    return main(["--quiet", "run", "suite=generation", "method=toy_generator", f"data.root={data_root}",
                 f"output.dir={tmp_path / 'runs'}", *TINY, *extra])


@pytest.mark.slow
def test_the_toy_generator_runs_to_a_record_with_every_metric(toys, tmp_path, tiny_data_root):
    assert run(tmp_path, tiny_data_root) == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert (record.protocol, record.suite, record.variant, record.data_kind) == ("generation", "generation",
                                                                                 "airplane", "synthetic")
    assert [r.name for r in record.results] == ORDER and record.metric == "nna_cd"
    shapes = {r.name: (r.direction, r.unit, r.scale) for r in record.results}
    assert shapes["nna_cd"] == shapes["nna_emd"] == ("target:50", "%", 1.0)
    assert shapes["cov_cd"] == ("max", "%", 1.0) and shapes["mmd_cd"] == ("min", "", 1e3)
    assert shapes["mmd_emd"] == ("min", "", 1e2)
    runs = record.details["runs"]
    assert [r["generator_seed"] for r in runs] == [0, 1, 2]  # 1000 * job seed + sampling seed
    for result in record.results:
        assert {n: s.role for n, s in result.statistics.items()} == {"mean": "honest", "single": "paper",
                                                                      "std": "info"}
        values = [run[result.name] for run in runs]
        assert result.value("honest") == pytest.approx(statistics.fmean(values))
        assert result.value("paper") == values[0]
        assert result.statistics["std"].value == pytest.approx(statistics.stdev(values))
    assert len(record.epochs) == 2 and all("train_loss" in row for row in record.epochs)
    details = record.details
    assert details["sampler"] == {} and details["finetune_epochs"] == 2 and details["normalisation"] == "global"
    assert details["frame"]["kind"] == "global" and details["frame"]["scale"] > 0 and len(details["frame"]["mean"]) == 3
    assert details["reference"] == {"split": "val", "size": 4, "points": 64}
    assert details["noise_floor_nna"] == pytest.approx(100 * math.sqrt(0.25 / 8))
    assert set(details["nna"]) == {"nna_cd", "nna_emd"} and "acc_t" in details["nna"]["nna_cd"]
    assert details["emd_audit"]["pairs"] == 2  # the demo profile audits 2 pairs
    assert details["distance"]["emd_cost"] == "sqeuclidean"
    with np.load(details["samples_file"]) as saved:
        assert saved["samples"].shape == saved["refs"].shape == (4, 64, 3)
        raw = build_dataset("shapenet15k", tiny_data_root / "synthetic", "val", "airplane")
        assert np.abs(saved["refs"]).max() <= np.abs(raw.load(0)["xyz"]).max() * 1.5  # raw units, not the model's
    markdown = (tmp_path / "runs" / "leaderboard" / "leaderboard.md").read_text()
    assert "1-NNA noise floor ±17.7 points at n=4 (airplane)" in markdown and "| 1-NNA-CD |" in markdown
    html = (tmp_path / "runs" / "leaderboard" / "leaderboard.html").read_text()
    assert 'data-plot="samples"' in html


TWO_STAGES = """
pretrain:
  npoints: 64
  stages:
    - {name: template, trainer: {epochs: 1}}
    - {name: spread, trainer: {epochs: 0}, freeze: [template]}
"""


@pytest.mark.slow
def test_the_generation_stage_is_the_one_fine_tuned(toys, tmp_path, tiny_data_root, monkeypatch, capsys):
    stages = tmp_path / "stages.yaml"
    stages.write_text(TWO_STAGES)
    started = []
    monkeypatch.setattr(ToyGenerator, "on_stage_start", lambda self, stage: started.append(stage.name))
    assert run(tmp_path, tiny_data_root, f"+overrides={stages}") == 2  # two stages, no generation_stage: no guess
    assert "generation_stage is None" in capsys.readouterr().err
    assert not load_records(tmp_path / "runs" / "records")
    monkeypatch.setattr(ToyGenerator, "generation_stage", "template")
    started.clear()
    assert run(tmp_path, tiny_data_root, f"+overrides={stages}") == 0
    assert started == ["template"]  # both stages were cached by the first run; the protocol re-entered template
    (record,) = load_records(tmp_path / "runs" / "records")
    assert len(record.epochs) == 2


def test_no_fine_tuning_samples_the_pretrained_method_as_is(toys, tmp_path, tiny_data_root):
    assert run(tmp_path, tiny_data_root, "suite.finetune_epochs=0", "suite.figure_samples=0",
               "suite.sampling_seeds=[5]") == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert record.epochs == [] and record.details["samples_file"] is None
    assert record.details["runs"][0]["generator_seed"] == 5 and record.headline.statistics["std"].value == 0.0


def test_non_finite_samples_fail_naming_the_method(toys, tmp_path, tiny_data_root, monkeypatch, capsys):
    monkeypatch.setattr(ToyGenerator, "generate", lambda self, n, points, condition=None, generator=None:
                        torch.full((n, points, 3), float("nan")))
    assert run(tmp_path, tiny_data_root, "suite.finetune_epochs=0") == 3
    err = capsys.readouterr().err
    assert "toy_generator" in err and "NaN" in err
    assert not load_records(tmp_path / "runs" / "records")


def test_global_frame_is_the_train_mean_and_largest_norm(tiny_data_root):
    train = build_dataset("shapenet15k", tiny_data_root / "synthetic", "train", "chair")
    frame = model_frame(train, "global")
    clouds = np.stack([train.load(i)["xyz"] for i in range(len(train))])
    mean, _ = global_stats(clouds)
    assert np.allclose(frame.mean, mean.reshape(3))
    model = np.stack([frame.to_model(c) for c in clouds])
    assert np.linalg.norm(model, axis=-1).max() == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(model.reshape(-1, 3).mean(0), 0.0, atol=1e-5)
    assert np.allclose(frame.to_metric(model), clouds, atol=1e-5)  # back to raw units
    box = Frame("box")
    assert np.abs(box.to_model(clouds[0])).max() == pytest.approx(1.0)
    assert frame.as_dict()["mean"] == list(frame.mean) and box.as_dict()["kind"] == "box"


def config(*overrides: str, suite: str = "generation", profile: str = "demo"):
    return resolve(suite, "point_mae", profile=profile, overrides=list(overrides))


@pytest.mark.parametrize("override, needle", [
    ("suite.normalisation=unit", "suite.normalisation='unit'"),
    ("suite.reference_split=holdout", "suite.reference_split='holdout'"),
    ("suite.metric=acc", "acc"),
    ("suite.sampling_seeds=[]", "suite.sampling_seeds"),
    ("suite.sampling_seeds=[1,1]", "suite.sampling_seeds"),
    ("suite.emd_cost=l2", "suite.emd_cost"),
    ("suite.emd_method=sinkhorn", "suite.emd_method"),
    ("suite.finetune_epochs=-1", "suite.finetune_epochs"),
    ("suite.chunk_mb=0", "suite.chunk_mb"),
])
def test_check_names_the_bad_setting(override, needle):
    cfg = config(override)
    with pytest.raises(ConfigError, match=None) as err:
        Generation.check(cfg.suite)
    assert needle in str(err.value)


@pytest.mark.parametrize("profile", ["paper", "quick", "demo"])
@pytest.mark.parametrize(("other", "key", "value", "plain_value"), [
    ("generation_box", "normalisation", "box", "global"), ("generation_class", "condition", "class", "none")])
def test_the_sibling_suites_differ_from_the_global_one_only_in_name_and_their_key(profile, other, key, value,
                                                                                  plain_value):
    plain = {name: OmegaConf.to_container(config(suite=name, profile=profile), resolve=True)
             for name in ("generation", other)}
    for cfg in plain.values():
        assert cfg["seeds"] == [0]  # one generator per category in every profile
    sibling = plain[other]
    assert (sibling["suite"].pop("name"), sibling["suite"].pop(key)) == (other, value)
    glob = plain["generation"]
    assert (glob["suite"].pop("name"), glob["suite"].pop(key)) == ("generation", plain_value)
    assert sibling == glob


def test_the_suite_is_lion_table_1s_setting():
    suite = variant_config(config(profile="paper"), "airplane").suite
    assert (suite.npoints, suite.reference_split, suite.reference_size, suite.normalisation) == (2048, "val", 0,
                                                                                                "global")
    assert suite.emd_cost == "sqeuclidean" and list(suite.report.metrics) == ORDER and suite.metric == "nna_cd"
    assert list(suite.variants) == ["airplane", "chair", "car"]
    Generation.check(suite)


def test_generation_stage_lookup(toys, tmp_path):
    stages = tmp_path / "stages.yaml"
    stages.write_text(STAGES_YAML % 1)
    cfg = resolve("generation", "toy_generator", profile="demo", overrides=[f"+overrides={stages.resolve()}"])
    with pytest.raises(ConfigError, match="generation_stage is None"):
        generation_stage(cfg, ToyGenerator)
    found = generation_stage(cfg, type("Spread", (ToyGenerator,), {"generation_stage": "spread"}))
    assert found.name == "spread" and found.freeze == ["template"]
    assert generation_stage(resolve("generation", "toy_generator", profile="demo"), ToyGenerator).name == "pretrain"

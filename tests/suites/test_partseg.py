"""The ``partseg`` protocol: `bench run suite=shapenetpart` end to end on the tiny stand-in (records, finals,
both evaluations), and its pieces: equal-size batching, suite validation, per-metric best tracking."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bench.cli import main
from bench.config import resolve
from bench.errors import ConfigError
from bench.records import load_records
from bench.registry import load_plugins
from reports.layout import metric_label
from suites.protocols.partseg import SCORES, PartSeg, Scores, size_batches
from suites.protocols.toolkit import curve_result

load_plugins()

REPORT = ["inst_miou", "cls_miou", "inst_miou_all", "cls_miou_all"]


@pytest.fixture(scope="module")
def runs(tiny_data_root, tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("partseg")
    args = ["--quiet", "run", "suite=shapenetpart", "method=scratch,point_mae", *tiny_run,
            f"data.root={tiny_data_root}", f"output.dir={out}"]  # fmt: skip
    assert main(args) == 0
    return out


@pytest.mark.slow
def test_run_writes_records_with_both_evaluations(runs: Path) -> None:
    records = load_records(runs / "records")
    assert sorted(r.method for r in records) == ["point_mae", "scratch"]
    for record in records:
        assert record.metric == "inst_miou" and record.data_kind == "synthetic" and len(record.epochs) == 2
        for row in record.epochs:
            assert {f"test_{name}" for name in SCORES} <= set(row)
            assert all(0 <= row[f"test_{name}"] <= 100 for name in SCORES)
        final = record.flat()
        assert final["best"] == max(row["test_inst_miou"] for row in record.epochs)
        assert final["last"] == record.epochs[-1]["test_inst_miou"] == final["inst_miou_last"]
        for name in REPORT:
            assert final[f"{name}_best"] == max(row[f"test_{name}"] for row in record.epochs)
            assert final[f"{name}_last"] == record.epochs[-1][f"test_{name}"]
        assert record.config["suite"]["report"]["metrics"] == REPORT
        assert any("twice per batch" in d for d in record.details["deviations"])  # reference_double_step off
    point_mae = next(r for r in records if r.method == "point_mae")
    assert not any(k.startswith("cls_") for k in point_mae.pretrain["load_report"]["missing"])


@pytest.mark.slow
def test_leaderboard_has_a_column_per_report_metric(runs: Path) -> None:
    text = (runs / "leaderboard" / "leaderboard.md").read_text()
    assert "shapenetpart" in text and all(metric_label(name) in text for name in REPORT)


def test_size_batches_group_equal_sizes() -> None:
    assert size_batches([5, 7, 5, 5, 7, 9], 2) == [[0, 2], [3], [1, 4], [5]]
    assert size_batches([], 4) == []


def test_scores_restrict_accuracy_to_the_category() -> None:
    scores = Scores([[0, 1], [2, 3]])
    logits = torch.tensor([[[0.0, 1.0, 5.0, 0.0], [2.0, 0.0, 0.0, 9.0]]])  # the unrestricted argmax is category 1's
    scores.update(logits, torch.tensor([[1, 0]]), torch.tensor([0]))
    assert scores.compute() == pytest.approx({"inst_miou": 100.0, "cls_miou": 100.0, "acc": 100.0})


def test_summarize_tracks_each_best_independently() -> None:
    history = [{"test_inst_miou": 50.0, "test_cls_miou": 60.0}, {"test_inst_miou": 55.0, "test_cls_miou": 58.0}]
    results = [curve_result(n, n, history, 1 if n == "inst_miou" else None, PartSeg.rules(n, "inst_miou"))
               for n in ("inst_miou", "cls_miou")]
    values = [{k: s.value for k, s in r.statistics.items()} for r in results]
    assert values == [{"last": 55.0, "best": 55.0, "best_epoch": 1.0}, {"last": 58.0, "best": 60.0, "best_epoch": 0.0}]
    assert [(r.role("honest")[0], r.role("paper")[0]) for r in results] == [("last", "best")] * 2


@pytest.mark.parametrize("override,needle", [
    ({"report": {"metrics": ["cls_miou", "inst_miou"]}}, "must start with the headline"),
    ({"report": {"metrics": ["inst_miou", "miou"]}}, r"\['miou'\].*not scored"),
    ({"npoints": 16}, "fewer than suite.num_group"),
])  # fmt: skip
def test_bad_suite_settings_are_config_errors(override, needle) -> None:
    """(Voting is not a partseg setting at all: ``suite.vote`` is an unknown key, see the next test.)"""
    cfg = resolve("shapenetpart", "scratch", profile="demo")
    suite = OmegaConf.merge(cfg.suite, override)
    with pytest.raises(ConfigError, match=needle):
        PartSeg.check(suite)


def test_settings_of_other_protocols_are_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="vote"):
        resolve("shapenetpart", "scratch", profile="demo", overrides=["suite.vote.enabled=true"])


def test_paper_profile_is_the_reference_setting() -> None:
    cfg = resolve("shapenetpart", "point_mae", profile="paper")
    assert (cfg.suite.npoints, cfg.suite.num_group, cfg.suite.group_size, cfg.suite.num_classes) == (2048, 128, 32, 50)
    assert (cfg.trainer.lr, cfg.trainer.batch_size, cfg.trainer.epochs) == (2.0e-4, 16, 300)
    assert not math.isnan(cfg.trainer.weight_decay) and cfg.suite.metric == "inst_miou"
    assert cfg.trainer.schedule_convention == "reference_seg"  # segmentation/main.py L165, L207

"""The few-shot suite: its resolved settings, the seed-is-fold hook of the finetune protocol, and an end-to-end run
through the CLI on the tiny stand-in (records, leaderboard)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bench.api import JobContext
from bench.cli import main
from bench.config import resolve, variant_config
from bench.records import load_records
from methods.scratch import Scratch
from suites.protocols.toolkit import dataset_options, job_dataset, prepared


def test_suite_resolves_to_the_reference_protocol():
    paper = resolve("fewshot", "scratch", profile="paper")
    assert list(paper.seeds) == list(range(10))  # the 10 folds, despite the paper profile's 8 seeds
    assert paper.trainer.epochs == 150 and paper.trainer.lr == 5.0e-4 and paper.trainer.batch_size == 32
    assert list(paper.suite.variants) == ["5way10shot", "5way20shot", "10way10shot", "10way20shot"]
    assert not paper.suite.vote.enabled and paper.suite.num_classes == 40 and paper.suite.npoints == 1024
    assert paper.suite.report.paper_statistic == "fold_mean" and paper.suite.report.columns == "variants"
    assert list(resolve("fewshot", "point_mae", profile="demo").seeds) == [0, 1, 2]


@pytest.mark.parametrize("seed", [0, 6])
def test_the_job_seed_selects_the_fold(tiny_data_root, seed, tmp_path):
    cfg = variant_config(resolve("fewshot", "scratch", profile="demo"), "10way10shot")
    ctx = JobContext(cfg=cfg, method_cls=Scratch, variant="10way10shot", seed=seed,
                     data_root=tiny_data_root / "synthetic", workdir=tmp_path)
    assert dataset_options(ctx) == {"fold": seed}
    fold = job_dataset(ctx, "train", []).dataset
    assert fold.path.name == f"{seed}.pkl" and fold.path.parent.name == "10way_10shot"
    test = prepared(ctx, "test", [])
    expected = [int(fold.__class__(fold.root, "test", "10way10shot", fold=seed).load(i)["label"])
                for i in range(len(test))]  # fmt: skip
    assert test.labels().tolist() == expected


def test_scanobjectnn_jobs_get_no_fold_option(tiny_data_root, tmp_path):
    cfg = resolve("scanobjectnn", "scratch", profile="demo", overrides=["suite.dataset_options={}"])
    ctx = JobContext(cfg=variant_config(cfg, "objbg"), method_cls=Scratch, variant="objbg", seed=3,
                     data_root=tiny_data_root / "synthetic", workdir=tmp_path)
    assert dataset_options(ctx) == {}


@pytest.mark.slow
def test_fewshot_end_to_end_folds_as_seeds(tiny_data_root, tiny_run, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["--quiet", "run", "suite=fewshot", "method=scratch", *tiny_run, "seeds=[0,1]", "trainer.epochs=1",
            "suite.variants=[5way10shot]", "tracking.enabled=false", f"data.root={tiny_data_root}",
            f"output.dir={out}"]  # fmt: skip
    assert main(args) == 0
    records = sorted(load_records(out / "records"), key=lambda r: r.seed)
    assert [(r.suite, r.variant, r.seed, r.data_kind) for r in records] == [
        ("fewshot", "5way10shot", 0, "synthetic"), ("fewshot", "5way10shot", 1, "synthetic")]  # fmt: skip
    for record in records:
        assert len(record.epochs) == 1 and "vote" not in record.flat()
        assert all(math.isfinite(record.flat()[k]) for k in ("last", "best"))
        assert record.flat()["best"] == max(row["test_acc"] for row in record.epochs)
        assert record.config["suite"]["report"]["paper_statistic"] == "fold_mean"
    capsys.readouterr()
    assert main(["report", f"output.dir={out}"]) == 0
    shown = capsys.readouterr().out
    assert "fold mean" in shown and "5way10shot" in shown
    board = (out / "leaderboard" / "leaderboard.csv").read_text()
    assert "fewshot" in board
    best = [r.flat()["best"] for r in records]
    assert json.loads(_row(out)["best_values"]) == best
    assert float(_row(out)["best_mean"]) == pytest.approx(np.mean(best))


def _row(out) -> dict:
    """The few-shot row of the written leaderboard CSV."""
    table = pd.read_csv(out / "leaderboard" / "leaderboard.csv")
    return table[table["suite"] == "fewshot"].iloc[0].to_dict()

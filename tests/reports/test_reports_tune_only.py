"""`bench report` where only `bench tune` has run: the studies' history, importance and best trial, no records needed;
with records, the leaderboard and the tuned-vs-default tables together."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from bench.cli import main
from bench.records import write_record
from bench.tuning_report import param_importances
from reports.page import TUNING_ONLY

IMPORTANCE = {"trainer.weight_decay": 0.2, "trainer.lr": 0.8}


def bench_tune_summary(folder: Path) -> dict:
    """A summary.json as bench tune writes it (schema 1, with the plot files, override file and importances)."""
    trials = [{"number": i, "state": "COMPLETE", "value": 70.0 + i, "default": i == 0, "epochs_run": 3,
               "test_last": 69.0 + i, "duration_s": 1.0, "mlflow_run_id": None,
               "params": {"trainer.lr": 1e-4 * (i + 1), "trainer.weight_decay": 0.05}} for i in range(4)]
    return {"schema": 1, "study": "scanobjectnn-scratch", "suite": "scanobjectnn", "method": "scratch",
            "variant": "objbg", "profile": "demo", "data_kind": "synthetic", "metric": "val_acc",
            "direction": "maximize", "objective": "best", "trials": trials,
            "default": {"number": 0, "value": 70.0, "params": trials[0]["params"], "test_last": 69.0},
            "best": {"number": 3, "value": 73.0, "params": trials[3]["params"], "test_last": 72.0},
            "overrides_file": str(folder / "best_overrides.yaml"), "importance": IMPORTANCE,
            "plots": {"history": str(folder / "history.png"), "importance": str(folder / "importance.png")}}


@pytest.fixture
def tuned_only(tmp_path) -> Path:
    study = tmp_path / "runs" / "tuning" / "scanobjectnn-scratch"
    study.mkdir(parents=True)
    (study / "summary.json").write_text(json.dumps(bench_tune_summary(study)), encoding="utf-8")
    return tmp_path / "runs"


def test_report_with_only_tuning_studies(tuned_only, capsys):
    assert main(["report", f"output.dir={tuned_only}"]) == 0
    shown = capsys.readouterr().out
    html = (tuned_only / "leaderboard" / "leaderboard.html").read_text(encoding="utf-8")
    assert '<section id="tuning">' in html and 'data-plot="tuning"' in html and 'data-plot="importance"' in html
    assert "Best trial #3: val_acc 73 with trainer.lr=0.0004, trainer.weight_decay=0.05." in html
    override = tuned_only / "tuning" / "scanobjectnn-scratch" / "best_overrides.yaml"
    assert f"bench run suite=scanobjectnn method=scratch +overrides={override}" in html
    assert "No run records: nothing to report." not in html and '<a href="#tuning">' in html
    markdown = (tuned_only / "leaderboard" / "leaderboard.md").read_text(encoding="utf-8")
    assert TUNING_ONLY in markdown and "## Tuned vs default" in markdown and markdown in shown  # printed, too
    assert "| scanobjectnn-scratch | scanobjectnn/objbg | Scratch | val_acc | maximize | 70 | 73 | +3 |" in markdown
    assert "- parameter importance: trainer.lr 0.80, trainer.weight_decay 0.20" in markdown  # largest first
    assert f"- importance: {override.parent / 'importance.png'}" in markdown


def test_neither_records_nor_studies_is_a_clear_error(tmp_path, capsys):
    assert main(["report", f"output.dir={tmp_path / 'empty'}"]) == 2
    err = capsys.readouterr().err
    assert "no run records under" in err and "no tuning study under" in err and "bench tune" in err


def test_records_and_studies_report_together(tuned_only, make_record):
    for seed in (0, 1):
        write_record(tuned_only / "records", make_record(method="scratch", seed=seed))
    assert main(["--quiet", "report", f"output.dir={tuned_only}"]) == 0
    markdown = (tuned_only / "leaderboard" / "leaderboard.md").read_text(encoding="utf-8")
    assert TUNING_ONLY not in markdown and "## scanobjectnn — real data — profile paper" in markdown
    assert markdown.index("## scanobjectnn") < markdown.index("## Tuned vs default")
    html = (tuned_only / "leaderboard" / "leaderboard.html").read_text(encoding="utf-8")
    assert 'class="tuning"' in html and 'class="leaderboard"' in html


def test_bench_tune_writes_the_importances_the_report_draws():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: 10 * t.suggest_float("strong", 0, 1) + 0.01 * t.suggest_float("weak", 0, 1), n_trials=12)
    found = param_importances(study)
    assert list(found) == ["strong", "weak"] and found["strong"] > 0.9 and sum(found.values()) == pytest.approx(1.0)
    single = optuna.create_study()
    single.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert param_importances(single) is None  # fewer than two completed trials

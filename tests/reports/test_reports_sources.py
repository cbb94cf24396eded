"""`bench report` inputs: the records folder or an MLflow store (run_record.json of job runs), and their errors."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.errors import BenchError, ConfigError
from bench.records import current_command
from bench.tracking import MlflowTracker
from reports.leaderboard import summarize
from reports.sources import gather_records, records_from_mlflow


@pytest.fixture(scope="module")
def jobs(realistic):
    """Three ScanObjectNN seeds of one row, in job-id order."""
    return sorted(realistic[:3], key=lambda r: r.job_id)


@pytest.fixture(scope="module")
def store(tmp_path_factory, jobs):
    """An MLflow store (made once: creating one costs seconds) holding three job runs with records, a group run
    and a failed job without a record."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "pointbench", artifact_root=folder / "mlartifacts")
    group = tracker.open_run("sweep/x/group", "group", tags={"bench.stage": "group"})
    tracker.log_artifact_text(group, "{}", "notes.json")
    for record in reversed(jobs):
        run = tracker.open_run(f"sweep/x/{record.job_id}", f"seed {record.seed}", parent=group,
                               tags={"bench.stage": "job"})
        tracker.log_artifact_text(run, record.to_json(), "run_record.json")
        tracker.close_run(run)
    tracker.close_run(tracker.open_run("sweep/x/failed", "failed", parent=group, tags={"bench.stage": "job"}),
                      status="FAILED")
    return uri


def test_mlflow_records_equal_the_written_ones(store, jobs):
    got = records_from_mlflow(store)
    assert [r.to_json() for r in got] == [r.to_json() for r in jobs]  # sorted by job id, failed run skipped


def test_bench_report_reads_mlflow(store, jobs, tmp_path):
    out = tmp_path / "out"
    assert main(["--quiet", "report", f"output.dir={out}", f"tracking.uri={store}"]) == 0
    csv = (out / "leaderboard" / "leaderboard.csv").read_text(encoding="utf-8")
    assert csv == summarize(jobs).to_csv(index=False, lineterminator="\n")
    names = sorted(p.name for p in (out / "leaderboard").iterdir())
    assert names == ["leaderboard.csv", "leaderboard.html", "leaderboard.md", "leaderboard.tex",
                     "scanobjectnn-real-paper.tex"]  # the whole document, and the table's tabular to \input


def test_unknown_experiment_is_a_config_error(store):
    with pytest.raises(ConfigError, match="tracking.experiment"):
        records_from_mlflow(store, "nope")


def test_no_records_is_a_clear_error(tmp_path):
    with pytest.raises(BenchError, match="no run records under"):
        gather_records(tmp_path)
    assert main(["--quiet", "report", f"output.dir={tmp_path}/a b"]) == 2
    assert current_command() == f"bench --quiet report 'output.dir={tmp_path}/a b'"  # what new records carry

"""MLflow tracking: nested runs, reuse by key (no duplicates on resume), metrics and artifacts."""

from __future__ import annotations

import mlflow

from bench.tracking import MlflowTracker, default_uri, flatten


def test_flatten_nested_params():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": {}}) == {
        "a.b": "1", "a.c.d": "x", "e": "[1, 2]", "f": "{}"
    }


def test_default_uri_prefers_config_then_env(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_uri(tmp_path, None) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_uri(tmp_path, None) == "http://127.0.0.1:5000"
    assert default_uri(tmp_path, "sqlite:///x.db") == "sqlite:///x.db"


def test_nested_runs_are_reused_by_key(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "test", artifact_root=tmp_path / "artifacts")
    sweep = tracker.open_run("sweep/1", "sweep", params={"suite": "x"})
    child = tracker.open_run("sweep/1/a", "a", parent=sweep, params={"trainer": {"lr": 0.1}})
    tracker.log_metrics(child, {"test_acc": 50.0, "nan": float("nan")}, step=0)
    tracker.log_metrics(child, {"test_acc": 60.0}, step=1)
    tracker.log_artifact_text(child, "{}", "run_record.json")
    tracker.close_run(child)
    again = MlflowTracker(uri, "test")  # a second process resuming the sweep
    assert again.open_run("sweep/1/a", "a", parent=sweep) == child
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([tracker.experiment_id])
    assert len(runs) == 2
    child_run = client.get_run(child)
    assert child_run.data.tags["mlflow.parentRunId"] == sweep
    assert child_run.data.params["trainer.lr"] == "0.1"
    history = client.get_metric_history(child, "test_acc")
    assert [(m.step, m.value) for m in history] == [(0, 50.0), (1, 60.0)]
    assert "nan" not in child_run.data.metrics
    assert [a.path for a in client.list_artifacts(child)] == ["run_record.json"]

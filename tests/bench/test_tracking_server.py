"""``tracking.uri=http://...`` against a real ``mlflow server`` (SQLite backend, artifacts proxied through the server
with ``--serve-artifacts``): a tiny ``bench run`` arrives whole. Skips when the server cannot start here."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from bench.cli import main
from bench.records import load_records

pytestmark = pytest.mark.slow
STARTUP_TIMEOUT_S = 120  # the server's own start (database migration, app import) takes ~15 s on 2 busy cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1:<free port>; yields (url, artifact folder); stopped afterwards."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = (root / "server.log").open("w")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not healthy(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            tail = (root / "server.log").read_text()[-600:]
            pytest.skip(f"mlflow server did not start within {STARTUP_TIMEOUT_S} s: {tail}")
        time.sleep(0.5)
    yield url, root / "artifacts"
    _stop(proc)
    log.close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and the workers it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_sweep_arrives_whole_on_an_mlflow_server(server, tiny_data_root, tmp_path, monkeypatch):
    url, artifacts = server
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["--quiet", "run", "suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]", "seeds=[0]",
            "trainer.epochs=2", "trainer.batch_size=8", "data.standin_size=tiny", "suite.vote.times=1",
            f"data.root={tiny_data_root}", f"output.dir={tmp_path}", f"tracking.uri={url}",
            "tracking.experiment=server-test"]
    assert main(args) == 0
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store
    (record,) = load_records(tmp_path / "records")

    client = mlflow.MlflowClient(url)
    experiment = client.get_experiment_by_name("server-test")
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    stage = {run_id: r.data.tags["bench.stage"] for run_id, r in runs.items()}
    assert sorted(stage.values()) == ["group", "job", "sweep"]
    job = runs[record.mlflow_run_id]
    group = runs[job.data.tags["mlflow.parentRunId"]]
    assert stage[group.info.run_id] == "group" and stage[group.data.tags["mlflow.parentRunId"]] == "sweep"
    assert job.data.params["trainer.epochs"] == "2" and job.data.params["suite.name"] == "scanobjectnn"
    assert [m.step for m in client.get_metric_history(job.info.run_id, "test_acc")] == [0, 1]
    assert job.data.metrics["final_best"] == record.flat()["best"] and group.data.metrics["n_seeds"] == 1.0
    assert {a.path for a in client.list_artifacts(job.info.run_id)} >= {"run_record.json", "config.yaml"}
    local = Path(mlflow.artifacts.download_artifacts(run_id=job.info.run_id, artifact_path="run_record.json",
                                                     tracking_uri=url, dst_path=str(tmp_path / "download")))
    assert json.loads(local.read_text())["job_id"] == record.job_id
    assert list(artifacts.rglob("run_record.json"))  # uploaded through the server into its artifact folder

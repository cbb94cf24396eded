"""Executors: the process pool and the Slurm array (through submitit's local executor) produce the records of the
in-process run; MLflow runs written from worker processes nest under the sweep's group runs; SQLite under
concurrent writers loses nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import mlflow
import pytest
import submitit
import torch
from omegaconf import OmegaConf

from bench.cli import main
from bench.errors import ConfigError
from bench.executors import ProcessPool, Sequential, Slurm, make_executor, slurm_parameters
from bench.records import load_records
from bench.schema import ExecutorConfig
from bench.tracking import MlflowTracker, tracker_for

pytestmark = pytest.mark.slow

#: one method x one variant x two seeds, one thread each so every executor computes the same bits
SMALL = ["suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]", "seeds=[0,1]", "trainer.epochs=1",
         "trainer.batch_size=8", "data.standin_size=tiny", "suite.vote.times=1", "trainer.threads=1"]


def bench(*args: str) -> int:
    return main(["--quiet", "run", *args])


def comparable(records):
    """What must not depend on where a job ran: every epoch row (timings aside) and the final statistics."""
    return [(r.job_id, [{k: v for k, v in row.items() if "time" not in k} for row in r.epochs], r.flat())
            for r in records]


@pytest.fixture(scope="module", autouse=True)
def keep_torch_threads():
    """``trainer.threads=1`` sets torch's threads for this whole process; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sequential(tiny_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    assert bench(*SMALL, f"data.root={tiny_data_root}", f"output.dir={out}", "tracking.enabled=false") == 0
    records = load_records(out / "records")
    assert len(records) == 2
    return records


def test_make_executor_from_config(tmp_path):
    def make(**kw):
        return make_executor(OmegaConf.structured(ExecutorConfig(**kw)), tmp_path)

    assert isinstance(make(), Sequential)
    assert isinstance(make(workers=3), ProcessPool) and make(workers=3).workers == 3
    slurm = make(kind="slurm", partition="gpu", gpus=1, time_min=30, array_parallelism=4)
    assert isinstance(slurm, Slurm) and slurm.folder == (tmp_path / "slurm").resolve()
    assert slurm.parameters["slurm_partition"] == "gpu" and slurm.parameters["slurm_array_parallelism"] == 4
    assert slurm.parameters["gpus_per_node"] == 1 and slurm.parameters["timeout_min"] == 30
    for bad in ({"kind": "ray"}, {"workers": 0}):
        with pytest.raises(ConfigError, match="executor"):
            make(**bad)
    with pytest.raises(ConfigError, match="torchrun"):
        make_executor(OmegaConf.structured(ExecutorConfig(kind="slurm")), tmp_path, distributed=True)
    # under torchrun the ranks share each job: a pool asked for (e.g. by the demo profile) runs in-process
    assert isinstance(make_executor(OmegaConf.structured(ExecutorConfig(workers=2)), tmp_path, distributed=True),
                      Sequential)


def test_slurm_parameters_are_names_submitit_knows():
    shared, slurm = submitit.AutoExecutor._valid_parameters(), submitit.SlurmExecutor._valid_parameters()
    for name in slurm_parameters(ExecutorConfig(partition="p")):
        assert name in shared or (name.startswith("slurm_") and name.removeprefix("slurm_") in slurm), name


def test_process_pool_gives_the_sequential_records_and_nested_mlflow_runs(tiny_data_root, tmp_path, sequential):
    assert bench(*SMALL, "executor.workers=2", f"data.root={tiny_data_root}", f"output.dir={tmp_path}") == 0
    records = load_records(tmp_path / "records")
    assert comparable(records) == comparable(sequential)
    assert all("executor.workers=2" in r.command for r in records)  # written by the workers, with the command
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pointbench")
    runs = client.search_runs([experiment.experiment_id])
    stage = {r.info.run_id: r.data.tags["bench.stage"] for r in runs}
    jobs = [r for r in runs if stage[r.info.run_id] == "job"]
    (group,) = [r for r in runs if stage[r.info.run_id] == "group"]
    assert len(jobs) == 2 and all(r.data.tags["mlflow.parentRunId"] == group.info.run_id for r in jobs)
    assert stage[group.data.tags["mlflow.parentRunId"]] == "sweep" and group.data.metrics["n_seeds"] == 2.0
    for job in jobs:
        assert job.info.status == "FINISHED" and job.data.params["trainer.threads"] == "1"
        assert "run_record.json" in {a.path for a in client.list_artifacts(job.info.run_id)}


def test_slurm_array_through_submitit_runs_every_job_and_resumes(tiny_data_root, tmp_path, sequential, monkeypatch,
                                                                 capsys):
    arrays = []
    original = submitit.AutoExecutor.map_array

    def spy(self, fn, *iterables):
        arrays.append(len(iterables[0]))
        return original(self, fn, *iterables)

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", spy)
    args = [*SMALL, "executor.kind=slurm", "executor.cluster=local", f"data.root={tiny_data_root}",
            f"output.dir={tmp_path}", "tracking.enabled=false"]
    assert bench(*args) == 0
    assert arrays == [2]  # one array for the whole sweep
    assert comparable(load_records(tmp_path / "records")) == comparable(sequential)
    assert list((tmp_path / "slurm").rglob("*_log.out"))  # the tasks' submitit logs
    first = next((tmp_path / "records").rglob("*seed1.json"))
    first.unlink()  # as if that task had been lost: the next run submits only it
    capsys.readouterr()
    assert bench(*args) == 0
    assert arrays == [2, 1] and "ran 1 job(s), 1 already done" in capsys.readouterr().out


def _write_concurrently(uri: str, parent: str, worker: int) -> str:
    tracker = tracker_for(uri, "concurrent")
    run = tracker.open_run(f"job/{worker}", f"job {worker}", parent=parent, params={"worker": worker, "x": {"y": 1}})
    for step in range(30):
        tracker.log_metrics(run, {"loss": float(step), "acc": float(worker)}, step=step)
    tracker.log_artifact_text(run, f"{worker}", "run_record.json")
    tracker.close_run(run)
    return run


def test_sqlite_store_under_concurrent_writers_loses_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "concurrent", artifact_root=tmp_path / "artifacts")
    parent = tracker.open_run("group", "group")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        runs = pool.starmap(_write_concurrently, [(uri, parent, w) for w in range(4)])
    client = mlflow.MlflowClient(uri)
    for worker, run_id in enumerate(runs):
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent and run.info.status == "FINISHED"
        assert run.data.params == {"worker": str(worker), "x.y": "1"}
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(30))
        assert [a.path for a in client.list_artifacts(run_id)] == ["run_record.json"]


ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from bench.executors import ProcessPool
from bench.progress import NullProgress
import sleeper
ProcessPool(2).run(sleeper.sleep_long, [Path(sys.argv[1]) / "a", Path(sys.argv[1]) / "b"], NullProgress(),
                   lambda job: None)
"""
SLEEPER = """
import os, time
def sleep_long(path, progress):
    path.write_text(str(os.getpid()))
    time.sleep(120)
"""


def test_pool_workers_exit_when_the_run_is_killed(tmp_path):
    """SIGKILL of the parent skips every cleanup; the workers notice the reparenting and exit instead of training
    on as orphans."""
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "sleeper.py").write_text(SLEEPER)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT, str(tmp_path)], env=env)
    marks = [tmp_path / "a", tmp_path / "b"]
    deadline = time.monotonic() + 120
    while not all(m.exists() and m.read_text() for m in marks) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(m.read_text()) for m in marks]
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not Path(f"/proc/{pid}/stat").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    deadline = time.monotonic() + 30
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = [p for p in workers if alive(p)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"pool workers {survivors} outlived their killed parent"

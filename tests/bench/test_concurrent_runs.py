"""Two ``bench run`` processes on one output folder, through the real CLI (issue 15, item 3): started together on a
fresh folder they both succeed (the MLflow store is created once) and divide the jobs (one run per job, every
epoch logged once); one started while the other pre-trains waits for that pre-training instead of repeating it;
and when the other is SIGKILLed mid-job, the survivor takes its job over from its last.pt and closes its runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from bench.records import load_records

pytestmark = pytest.mark.slow

#: a scratch or point_mae sweep of two seeds on objbg, in seconds on the tiny stand-in
ARGS = ["suite=scanobjectnn", "suite.variants=[objbg]", "seeds=[0,1]", "trainer.epochs=2", "trainer.batch_size=8",
        "pretrain.trainer.epochs=1", "pretrain.trainer.batch_size=8", "data.standin_size=tiny", "executor.workers=1"]

#: process A of the take-over test: waits for the file ``go`` before pre-training (holding the pre-training's
#: lease), and hangs in the first job it runs after its epoch 0 (saved and logged), until it is killed
SLOW_A = """
import sys, time
from pathlib import Path
import bench.pretraining as pretraining
import bench.trainer as trainer
flags = Path(sys.argv[1])
train_stage, save_last = pretraining.run_stage, trainer.Trainer._save_last
def run_stage(*args, **kwargs):
    (flags / "pretraining").touch()
    while not (flags / "go").exists():
        time.sleep(0.1)
    return train_stage(*args, **kwargs)
def hang_at_epoch_1(self, model, optimizer, epoch, result):
    if epoch == 1:
        (flags / "hanging").touch()
        time.sleep(600)
    return save_last(self, model, optimizer, epoch, result)
pretraining.run_stage, trainer.Trainer._save_last = run_stage, hang_at_epoch_1
from bench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_DATA", "MLFLOW_TRACKING_URI")}
    return {**env, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


def _start(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "w") as handle:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, *argv], stdout=handle, stderr=subprocess.STDOUT, env=_env(),
                                cwd=cwd)


def _bench(args: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    return _start(["-m", "bench.cli", "run", *args], log, cwd)


def _wait_for(what, timeout: float, procs: list[subprocess.Popen], why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        dead = [p for p in procs if p.poll() is not None]
        assert not dead and time.monotonic() < deadline, f"{why}: timed out or a process ended ({dead})"
        time.sleep(0.1)


def _runs(out: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pointbench").experiment_id
    return client, client.search_runs([experiment], max_results=1000)


def _by_stage(runs) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.data.tags["bench.stage"], []).append(run)
    return out


def _assert_one_finished_run_per_job_with_each_epoch_once(out: Path) -> None:
    client, runs = _runs(out)
    assert {r.info.status for r in runs} == {"FINISHED"}, [(r.info.run_name, r.info.status) for r in runs]
    stages = _by_stage(runs)
    assert len(stages["sweep"]) == 1 and len(stages["group"]) == 1
    assert sorted(r.data.tags["bench.seed"] for r in stages["job"]) == ["0", "1"]  # one run per job
    for job in stages["job"]:
        assert [m.step for m in client.get_metric_history(job.info.run_id, "test_acc")] == [0, 1]
    group = stages["group"][0].info.run_id
    assert len(client.get_metric_history(group, "n_seeds")) == 1  # the second collector logged nothing again


def test_two_processes_started_together_on_a_fresh_folder_divide_the_jobs(tiny_data_root, tmp_path):
    out = tmp_path / "runs"
    args = [*ARGS, "method=scratch", f"data.root={tiny_data_root}", f"output.dir={out}"]
    procs = [_bench(args, tmp_path / f"{name}.log", tmp_path) for name in "ab"]
    codes = [p.wait(timeout=240) for p in procs]
    logs = [(tmp_path / f"{name}.log").read_text() for name in "ab"]
    assert codes == [0, 0], logs
    assert not any("Traceback" in log for log in logs), logs  # before: "duplicate column name: step"
    records = load_records(out / "records")
    assert sorted(r.job_id for r in records) == ["scanobjectnn/objbg/scratch/seed0", "scanobjectnn/objbg/scratch/seed1"]
    _assert_one_finished_run_per_job_with_each_epoch_once(out)


def test_a_pretraining_is_waited_for_and_a_killed_job_is_taken_over(tiny_data_root, tmp_path):
    out, flags = tmp_path / "runs", tmp_path / "flags"
    flags.mkdir()
    args = [*ARGS, "method=point_mae", f"data.root={tiny_data_root}", f"output.dir={out}"]
    a = _start(["-c", SLOW_A, str(flags), "run", *args], tmp_path / "a.log", tmp_path)
    procs = [a]
    try:
        _wait_for(lambda: (flags / "pretraining").exists(), 120, procs, "A pre-trains")
        b = _bench(args, tmp_path / "b.log", tmp_path)
        procs.append(b)
        b_log = tmp_path / "b.log"
        _wait_for(lambda: "waiting for another process's pre-training" in b_log.read_text(), 120, procs, "B waits")
        (flags / "go").touch()
        _wait_for(lambda: (flags / "hanging").exists() and "waiting for 1 job(s)" in b_log.read_text(), 120, procs,
                  "A hangs in a job, B waits for it")
        a.send_signal(signal.SIGKILL)  # between epochs: its epoch 0 is saved (last.pt) and logged, its runs RUNNING
        a.wait(timeout=30)
        assert b.wait(timeout=240) == 0, b_log.read_text()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    log = b_log.read_text()
    assert "taking over 1 job(s)" in log and "pre-training point_mae: cached" in log, log
    assert len(list((out / "pretrain").glob("*/pretrain.pth"))) == 1
    assert not list((out / "pretrain").glob("*/last.pt"))
    assert len(load_records(out / "records")) == 2
    _, runs = _runs(out)
    pretrain = _by_stage(runs)["pretrain"]
    assert len(pretrain) == 1  # B did not pre-train again
    _assert_one_finished_run_per_job_with_each_epoch_once(out)  # the killed job's run reopened and finished by B

"""Ctrl-C (bench.interrupt, bench.executors.ProcessPool): the stop flag stops a Trainer at its next step with the
``last.pt`` of its last finished epoch kept; end to end through the CLI, a pooled sweep (``executor.workers=2``) stops
on the first SIGINT sent to its process group, as a terminal's Ctrl-C is (the queued jobs never start, the running
ones' MLflow runs are closed KILLED, exit 130 within seconds, no traceback) and quits at once on a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bench.errors import INTERRUPTED_EXIT
from bench.interrupt import raise_if_stopped, set_stop_event, stop_requested
from bench.schema import TrainerConfig
from bench.trainer import Trainer

#: the CLI with Python's own SIGINT handler, even when the test runner was started with SIGINT ignored (a
#: background job of a script), as it is in a terminal
LAUNCH = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "from bench.cli import main; sys.exit(main(sys.argv[1:]))")
#: six jobs on two workers, each far longer than the test: four are still queued when the first one trains
POOLED = ["suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]", "seeds=[0,1,2,3,4,5]", "trainer.epochs=50",
          "trainer.batch_size=8", "data.standin_size=tiny", "suite.vote.times=1", "trainer.threads=1",
          "executor.workers=2"]
SEEDS = range(6)
#: what the progress relay prints when a worker's Trainer begins a job
STARTED = "started at epoch"


class CliProcess:
    """``bench run`` in its own process group; its stderr lines are collected as they come."""

    def __init__(self, cwd: Path, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("BENCH_DATA", "MLFLOW_TRACKING_URI")}
        env.update(OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "run", *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, count: int = 1, timeout: float = 120.0) -> None:
        """Until ``count`` stderr lines contain ``text``; fails the test (and kills the run) on a timeout or exit."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {count} line(s) with {text!r} (exit {self.proc.returncode}):\n{self.stderr}")
            time.sleep(0.05)

    def interrupt(self) -> float:
        """SIGINT to the whole process group (a terminal's Ctrl-C); returns when it was sent."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return time.monotonic()

    def finish(self, timeout: float = 60.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not exit within {timeout} s:\n{self.stderr}")
        self._reader.join(timeout=10)
        return rc

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def workers(self) -> list[int]:
        """The pids of the pool's worker processes (children of the run started by multiprocessing's spawn)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children if b"spawn_main" in _cmdline(int(pid))]

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def job_id(seed: int) -> str:
    return f"scanobjectnn/objbg/scratch/seed{seed}"


def work_folders(out: Path, seed: int) -> list[Path]:
    return list((out / "work").glob(f"scanobjectnn/scratch-*/objbg/seed{seed}"))


# --- the stop flag -----------------------------------------------------------------------------------------------
@pytest.fixture()
def stop_event():
    event = threading.Event()  # what a pool worker gets is a multiprocessing Event: the same is_set()
    set_stop_event(event)
    yield event
    set_stop_event(None)


def test_without_an_event_nothing_is_ever_stopped():
    set_stop_event(None)
    assert not stop_requested()
    raise_if_stopped()  # the parent process, an in-process run: no-op


def test_a_set_event_raises_keyboard_interrupt(stop_event):
    raise_if_stopped()
    stop_event.set()
    assert stop_requested()
    with pytest.raises(KeyboardInterrupt):
        raise_if_stopped()


def _data() -> TensorDataset:
    class Dicts(TensorDataset):
        def __getitem__(self, index):
            x, y = super().__getitem__(index)
            return {"xyz": x, "label": y}

    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    return Dicts(x, x.sum(-1))


def test_trainer_stops_at_its_next_step_keeping_the_last_finished_epoch(tmp_path, stop_event):
    """4 batches per epoch; the flag is set during step 2 of epoch 1 (0-based): step 3 never runs, last.pt holds
    epoch 0, and the next fit resumes from it."""
    steps: list[tuple[int, int]] = []
    model = nn.Linear(3, 1)

    def step(m, batch):
        steps.append((len(steps) // 4, len(steps) % 4))
        if steps[-1] == (1, 1):
            stop_event.set()
        return {"loss": ((m(batch["xyz"]).squeeze(-1) - batch["label"]) ** 2).mean()}

    cfg = TrainerConfig(epochs=3, batch_size=16, warmup_epochs=0)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, seed=0, workdir=tmp_path).fit(model, _data(), step)
    assert steps == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 0
    stop_event.clear()
    result = Trainer(cfg, seed=0, workdir=tmp_path).fit(model, _data(), step)
    assert result.resumed_from == 0 and len(result.history) == 3


# --- end to end: Ctrl-C of a pooled sweep ------------------------------------------------------------------------
@pytest.mark.slow
def test_first_ctrl_c_stops_the_pooled_sweep_within_seconds(tiny_data_root, tmp_path):
    out = tmp_path / "out"
    run = CliProcess(tmp_path, [*POOLED, f"data.root={tiny_data_root}", f"output.dir={out}"])
    run.wait_for(STARTED, count=2)  # both workers are in their Trainer (a job's set-up has no step to stop at)
    sent = run.interrupt()
    rc = run.finish()
    took = time.monotonic() - sent
    assert rc == INTERRUPTED_EXIT and took < 15, (rc, took, run.stderr)
    assert "Traceback" not in run.stderr
    assert "stop at their next step; Ctrl-C again to quit at once" in run.stderr
    assert not list((out / "records").rglob("*.json"))  # no job finished, none of the queued ones ran
    import mlflow  # here: the pool tests' workers import this module, and need no MLflow

    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pointbench")
    jobs = {int(r.data.tags["bench.seed"]): r.info.status
            for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("bench.stage") == "job"}
    assert len(jobs) == 2 and set(jobs.values()) == {"KILLED"}, jobs  # one job per worker began
    for seed in set(SEEDS) - set(jobs):
        assert not work_folders(out, seed), f"queued job seed{seed} started"


@pytest.mark.slow
def test_second_ctrl_c_quits_at_once(tiny_data_root, tmp_path):
    """The workers are frozen (SIGSTOP) first, as jobs deep in a long step would be: the first Ctrl-C then waits
    for them, and the second must not."""
    out = tmp_path / "out"
    run = CliProcess(tmp_path, [*POOLED, f"data.root={tiny_data_root}", f"output.dir={out}", "tracking.enabled=false"])
    run.wait_for(STARTED)
    workers = run.workers()
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    run.interrupt()
    run.wait_for("Ctrl-C again to quit at once", timeout=15)
    sent = run.interrupt()
    rc = run.finish()
    took = time.monotonic() - sent
    assert rc == INTERRUPTED_EXIT and took < 3, (rc, took, run.stderr)
    assert "Traceback" not in run.stderr and "interrupted twice" in run.stderr
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)], "pool workers outlived the run"
    assert not list((out / "records").rglob("*.json"))

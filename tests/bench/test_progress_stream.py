"""Progress as it happens: the pool reports each job when it finishes (not when the last one does), the workers'
epoch progress reaches the parent, and off a terminal every line is timestamped and unwrapped. End to end: a pooled
sweep whose stderr is a pipe prints its first job line while later jobs still run."""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from bench.executors import ProcessPool
from bench.progress import ConsoleProgress, NullProgress, ProgressRelay, WorkerProgress, duration, once

STAMP = re.compile(r"^\d\d:\d\d:\d\d ")


# --- worker functions (module level: the spawned workers import them by name) -------------------------------------
def wait_for_release(job: tuple[str, Path], progress) -> bool:
    """Job "fast" returns at once; job "slow" waits (at most 60 s) for the file the parent's on_done of "fast"
    writes, and says whether it came."""
    name, release = job
    if name == "fast":
        return True
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not release.exists():
        raise TimeoutError("on_done of the fast job was not called while the slow job ran")
    return True


def train_three_epochs(job: str, progress) -> str:
    """What the Trainer does with its progress, from a worker."""
    progress.start(f"train {job}", total=3)
    for epoch in range(3):
        progress.advance({"epoch": float(epoch), "train_loss": 1.0 / (epoch + 1)})
    progress.finish()
    progress.message(f"{job} says hello")
    return job


class Recorder(NullProgress):
    """Every task_* / message call, in order, with a thread-safe list append."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def task_start(self, key, desc, total, completed=0):
        self.calls.append(("start", key, desc, total, completed))

    def task_advance(self, key, row):
        self.calls.append(("advance", key, row["train_loss"]))

    def task_finish(self, key):
        self.calls.append(("finish", key))

    def message(self, text):
        self.calls.append(("message", text))


# --- the pool -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pool_reports_each_job_as_it_finishes(tmp_path):
    """on_done("fast") must run while "slow" is still running: the slow job waits for the file it writes. A pool
    that reported only at the end (the old FIRST_EXCEPTION wait) fails this with the slow job's TimeoutError."""
    release = tmp_path / "released"
    done = []

    def on_done(job):
        done.append(job[0])
        if job[0] == "fast":
            release.write_text("go")

    ProcessPool(2).run(wait_for_release, [("slow", release), ("fast", release)], NullProgress(), on_done)
    assert done == ["fast", "slow"]


@pytest.mark.slow
def test_worker_progress_is_relayed_to_the_parent_per_worker():
    recorder = Recorder()
    ProcessPool(2).run(train_three_epochs, ["a", "b", "c"], recorder, lambda job: None)
    keys = {call[1] for call in recorder.calls if call[0] != "message"}
    assert keys <= {"w1", "w2"} and keys
    for job in "abc":  # each job's run: start, three epochs, finish, on one worker, in that order
        (start,) = [i for i, c in enumerate(recorder.calls) if c[0] == "start" and c[2] == f"train {job}"]
        key = recorder.calls[start][1]
        assert recorder.calls[start][3:] == (3, 0)
        own = [c for c in recorder.calls[start + 1:] if c[1] == key][:4]
        assert own == [("advance", key, 1.0), ("advance", key, 0.5), ("advance", key, 1.0 / 3), ("finish", key)]
    assert sorted(c[1] for c in recorder.calls if c[0] == "message") == ["a says hello", "b says hello",
                                                                        "c says hello"]


def test_relay_numbers_workers_and_closes_what_a_dead_worker_left_open():
    recorder = Recorder()
    relay = ProgressRelay(recorder, multiprocessing.get_context("spawn"))
    with relay:
        relay.replay(111, "start", ("train x", 5, 2))
        relay.replay(222, "start", ("train y", 4, 0))
        relay.replay(111, "advance", ({"train_loss": 0.25},))
        relay.replay(111, "finish", ())
    assert recorder.calls == [("start", "w1", "train x", 5, 2), ("start", "w2", "train y", 4, 0),
                              ("advance", "w1", 0.25), ("finish", "w1"), ("finish", "w2")]


def test_worker_progress_without_a_queue_does_nothing():
    progress = WorkerProgress()
    progress.start("x", 3)
    progress.advance({"train_loss": 1.0})
    progress.finish()  # no relay queue in this process: nothing raised, nothing sent


# --- the console off a terminal ---------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[ConsoleProgress, io.StringIO, Clock]:
    stream, clock = io.StringIO(), Clock()
    return ConsoleProgress(Console(file=stream, width=40), line_every_s=10.0, clock=clock), stream, clock


def test_off_a_terminal_lines_are_timestamped_and_never_wrapped():
    progress, stream, _ = plain_console()
    long = "scanobjectnn/objbg/point_mae/seed0: " + "x" * 120
    progress.message(long)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and STAMP.match(lines[0]) and lines[0].endswith(long)


def test_epoch_lines_are_throttled_and_the_last_epoch_always_prints():
    progress, stream, clock = plain_console()
    progress.start("pretrain point_mae", total=4)
    for step in (3.0, 3.0, 5.0, 1.0):  # epochs end at +3, +6, +11, +12 s
        clock.now += step
        progress.advance({"epoch": 0.0, "train_loss": 0.5})
    clock.now += 1.0
    progress.finish()
    text = [STAMP.sub("", line) for line in stream.getvalue().splitlines()]
    assert text == [
        "pretrain point_mae: started at epoch 0/4",
        "pretrain point_mae: epoch 3/4  train_loss=0.5  (eta 4 s)",  # 11 s for 3 epochs -> 3.67 s x 1 left
        "pretrain point_mae: epoch 4/4  train_loss=0.5",
        "pretrain point_mae: done in 13.0 s",
    ]


def test_sweep_counts_jobs_and_estimates_from_the_finished_ones():
    progress, stream, clock = plain_console()
    progress.sweep_start("scanobjectnn sweep", total=4)
    clock.now += 30.0
    progress.job_done("a: last 90.00")
    clock.now += 10.0
    progress.job_done("b: last 91.00")  # 40 s for 2 jobs -> 20 s x 2 left
    clock.now += 40.0
    progress.job_done("c: last 92.00")
    progress.job_done("d: last 93.00")
    progress.sweep_finish()
    text = [STAMP.sub("", line) for line in stream.getvalue().splitlines()]
    assert text == ["scanobjectnn sweep: 4 job(s) to run", "[1/4] a: last 90.00  (eta 1m30s)",
                    "[2/4] b: last 91.00  (eta 40 s)", "[3/4] c: last 92.00  (eta 27 s)", "[4/4] d: last 93.00"]


def test_a_worker_status_prints_no_second_done_line():
    progress, stream, clock = plain_console()
    progress.task_start("w2", "scanobjectnn/objbg scratch seed 1", total=1)
    clock.now += 2.0
    progress.task_advance("w2", {"train_loss": 2.0, "test_acc": 50.0})
    progress.task_finish("w2")
    text = [STAMP.sub("", line) for line in stream.getvalue().splitlines()]
    assert text == ["w2 scanobjectnn/objbg scratch seed 1: started at epoch 0/1",
                    "w2 scanobjectnn/objbg scratch seed 1: epoch 1/1  train_loss=2  test_acc=50"]


def test_on_a_terminal_bars_come_and_go_and_lines_print_above():
    stream = io.StringIO()
    progress = ConsoleProgress(Console(file=stream, force_terminal=True, width=100))
    progress.sweep_start("sweep", total=1)
    progress.task_start("w1", "job", total=2)
    progress.task_advance("w1", {"train_loss": 1.0})
    progress.message("a notice with [brackets] kept")
    progress.task_finish("w1")
    progress.job_done("job: last 1.00")
    progress.sweep_finish()
    assert progress._bars is None  # every bar gone: the live display stopped
    assert "a notice with [brackets] kept" in stream.getvalue() and "[1/1] job: last 1.00" in stream.getvalue()
    progress.start("pretrain x", total=3)  # a run that raised: it never finishes, close() stops its bar
    assert progress._bars is not None
    progress.close()
    assert progress._bars is None


def test_once_and_duration():
    seen = []
    note = once(seen.append)
    for text in ("no shapenet55 data", "no shapenet55 data", "cached", "no shapenet55 data"):
        note(text)
    assert seen == ["no shapenet55 data", "cached"]
    assert [duration(s) for s in (0, 0.4, 42, 185, 7620)] == ["0 s", "1 s", "42 s", "3m05s", "2h07m"]


# --- end to end -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pooled_sweep_prints_job_lines_while_it_runs(tiny_data_root, tmp_path):
    """``bench run`` with two workers and three jobs, stderr a pipe: when the first job line arrives, the sweep is
    still running (the third job cannot have finished: it starts only after one of the first two ended)."""
    out = tmp_path / "runs"
    args = ["suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]", "seeds=[0,1,2]", "trainer.epochs=2",
            "trainer.batch_size=8", "data.standin_size=tiny", "suite.vote.times=1", "executor.workers=2",
            "tracking.enabled=false", f"data.root={tiny_data_root}", f"output.dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env)
    lines, first_job = [], None
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if first_job is None and "[1/3] scanobjectnn/objbg/scratch/seed" in line:
            first_job = (proc.poll(), len(list(out.glob("records/**/*.json"))))
    assert proc.wait(timeout=600) == 0, "\n".join(lines)
    assert first_job is not None, "\n".join(lines)
    assert first_job[0] is None and first_job[1] < 3, f"the first job line came at the end: {first_job}"
    ours = [line for line in lines if STAMP.match(line)]
    assert any(re.search(r" w[12] scanobjectnn/objbg scratch seed \d: started at epoch 0/2$", s) for s in ours)
    assert any(re.search(r" w[12] scanobjectnn/objbg scratch seed \d: epoch 2/2  train_loss=", s) for s in ours)
    assert [s for s in ours if "] scanobjectnn/objbg/scratch/seed" in s][-1].split(" ", 1)[1].startswith("[3/3]")

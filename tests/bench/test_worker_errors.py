"""One clear error instead of a traceback: a pool worker killed under its job is a WorkerError (exit 7) naming the
jobs that were running; a NaN loss is a TrainingError (exit 6) naming the job, epoch, step and lr with a lower-lr
hint; and a fit first removes the stale temp files a killed atomic write left in its work folder."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from torch import nn

from bench.cli import main
from bench.errors import TrainingError, WorkerError
from bench.executors import ProcessPool
from bench.io import remove_stale_temps
from bench.progress import NullProgress
from bench.schema import TrainerConfig
from bench.trainer import NonFiniteLoss, Trainer
from tests.bench.test_interrupt import POOLED, STARTED, CliProcess, _data, job_id


def _regression(model, batch):
    return {"loss": ((model(batch["xyz"]).squeeze(-1) - batch["label"]) ** 2).mean()}


def _nan_at(epoch: int, step: int):
    """The regression step, with a NaN loss at (epoch, step), both 0-based; 4 steps per epoch (64 rows / 16)."""
    calls = []

    def step_fn(model, batch):
        calls.append(None)
        loss = _regression(model, batch)["loss"]
        return {"loss": loss * float("nan") if len(calls) == epoch * 4 + step + 1 else loss}

    return step_fn


# --- NaN loss ----------------------------------------------------------------------------------------------------
def test_non_finite_loss_names_the_run_epoch_step_and_lr():
    cfg = TrainerConfig(epochs=3, batch_size=16, lr=0.02, warmup_epochs=0, min_lr=0.0, grad_clip=None)
    trainer = Trainer(cfg, seed=0, desc="suite/variant method seed 3")
    with pytest.raises(TrainingError) as caught:
        trainer.fit(nn.Linear(3, 1), _data(), _nan_at(epoch=1, step=2))
    err = caught.value
    assert isinstance(err, NonFiniteLoss) and isinstance(err, FloatingPointError) and err.exit_code == 6
    text = str(err)
    assert text.startswith("suite/variant method seed 3: non-finite loss nan at epoch 2/3, step 3/4 of that epoch")
    assert "(global step 7)" in text  # 4 steps of epoch 1, then steps 1..3 of epoch 2
    assert "lr 0.015 at that step" in text  # cosine: 0.5 * 0.02 * (1 + cos(pi / 3))
    assert "now 0.02, try e.g. 0.002" in text and "pretrain.trainer.lr" in text and "trainer.grad_clip=1.0" in text
    assert "\n" not in text


def test_nan_loss_through_the_cli_is_exit_6_without_a_traceback(tiny_data_root, isolated_env, capsys):
    args = ["--quiet", "run", "suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]", "seeds=[0]",
            "trainer.epochs=2", "trainer.batch_size=8", "data.standin_size=tiny", "suite.vote.times=1",
            "executor.workers=1", "tracking.enabled=false", "trainer.lr=1000", f"data.root={tiny_data_root}",
            f"output.dir={isolated_env / 'out'}"]
    assert main(args) == TrainingError.exit_code
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("bench: error:")]
    assert re.search(r"scanobjectnn/objbg scratch seed 0: non-finite loss \S+ at epoch \d/2, step \d+/\d+ of that "
                     r"epoch \(global step \d+\), lr \S+ at that step", line), line
    assert "trainer.lr" in line and "now 1000, try e.g. 100" in line
    assert "Traceback" not in err


# --- stale temp files --------------------------------------------------------------------------------------------
def test_fit_removes_the_temp_files_a_killed_write_left(tmp_path):
    work, outside = tmp_path / "work", tmp_path / "outside.pt"
    work.mkdir()
    outside.write_text("not ours")
    stale = [work / ".last.pt.abc123.tmp", work / ".best.pt.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    (work / ".link.pt.x1.tmp").symlink_to(outside)
    kept = [work / "notes.tmp", work / ".hidden", work / "best.pt.tmp"]
    for path in kept:
        path.write_text("keep")
    (work / ".folder.tmp").mkdir()
    Trainer(TrainerConfig(epochs=1, batch_size=16), seed=0, workdir=work).fit(nn.Linear(3, 1), _data(), _regression)
    assert not any(p.exists() or p.is_symlink() for p in [*stale, work / ".link.pt.x1.tmp"])
    assert outside.read_text() == "not ours"  # the link went, not what it points to
    assert all(p.exists() for p in kept) and (work / ".folder.tmp").is_dir() and (work / "last.pt").exists()
    assert remove_stale_temps(work) == []


# --- a pool worker killed ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkilled_pool_worker_is_a_worker_error_naming_the_running_jobs(tiny_data_root, tmp_path):
    out = tmp_path / "out"
    run = CliProcess(tmp_path, [*POOLED, f"data.root={tiny_data_root}", f"output.dir={out}", "tracking.enabled=false"])
    run.wait_for(STARTED, count=2)  # both workers train a job
    started = sorted(int(s) for s in re.findall(r"seed (\d+): started at epoch", run.stderr))
    os.kill(run.workers()[0], signal.SIGKILL)
    assert run.finish() == WorkerError.exit_code, run.stderr
    assert "Traceback" not in run.stderr
    (line,) = [line for line in run.lines if line.startswith("bench: error:")]
    assert "a worker process died while it ran job(s) " in line and "resumes from its last.pt" in line
    named = sorted(int(s) for s in re.findall(r"scanobjectnn/objbg/scratch/seed(\d+)", line))
    assert named == started and len(started) == 2, (line, started)
    assert all(job_id(seed) in line for seed in started)


# --- a failed job in the pool --------------------------------------------------------------------------------------
def began_or_failed(job: tuple[str, Path], progress) -> str:
    """Marks that it began; "bad" fails once "slow" has begun, "slow" returns once "bad" has begun (each waits at
    most 60 s), so "slow" is running when "bad" fails however slowly the spawned workers start."""
    name, marks = job
    (marks / name).write_text("began")
    other = {"bad": "slow", "slow": "bad"}.get(name)
    deadline = time.monotonic() + 60
    while other is not None and not (marks / other).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if name == "bad":
        raise TrainingError("job bad diverged")
    time.sleep(0.5)  # "bad" has failed by now
    return name


@pytest.mark.slow
def test_a_failed_job_stops_the_pool_after_the_running_one_and_is_raised(tmp_path):
    """The worker of "bad" picks up no next job (nor does the other one), "slow" finishes and is reported."""
    done = []
    jobs = [(name, tmp_path) for name in ("slow", "bad", "q1", "q2", "q3")]
    with pytest.raises(TrainingError, match="job bad diverged"):
        ProcessPool(2).run(began_or_failed, jobs, NullProgress(), lambda job: done.append(job[0]))
    assert done == ["slow"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "slow"]

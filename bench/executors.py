"""Executors: where a sweep's jobs run. The runner alone plans jobs; an executor only runs the ones it is handed.

Contract: ``executor.run(fn, jobs, progress, on_done)`` calls ``fn(job, progress)`` once per job, somewhere, and
``on_done(job)`` in this process after each job has finished. ``fn`` (the runner's ``execute_job``) writes the job's
RunRecord itself, so records are the source of truth: the runner reads them back afterwards, and a job whose record
exists is never handed to an executor again (that is how every executor resumes). A failed job raises here after
the jobs already running have been waited for (pool: queued ones are cancelled; Slurm: after every task) or at
once (in-process).

- ``local`` (default), ``executor.workers=1``: in this process, one job after another; Ctrl-C leaves ``last.pt``.
- ``local``, ``executor.workers=N``: a pool of N spawned processes; each job's progress goes to its record and
  MLflow, and ``on_done`` runs as each job finishes (not when the last one does). Each worker's epoch progress
  reaches the console through :class:`bench.progress.ProgressRelay` (its jobs get a
  :class:`~bench.progress.WorkerProgress`). torch threads per worker: cpu_count / N (unless ``trainer.threads`` is
  set). A worker whose parent dies (the run killed by SIGTERM/SIGKILL) exits within
  :data:`PARENT_POLL_S`; its job resumes from ``last.pt`` on the next run.
- ``slurm``: every pending job of the sweep as ONE submitit array job (``map_array``; at most
  ``executor.array_parallelism`` tasks at once), each task one job with ``executor.gpus``/``cpus``/``mem_gb``/
  ``time_min`` on ``executor.partition``; logs and pickles under ``executor.folder`` (default
  ``<output.dir>/slurm``). This process waits for the array; killed, the same command submits only the jobs
  without a record (an interrupted job continues from its ``last.pt``). The new array does not adopt tasks of an
  earlier array that are still running: ``scancel`` it first, or those jobs run twice (records stay correct, each
  is written atomically). ``executor.cluster=local`` runs the array through submitit's local executor (no
  Slurm), which the tests use.
"""

from __future__ import annotations

import abc
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError
from bench.progress import Progress, ProgressRelay, WorkerProgress, set_worker_queue

JobFn = Callable[[Any, Progress | None], Any]
DoneFn = Callable[[Any], None]
KINDS = ("local", "slurm")


class Executor(abc.ABC):
    """Runs planned jobs; see the module docstring for the contract."""

    @abc.abstractmethod
    def run(self, fn: JobFn, jobs: Sequence[Any], progress: Progress, on_done: DoneFn) -> None:
        """Run ``fn(job, ...)`` for every job; ``on_done(job)`` here after each one finished."""


class Sequential(Executor):
    """In this process, in plan order; exceptions (and Ctrl-C) propagate at once."""

    def run(self, fn: JobFn, jobs: Sequence[Any], progress: Progress, on_done: DoneFn) -> None:
        for job in jobs:
            fn(job, progress)
            on_done(job)


#: seconds between a pool worker's checks that the process that started it is still alive
PARENT_POLL_S = 1.0


def _exit_when_orphaned(parent_pid: int, poll_s: float) -> None:
    """Exit this process at once when its parent is gone (reparented): a killed ``bench run`` (SIGTERM/SIGKILL
    skip the pool's shutdown) must not leave workers training jobs nobody collects."""
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent_pid:
            os._exit(1)


def _init_worker(threads: int, parent_pid: int, relay_queue: Any = None, poll_s: float = PARENT_POLL_S) -> None:
    import torch

    torch.set_num_threads(threads)
    set_worker_queue(relay_queue)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid, poll_s), daemon=True,
                     name="orphan-watch").start()


class ProcessPool(Executor):
    """``workers`` spawned processes; each job is reported (``on_done``) as it finishes; a job's failure stops the
    pool (queued jobs are cancelled, running ones finish) and re-raises."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, fn: JobFn, jobs: Sequence[Any], progress: Progress, on_done: DoneFn) -> None:
        if not jobs:
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        context = multiprocessing.get_context("spawn")
        # the relay is left after the pool (a with-statement exits right to left), so every event is replayed
        with ProgressRelay(progress, context) as relay, ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker,
                initargs=(threads, os.getpid(), relay.queue)) as pool:
            futures = {pool.submit(fn, job, WorkerProgress()): job for job in jobs}
            for future in as_completed(futures):
                error = future.exception()
                if error is not None:
                    for other in futures:
                        other.cancel()
                    raise error
                on_done(futures[future])


class Slurm(Executor):
    """One submitit array job per call (per sweep); waits for it, then reports each task."""

    def __init__(self, folder: Path, parameters: dict[str, Any], cluster: str | None = None) -> None:
        self.folder = folder
        self.parameters = parameters
        self.cluster = cluster

    def run(self, fn: JobFn, jobs: Sequence[Any], progress: Progress, on_done: DoneFn) -> None:
        if not jobs:
            return
        import submitit

        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**self.parameters)
        submitted = executor.map_array(fn, list(jobs), [None] * len(jobs))
        progress.message(f"submitted array {submitted[0].job_id.split('_')[0]} ({len(jobs)} task(s), "
                         f"{executor.cluster}); logs in {self.folder}")
        failures = []
        for job, task in zip(jobs, submitted, strict=True):
            try:
                task.result()
            except Exception as err:  # submitit wraps the task's traceback in a FailedJobError
                failures.append(f"task {task.job_id}: {str(err).strip().splitlines()[-1]}")
                continue
            on_done(job)
        if failures:
            raise BenchError(f"{len(failures)} of {len(jobs)} array task(s) failed (logs in {self.folder}): "
                             + "; ".join(failures[:3]) + ". Run the same command again to retry them.")


def make_executor(cfg: Any, output_dir: Path, distributed: bool = False) -> Executor:
    """The executor ``executor.*`` asks for. Under torchrun the ranks train each job together, in this process:
    ``executor.workers`` is ignored there (the demo profile asks for 2), and ``kind=slurm`` is an error."""
    if cfg.kind not in KINDS:
        raise ConfigError(f'executor.kind="{cfg.kind}" is unknown; choose one of {", ".join(KINDS)}.')
    if cfg.workers < 1:
        raise ConfigError(f"executor.workers={cfg.workers}: at least 1 worker is needed.")
    if distributed and cfg.kind != "local":
        raise ConfigError("under torchrun the ranks train each job together: use executor.kind=local (the default).")
    if distributed:
        return Sequential()
    if cfg.kind == "slurm":
        folder = Path(cfg.folder).expanduser() if cfg.folder else output_dir / "slurm"
        return Slurm(folder.resolve(), slurm_parameters(cfg), cfg.cluster)
    return ProcessPool(cfg.workers) if cfg.workers > 1 else Sequential()


def slurm_parameters(cfg: Any) -> dict[str, Any]:
    """submitit AutoExecutor parameters from ``executor.*`` (shared names; ``slurm_`` ones only reach Slurm)."""
    params: dict[str, Any] = {
        "name": "pointbench", "timeout_min": int(cfg.time_min), "cpus_per_task": int(cfg.cpus),
        "mem_gb": int(cfg.mem_gb), "gpus_per_node": int(cfg.gpus), "tasks_per_node": 1, "nodes": 1,
        "slurm_array_parallelism": int(cfg.array_parallelism),
    }
    if cfg.partition:
        params["slurm_partition"] = cfg.partition
    return params

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
  Ctrl-C (SIGINT; the workers ignore it, :mod:`bench.interrupt`): the first one cancels the queued jobs (none of
  them starts, not even one already handed to a worker), tells the running ones to stop at their next step (their
  ``last.pt`` kept, their MLflow runs closed KILLED), waits for them (at most :data:`STOP_WAIT_S`), kills the
  workers and raises KeyboardInterrupt (the CLI exits 130); a second one kills the workers and exits 130 at once.
  A worker that dies under a job (SIGKILL, the out-of-memory killer) is a :class:`~bench.errors.WorkerError`
  naming the jobs that were running (the pool stops with it; each resumes from its ``last.pt``).
- ``slurm``: every pending job of the sweep as ONE submitit array job (``map_array``; at most
  ``executor.array_parallelism`` tasks at once), each task one job with ``executor.gpus``/``cpus``/``mem_gb``/
  ``time_min`` on ``executor.partition``; logs and pickles under ``executor.folder`` (default
  ``<output.dir>/slurm``). This process waits for the array; killed, the same command submits only the jobs
  without a record (an interrupted job continues from its ``last.pt``). A task of an earlier array that is still
  running holds its job's lease (:mod:`bench.leases`, on a file system with working ``flock``): the new array's
  task for that job returns at once and the runner waits for the old one's record. ``executor.cluster=local``
  runs the array through submitit's local executor (no Slurm), which the tests use.
"""

from __future__ import annotations

import abc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import INTERRUPTED_EXIT, BenchError, ConfigError, WorkerError
from bench.interrupt import set_stop_event
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
#: seconds between the pool's looks at its jobs (one finished, a Ctrl-C)
POOL_POLL_S = 0.2
#: after a Ctrl-C, seconds the running jobs get to reach their next step and close their runs; then they are killed
STOP_WAIT_S = 30.0


@dataclass
class PoolLinks:
    """What a pool worker shares with its parent (handed to the initializer at spawn): the progress relay's queue;
    ``stop``, set on Ctrl-C (running jobs stop at their next step); ``closed``, set when the pool stops dispatching
    (Ctrl-C, a failed job: a job handed to a worker but not begun never starts); ``started``, where each job's index
    goes as it begins (a SimpleQueue: written synchronously, so a worker killed later has already said it)."""

    relay_queue: Any = None
    stop: Any = None
    closed: Any = None
    started: Any = None


_links = PoolLinks()  # this worker's, set by _init_worker


class _NotStarted(Exception):
    """A job the pool had handed to a worker when it closed: it never began (no work folder, no MLflow run)."""


def _exit_when_orphaned(parent_pid: int, poll_s: float) -> None:
    """Exit this process at once when its parent is gone (reparented): a killed ``bench run`` (SIGTERM/SIGKILL
    skip the pool's shutdown) must not leave workers training jobs nobody collects."""
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent_pid:
            os._exit(1)


def _init_worker(threads: int, parent_pid: int, links: PoolLinks | None = None, poll_s: float = PARENT_POLL_S) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent takes Ctrl-C and sets links.stop (bench.interrupt)
    import torch

    global _links
    _links = links or PoolLinks()
    torch.set_num_threads(threads)
    set_worker_queue(_links.relay_queue)
    set_stop_event(_links.stop)
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid, poll_s), daemon=True,
                     name="orphan-watch").start()


def _run_in_worker(fn: JobFn, index: int, job: Any, progress: Progress) -> Any:
    """One job in a pool worker: refused once the pool has closed, else announced on ``started``, then run. A job
    that fails closes the pool from here: the parent would be too late for the next job this worker picks up."""
    if _links.closed is not None and _links.closed.is_set():
        raise _NotStarted(index)
    if _links.started is not None:
        _links.started.put(index)
    try:
        return fn(job, progress)
    except BaseException:
        if _links.closed is not None:
            _links.closed.set()
        raise


def job_name(job: Any) -> str:
    """How messages name a job: its ``job_id`` (a JobSpec's), else its text."""
    return str(getattr(job, "job_id", job))


class _Sigint:
    """SIGINT while a pool runs (this handler for the duration of a ``with``, the previous one restored after): the
    first one is counted, and the pool's loop, which looks at ``count``, stops; a second one quits at once."""

    def __init__(self) -> None:
        self.count = 0
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _Sigint:
        # signal.signal works in the main thread only; a SIGINT ignored on purpose (nohup, a background job) stays so
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.count > 1:
            _quit_at_once()


def _kill_workers() -> None:
    """SIGKILL every live child process (in ``bench run`` those are the pool's workers)."""
    for child in multiprocessing.active_children():
        child.kill()


def _quit_at_once() -> None:
    """The second Ctrl-C: kill the workers and exit 130 now. ``os._exit`` rather than an exception: unwinding would
    wait for the pool's shutdown and the relay, and concurrent.futures' exit hook joins its manager thread, each of
    which can block on the killed workers' pipes; what it skips (closing the killed jobs' MLflow runs) is what the
    user asked to skip. The jobs resume from their ``last.pt``. The line goes straight to fd 2: this runs in a
    signal handler, maybe while the main thread is inside a write to ``sys.stderr``."""
    os.write(2, b"\nbench: interrupted twice: stopped at once; run the same command again to resume (each "
                b"unfinished job from its last.pt).\n")
    _kill_workers()
    os._exit(INTERRUPTED_EXIT)


class ProcessPool(Executor):
    """``workers`` spawned processes; each job is reported (``on_done``) as it finishes; a job's failure stops the
    pool (queued jobs are cancelled, running ones finish and are reported) and re-raises; Ctrl-C and a dead worker
    as the module docstring says."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, fn: JobFn, jobs: Sequence[Any], progress: Progress, on_done: DoneFn) -> None:
        if not jobs:
            return
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        context = multiprocessing.get_context("spawn")
        # the relay is left after the pool (a with-statement exits right to left), so every event is replayed; the
        # SIGINT handler is left last, so a second Ctrl-C while the pool shuts down still quits at once
        with _Sigint() as sigint, ProgressRelay(progress, context) as relay:
            links = PoolLinks(relay.queue, context.Event(), context.Event(), context.SimpleQueue())
            with ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                     initargs=(threads, os.getpid(), links)) as pool:
                _PoolSweep(pool, fn, jobs, links, sigint).run(on_done)


def _lost(future: Future) -> bool:
    """Whether a begun job died with the pool (its future not yet marked, or marked BrokenProcessPool)."""
    return not future.done() or (not future.cancelled() and isinstance(future.exception(), BrokenProcessPool))


class _PoolSweep:
    """One :meth:`ProcessPool.run`: its futures (in job order), the jobs a worker has begun, and how it ends."""

    def __init__(self, pool: ProcessPoolExecutor, fn: JobFn, jobs: Sequence[Any], links: PoolLinks,
                 sigint: _Sigint) -> None:  # fmt: skip
        self.pool, self.jobs, self.links, self.sigint = pool, jobs, links, sigint
        self.futures = [pool.submit(_run_in_worker, fn, i, job, WorkerProgress()) for i, job in enumerate(jobs)]
        self.index = {future: i for i, future in enumerate(self.futures)}
        self.begun: set[int] = set()

    def run(self, on_done: DoneFn) -> None:
        """Report each job as it finishes. The first failure closes the pool, which still waits for (and reports)
        the running jobs, then raises it; a dead worker ends the sweep at once, and so does Ctrl-C (:meth:`_stop`)."""
        pending: set[Future] = set(self.futures)
        error: BaseException | None = None
        while pending:
            done, pending = wait(pending, timeout=POOL_POLL_S, return_when=FIRST_COMPLETED)
            self._read_started()
            for future in sorted(done, key=self.index.__getitem__):
                failure = future.exception()
                if failure is None:
                    on_done(self.jobs[self.index[future]])
                elif error is None:
                    error = failure
                    self._close()
            if self.sigint.count:
                self._stop(pending, on_done)
            if isinstance(error, BrokenProcessPool):
                raise self._worker_error() from None
            pending = {f for f in pending if not f.cancelled()}  # a cancelled future never counts as done
        if self.sigint.count:  # Ctrl-C as the last job finished
            raise KeyboardInterrupt
        if error is not None:
            raise error

    def _read_started(self) -> None:
        while not self.links.started.empty():
            self.begun.add(self.links.started.get())

    def _close(self) -> None:
        """Dispatch no more: cancel the queued jobs (one already handed to a worker is refused there). Not
        ``shutdown(wait=False, cancel_futures=True)``: after it the pool's own exit no longer waits for its workers."""
        self.links.closed.set()
        for future in self.futures:
            future.cancel()  # False (and nothing happens) for a running or finished job

    def _stop(self, pending: set[Future], on_done: DoneFn) -> None:
        """The first Ctrl-C: nothing starts any more, the running jobs stop at their next step (their runs closed
        KILLED; waited for at most STOP_WAIT_S), the workers are killed, then KeyboardInterrupt."""
        self._close()
        self.links.stop.set()
        self._read_started()
        running = [f for f in pending if self.index[f] in self.begun]
        print(f"stopping: {len(running)} running job(s) stop at their next step; Ctrl-C again to quit at once",
              file=sys.stderr, flush=True)
        done, _ = wait([f for f in pending if not f.cancelled()], timeout=STOP_WAIT_S)
        for future in sorted(done, key=self.index.__getitem__):
            if future.exception() is None:  # it ended before it saw the flag
                on_done(self.jobs[self.index[future]])
        # every begun job has returned (or ran past STOP_WAIT_S): what is left holds no run and no file being
        # written (idle workers, one still importing torch), and its graceful exit would take seconds
        _kill_workers()
        raise KeyboardInterrupt

    def _worker_error(self) -> WorkerError:
        self._read_started()
        lost = [job_name(self.jobs[i]) for i in sorted(self.begun) if _lost(self.futures[i])]
        which = f"while it ran job(s) {', '.join(lost)}" if lost else "before it began a job"
        return WorkerError(
            f"a worker process died {which} (killed by a signal such as SIGKILL, or by the out-of-memory killer); "
            "the pool stopped with it and the queued jobs did not start. Run the same command again: each unfinished "
            "job resumes from its last.pt (its last finished epoch). If memory ran out, lower executor.workers or "
            "trainer.batch_size.")


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

"""Progress display for long work; :class:`NullProgress` (``--quiet``) shows nothing.

What :class:`ConsoleProgress` shows:
- a sweep line: jobs done / total and an ETA from the finished jobs (time since the jobs were dispatched / jobs
  finished x jobs left, so it counts the parallel workers);
- one line per job as it finishes (:meth:`ConsoleProgress.job_done`, called by the runner);
- the status of every training run: the one in this process (pre-training, an in-process job) under the key
  :data:`MAIN`, and the current job of each pool worker (``w1``, ``w2``, ... with its epoch), relayed from the worker
  processes: :class:`WorkerProgress` puts the Trainer's calls on a queue, :class:`ProgressRelay` replays them here.

On a terminal these are rich bars, with the job lines and notices printed above them. Off a terminal (a pipe, a
log file) every line is plain text behind an ``HH:MM:SS`` timestamp, never wrapped; a training run prints a line
when it starts, an epoch line at most every ``line_every_s`` seconds (and at its last epoch), and, in this process,
one when it ends. :func:`once` wraps a notice callback so each distinct notice is printed once per command.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

#: the key of the training run of this process (the pool workers' are w1, w2, ...)
MAIN = "main"
#: off a terminal, at most one epoch line per training run every this many seconds (the last epoch always prints)
LINE_EVERY_S = 10.0
#: seconds the relay's thread may take to replay the events still queued when the pool has shut down
RELAY_JOIN_S = 5.0


class Progress(Protocol):
    """What the Trainer calls (``start`` / ``advance`` / ``finish`` / ``message``), what the runner calls around a
    sweep (``sweep_start`` / ``job_done`` / ``sweep_finish``) and what the relay calls per worker (``task_*``)."""

    def start(self, desc: str, total: int, completed: int = 0) -> None: ...
    def advance(self, row: dict[str, float]) -> None: ...
    def finish(self) -> None: ...
    def message(self, text: str) -> None: ...
    def sweep_start(self, desc: str, total: int) -> None: ...
    def job_done(self, line: str) -> None: ...
    def sweep_finish(self) -> None: ...
    def task_start(self, key: str, desc: str, total: int, completed: int = 0) -> None: ...
    def task_advance(self, key: str, row: dict[str, float]) -> None: ...
    def task_finish(self, key: str) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    """Shows nothing (``--quiet``, ranks other than 0, a worker with no relay)."""

    def start(self, desc: str, total: int, completed: int = 0) -> None:
        pass

    def advance(self, row: dict[str, float]) -> None:
        pass

    def finish(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def sweep_start(self, desc: str, total: int) -> None:
        pass

    def job_done(self, line: str) -> None:
        pass

    def sweep_finish(self) -> None:
        pass

    def task_start(self, key: str, desc: str, total: int, completed: int = 0) -> None:
        pass

    def task_advance(self, key: str, row: dict[str, float]) -> None:
        pass

    def task_finish(self, key: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class _Run:
    """One training run on display: its label, epochs done of ``total`` (``first`` when it started: a resume)."""

    label: str
    total: int
    completed: int
    first: int
    tic: float
    shown: float
    bar: Any = None  # its rich task id, on a terminal


@dataclass
class _Sweep:
    desc: str
    total: int
    tic: float
    done: int = 0
    bar: Any = None


class ConsoleProgress:
    """Bars on a terminal, timestamped plain lines elsewhere (see the module docstring). Thread-safe: the relay's
    thread and the main thread call it at once."""

    def __init__(self, console: Console | None = None, line_every_s: float = LINE_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.line_every_s = line_every_s
        self.clock = clock
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._sweep: _Sweep | None = None
        self._bars: RichProgress | None = None

    # --- the training run of this process (the Trainer's calls) ----------------------------------------------
    def start(self, desc: str, total: int, completed: int = 0) -> None:
        self.task_start(MAIN, desc, total, completed)

    def advance(self, row: dict[str, float]) -> None:
        self.task_advance(MAIN, row)

    def finish(self) -> None:
        self.task_finish(MAIN)

    def message(self, text: str) -> None:
        with self._lock:
            self._print(text)

    # --- the sweep -----------------------------------------------------------------------------------------------
    def sweep_start(self, desc: str, total: int) -> None:
        with self._lock:
            self._sweep = _Sweep(desc, total, self.clock())
            if self.live:
                self._sweep.bar = self._rich().add_task(desc, total=total, info="")
            else:
                self._print(f"{desc}: {total} job(s) to run")

    def job_done(self, line: str) -> None:
        with self._lock:
            sweep = self._sweep
            if sweep is None:
                self._print(line)
                return
            sweep.done += 1
            left = sweep.total - sweep.done
            eta = (self.clock() - sweep.tic) / sweep.done * left
            self._print(f"[{sweep.done}/{sweep.total}] {line}" + (f"  (eta {duration(eta)})" if left > 0 else ""))
            if sweep.bar is not None:
                self._bars.update(sweep.bar, completed=sweep.done, info=f"eta {duration(eta)}" if left else "")

    def sweep_finish(self) -> None:
        with self._lock:
            if self._sweep is not None and self._sweep.bar is not None:
                self._bars.remove_task(self._sweep.bar)
            self._sweep = None
            self._stop_when_idle()

    # --- one training run, here (MAIN) or in a pool worker (relayed) ----------------------------------------------
    def task_start(self, key: str, desc: str, total: int, completed: int = 0) -> None:
        label = desc if key == MAIN else f"{key} {desc}"
        with self._lock:
            now = self.clock()
            run = self._runs[key] = _Run(label, total, completed, completed, now, now)
            if self.live:
                run.bar = self._rich().add_task(label, total=total, completed=completed, info="")
            else:
                self._print(f"{label}: started at epoch {completed}/{total}")

    def task_advance(self, key: str, row: dict[str, float]) -> None:
        with self._lock:
            run = self._runs.get(key)
            if run is None:
                return
            run.completed += 1
            info = summary(row)
            if run.bar is not None:
                self._bars.update(run.bar, advance=1, info=info)
                return
            now = self.clock()
            if run.completed < run.total and now - run.shown < self.line_every_s:
                return
            run.shown = now
            eta = (now - run.tic) / max(run.completed - run.first, 1) * (run.total - run.completed)
            tail = f"(eta {duration(eta)})" if run.completed < run.total else ""
            self._print("  ".join(part for part in (f"{run.label}: epoch {run.completed}/{run.total}", info, tail)
                                  if part))

    def task_finish(self, key: str) -> None:
        with self._lock:
            run = self._runs.pop(key, None)
            if run is None:
                return
            if run.bar is not None:
                self._bars.remove_task(run.bar)
            if key == MAIN:  # a worker's job line follows at once: no second line for it
                self._print(f"{run.label}: done in {self.clock() - run.tic:.1f} s")
            self._stop_when_idle()

    def close(self) -> None:
        """Stop every bar (a run that raised never finished its own): the terminal gets its cursor back."""
        with self._lock:
            self._runs.clear()
            self._sweep = None
            self._stop_when_idle()

    # --- internals ------------------------------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        if self.live:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)
            return
        stream = self.console.file
        stream.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        stream.flush()

    def _rich(self) -> RichProgress:
        if self._bars is None:
            self._bars = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console, transient=True,
            )
            self._bars.start()
        return self._bars

    def _stop_when_idle(self) -> None:
        if self._bars is not None and not self._runs and self._sweep is None:
            self._bars.stop()
            self._bars = None


def summary(row: dict[str, float]) -> str:
    """The first three train-loss / test metrics of an epoch row, ``key=value`` (4 significant digits)."""
    keys = [k for k in row if k.startswith(("train_loss", "test_")) and not k.endswith("_s")]
    return "  ".join(f"{k}={row[k]:.4g}" for k in keys[:3])


def duration(seconds: float) -> str:
    """``42 s``, ``3m05s``, ``2h07m`` (under a second but more than none: ``1 s``)."""
    seconds = 1 if 0 < seconds < 1 else max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def once(note: Callable[[str], None]) -> Callable[[str], None]:
    """``note`` that passes each distinct text on once (a data notice comes from every suite plan and every
    pre-training that looks the data up)."""
    seen: set[str] = set()

    def note_once(text: str) -> None:
        if text not in seen:
            seen.add(text)
            note(text)

    return note_once


def make_progress(quiet: bool) -> Progress:
    return NullProgress() if quiet else ConsoleProgress(Console(stderr=True, file=sys.stderr))


# --- pool workers ----------------------------------------------------------------------------------------------------
_relay_queue: Any = None


def set_worker_queue(queue: Any) -> None:
    """In a pool worker (the pool's initializer): the queue :class:`WorkerProgress` sends its events to."""
    global _relay_queue
    _relay_queue = queue


def _send(kind: str, *args: Any) -> None:
    if _relay_queue is not None:
        _relay_queue.put((os.getpid(), kind, args))


class WorkerProgress(NullProgress):
    """The progress a pool worker's job gets: the Trainer's calls become ``(pid, kind, args)`` events on the queue
    of :func:`set_worker_queue` (nothing happens without one). Holds no state, so it pickles with every job."""

    def start(self, desc: str, total: int, completed: int = 0) -> None:
        _send("start", desc, total, completed)

    def advance(self, row: dict[str, float]) -> None:
        _send("advance", {k: float(v) for k, v in row.items()})

    def finish(self) -> None:
        _send("finish")

    def message(self, text: str) -> None:
        _send("message", text)


class ProgressRelay:
    """The parent's side of :class:`WorkerProgress`: a thread replays every worker's events on ``progress``
    (``task_start`` / ``task_advance`` / ``task_finish`` under ``w1``, ``w2``, ... in the order the workers first
    report; ``message`` as is). A context manager: leave it after the pool has shut down, so no event is lost."""

    def __init__(self, progress: Progress, context: Any) -> None:
        self.progress = progress
        self.queue = context.Queue()
        self._names: dict[int, str] = {}
        self._open: set[str] = set()
        self._thread = threading.Thread(target=self._drain, name="progress-relay", daemon=True)

    def __enter__(self) -> ProgressRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self._thread.join(timeout=RELAY_JOIN_S)
        for key in sorted(self._open):  # a worker that died mid-run leaves no status behind
            self.progress.task_finish(key)
        self.queue.close()

    def _drain(self) -> None:
        while (event := self.queue.get()) is not None:
            try:
                self.replay(*event)
            except Exception as err:  # a display problem must not stop the sweep
                logging.getLogger(__name__).warning("progress relay: cannot show %r: %s", event, err)

    def replay(self, pid: int, kind: str, args: tuple) -> None:
        """Show one worker event (what the thread does with each)."""
        key = self._names.setdefault(pid, f"w{len(self._names) + 1}")
        if kind == "start":
            self._open.add(key)
            self.progress.task_start(key, *args)
        elif kind == "advance":
            self.progress.task_advance(key, *args)
        elif kind == "finish":
            self._open.discard(key)
            self.progress.task_finish(key)
        else:
            self.progress.message(*args)

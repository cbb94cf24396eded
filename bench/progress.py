"""Progress display for long work: a rich bar per training run plus one line per finished job; quiet for scripts."""

from __future__ import annotations

import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress


class Progress(Protocol):
    def start(self, desc: str, total: int, completed: int = 0) -> None: ...
    def advance(self, row: dict[str, float]) -> None: ...
    def finish(self) -> None: ...
    def message(self, text: str) -> None: ...


class NullProgress:
    """Shows nothing (``--quiet``); messages still go to stderr so a script sees what happened."""

    def start(self, desc: str, total: int, completed: int = 0) -> None:
        pass

    def advance(self, row: dict[str, float]) -> None:
        pass

    def finish(self) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class ConsoleProgress:
    """An epoch bar (with ETA and the latest metrics) on a terminal, one line per run when not a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._bar: RichProgress | None = None
        self._task = None
        self._desc = ""
        self._tic = 0.0

    def start(self, desc: str, total: int, completed: int = 0) -> None:
        self._desc, self._tic = desc, time.perf_counter()
        if not self.console.is_terminal:
            return
        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(desc, total=total, completed=completed, info="")

    def advance(self, row: dict[str, float]) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, info=_summary(row))

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self.console.print(f"{self._desc}: done in {time.perf_counter() - self._tic:.1f} s", highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)


def _summary(row: dict[str, float]) -> str:
    keys = [k for k in row if k.startswith(("train_loss", "test_")) and not k.endswith("_s")]
    return "  ".join(f"{k}={row[k]:.4g}" for k in keys[:3])


def make_progress(quiet: bool) -> Progress:
    return NullProgress() if quiet else ConsoleProgress(Console(stderr=True, file=sys.stderr))

"""``bench data prepare <name> [key=value ...]``: derived files built from data already below a data root.

Conventions:
- A prepare step is registered in :data:`bench.registry.PREPARERS` under the name the user types, by the module
  of the data set (or side-data producer) it builds files for, with the :func:`prepare_step` decorator.
- It is called as ``step(root, options) -> written paths``: ``root`` the data root, ``options`` the command's
  ``key=value`` arguments other than ``data.root`` (as strings; each step validates the keys it reads and ignores
  the others). Bad input raises a :class:`bench.errors.BenchError` that names the file or key.
- With no name, :data:`DEFAULT_STEP` runs. Several names run in the order given, each once; every name is looked
  up before any step runs, so an unknown one fails with the registry's did-you-mean and the list of steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.registry import PREPARERS, load_plugins

#: the step ``bench data prepare`` runs when no name is given
DEFAULT_STEP = "modelnet40"
#: a step that writes more files than this is summarised in one line
LISTED_FILES = 4

StepFunction = Callable[[Path, dict[str, str]], list[Path]]


@dataclass(frozen=True)
class PrepareStep:
    """A registered prepare step: ``run(root, options) -> written paths``; ``label`` names its files in the one-line
    summary (``wrote 40 few-shot fold file(s) under ...``). Calling the step calls ``run``."""

    name: str
    run: StepFunction
    label: str = "prepared"

    def __post_init__(self) -> None:
        object.__setattr__(self, "__module__", self.run.__module__)  # the registry's origin: the defining module

    def __call__(self, root: Path, options: dict[str, str]) -> list[Path]:
        return self.run(Path(root), dict(options))


def prepare_step(name: str, label: str = "prepared") -> Callable[[StepFunction], StepFunction]:
    """Decorator: register ``fn(root, options) -> written paths`` in ``PREPARERS`` as ``name``; returns ``fn``."""

    def decorate(fn: StepFunction) -> StepFunction:
        PREPARERS.add(name, PrepareStep(name, fn, label))
        return fn

    return decorate


def resolve_steps(names: Iterable[str]) -> list[PrepareStep]:
    """The registered steps for ``names`` (none: the default), in order and without repeats; unknown -> error."""
    load_plugins()
    chosen = list(dict.fromkeys(names)) or [DEFAULT_STEP]
    return [PREPARERS.get(name) for name in chosen]


def summary_lines(step: PrepareStep, paths: list[Path]) -> list[str]:
    """``wrote <path>`` per file, or one ``wrote N <label> file(s) under <common folder>`` line for many files."""
    if len(paths) <= LISTED_FILES:
        return [f"wrote {path}" for path in paths] or [f"{step.name}: nothing to write"]
    folder = Path(os.path.commonpath([Path(p).parent for p in paths]))
    return [f"wrote {len(paths)} {step.label} file(s) under {folder}"]

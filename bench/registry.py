"""Typed registries, one per kind (methods, protocols, datasets, transforms, metrics).

Conventions:
- A name is registered once; a second registration under the same name is an error (no silent override).
- Lookup of an unknown name raises :class:`bench.errors.UnknownNameError` with a did-you-mean.
- Discovery imports every public module of a package (``discover("methods")``), so adding a method or a suite
  never means editing an import list. Modules whose name starts with ``_`` are skipped.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from bench.errors import BenchError, UnknownNameError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.5)
    return f' Did you mean "{close[0]}"?' if close else ""


class Registry(Generic[T]):
    """A name -> object mapping for one kind of thing, with strict registration and helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("point_mae")``; without a name the object's ``name`` attribute is used."""

        def decorate(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key:
                raise BenchError(f"cannot register a {self.kind} without a name: {obj!r}")
            self.add(key, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> None:
        origin = getattr(obj, "__module__", "?")
        if name in self._entries and self._origin[name] != origin:
            raise BenchError(
                f'{self.kind} "{name}" is registered twice: in {self._origin[name]} and in {origin}. '
                "Registry names must be unique."
            )
        self._entries[name] = obj
        self._origin[name] = origin

    @contextmanager
    def temporarily(self, name: str, obj: T) -> Iterator[T]:
        """Register ``obj`` under ``name`` for the duration of a ``with`` block (test-only methods, protocols,
        metrics), then remove it again."""
        self.add(name, obj)
        try:
            yield obj
        finally:
            self._entries.pop(name, None)
            self._origin.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none registered)"
            raise UnknownNameError(
                f'unknown {self.kind} "{name}".{did_you_mean(name, set(self._entries))} Known: {known}.'
            ) from None

    def origin(self, name: str) -> str:
        """The module that registered ``name``."""
        self.get(name)
        return self._origin[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def discover(package: str) -> list[str]:
    """Import every public module below ``package`` (recursively); return the module names imported."""
    pkg = importlib.import_module(package)
    imported = []
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf.startswith("_"):
            continue
        importlib.import_module(info.name)
        imported.append(info.name)
    return imported


# --- the registries (one per kind) -------------------------------------------------------------------------
METHODS: Registry = Registry("method")
PROTOCOLS: Registry = Registry("protocol")
DATASETS: Registry = Registry("dataset")
TRANSFORMS: Registry = Registry("transform")
METRICS: Registry = Registry("metric")
#: per-shape side data (HDF5 beside the points, keyed by sample id): ``bench.data.side.SideData`` specs
SIDE_DATA: Registry = Registry("side data")
#: ``bench data prepare <name>`` steps: ``bench.data.prepare.PrepareStep``, called as ``step(root, options)``
PREPARERS: Registry = Registry("prepare step")
#: synthetic stand-in writers, one per data set: ``bench.data.synthetic.writers.StandinWriter``
STANDIN_WRITERS: Registry = Registry("stand-in writer")
#: frozen MMPD teachers (text / image embedders): ``methods.blocks.teachers.TeacherSpec``
TEACHERS: Registry = Registry("teacher")

#: packages whose modules register into the registries above
PLUGIN_PACKAGES = ("bench.data", "bench.metrics", "suites.protocols", "methods")
_loaded = False


def load_plugins() -> None:
    """Import every plugin package once, so every registry is complete."""
    global _loaded
    if _loaded:
        return
    for package in PLUGIN_PACKAGES:
        discover(package)
    _loaded = True

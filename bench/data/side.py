"""Side data: per-shape arrays a method needs beside the points (teacher embeddings, occupancy, renders).

Conventions:
- A :class:`SideData` spec, registered in :data:`bench.registry.SIDE_DATA` with :func:`register_side_data`, names
  one HDF5 file ``<data root>/<path>`` and the array ``keys`` it stores per sample.
- File layout: one HDF5 group per sample ``id`` (the ``id`` every data set's ``load(i)`` returns); an id holding
  ``/`` maps to nested groups (``training_objectdataset/17`` is group ``17`` inside group
  ``training_objectdataset``), read as ``h5[id][key]``. Each group holds one dataset per key, of any shape and
  dtype (returned as stored). :func:`bench.data.synthetic.side.write_side_data` writes this layout.
- Key naming rule: :class:`WithSideData` adds array ``key`` of side data ``name`` to the sample as
  ``"<name>.<key>"`` (``teacher.embedding``). Names and keys hold no ``.`` or ``/``, so the split is unambiguous.
- Side arrays are per SHAPE: transforms pass them through untouched (they are not per-point keys), and
  :func:`bench.data.base.to_tensors` turns them into tensors of their dtype.
- Every id of the wrapped data set is checked once, when :class:`WithSideData` is built; a missing file, id or key
  raises DataError naming the file (and the ids or keys).
- The file is opened lazily in each process that reads it (a DataLoader worker opens its own handle).
- Making the file: ``SideData.prepare`` names the ``bench data prepare <step>`` that computes it from real data
  (the missing-file DataError says to run it); ``SideData.standin`` names the registered stand-in writer
  (``STANDIN_WRITERS``) that writes it for the synthetic stand-in, which pre-training runs when the file is absent
  (:func:`write_standin_side_data`).
- Provenance: the file's HDF5 root attributes, each a JSON text (a producer's choice of keys), are what
  :meth:`SideDataSource.describe` returns with the file's path, size and sha256; pre-training puts it in every
  stage's details. Two top-level flags are read by the leaderboard: ``uses_category_names`` (the values were
  computed from category names, i.e. label information) and ``test_teachers`` (computed by random test stand-ins
  of the real models).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from torch.utils.data import Dataset

from bench.data.base import PointCloudDataset, Sample
from bench.errors import BenchError, ConfigError, DataError
from bench.registry import SIDE_DATA

#: ids listed in a "missing ids" message (the count is always given)
SHOWN_IDS = 5


@dataclass(frozen=True)
class SideData:
    """A side-data file: ``path`` (relative to the data root), the ``keys`` stored per sample id, a description;
    ``prepare``: the ``bench data prepare`` step that makes it from real data, ``standin``: the stand-in writer that
    makes it for the synthetic stand-in (either None when there is none)."""

    name: str
    path: str
    keys: tuple[str, ...]
    description: str = ""
    standin: str | None = None
    prepare: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        for what, value in [("name", self.name), *(("key", key) for key in self.keys)]:
            if not isinstance(value, str) or not value or "." in value or "/" in value:
                raise ConfigError(f"side data {self.name!r}: {what} {value!r} must be a non-empty name without "
                                  "'.' or '/' (sample keys are '<name>.<key>').")  # fmt: skip
        if not self.keys or len(set(self.keys)) != len(self.keys):
            raise ConfigError(f"side data {self.name}: keys must be distinct and at least one, got {self.keys}.")
        if not self.path or Path(self.path).is_absolute():
            raise ConfigError(f"side data {self.name}: path {self.path!r} must be relative to the data root.")

    def file(self, root: Path) -> Path:
        """The HDF5 file below the data root ``root``."""
        return Path(root) / self.path


def register_side_data(spec: SideData) -> SideData:
    """Register ``spec`` in ``SIDE_DATA`` under its name (again with an equal spec: no-op; a different one: error)."""
    if spec.name in SIDE_DATA and SIDE_DATA.get(spec.name) != spec:
        raise BenchError(f'side data "{spec.name}" is registered twice with different specs: '
                         f"{SIDE_DATA.get(spec.name)} and {spec}. Side data names must be unique.")  # fmt: skip
    SIDE_DATA.add(spec.name, spec)
    return spec


class SideDataSource:
    """One opened side-data file: :meth:`check` ids once, then :meth:`read` the arrays of an id."""

    def __init__(self, spec: SideData, root: Path) -> None:
        self.spec = spec
        self.root = Path(root)
        self.path = spec.file(root)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._handle()  # fail now, naming the path, when the file is missing or unreadable

    @property
    def name(self) -> str:
        return self.spec.name

    def _handle(self) -> h5py.File:
        """This process's read handle (reopened after a fork: h5py handles must not cross processes)."""
        if self._file is None or self._pid != os.getpid():
            if not self.path.is_file():
                make = f" To make it, run: bench data prepare {self.spec.prepare} data.root={self.root}" \
                    if self.spec.prepare else ""
                raise DataError(f"side data {self.name}: file not found: expected {self.path}.{make}")
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as exc:
                raise DataError(f"side data {self.name}: {self.path} is not a readable HDF5 file ({exc}).") from None
            self._pid = os.getpid()
        return self._file

    def ids(self) -> list[str]:
        """Every sample id in the file (the groups that hold datasets), sorted."""
        found: set[str] = set()
        self._handle().visititems(lambda _, obj: found.add(obj.parent.name.lstrip("/"))
                                  if isinstance(obj, h5py.Dataset) else None)  # fmt: skip
        return sorted(found)

    def missing_keys(self, sample_id: str) -> list[str] | None:
        """The spec's keys the id's group lacks ([] when complete); None when the file has no group for the id."""
        group = self._handle().get(sample_id)
        if not isinstance(group, h5py.Group):
            return None
        return [key for key in self.spec.keys if not isinstance(group.get(key), h5py.Dataset)]

    def check(self, ids: Iterable[str]) -> None:
        """DataError unless every id has a group holding every key (names the file, the ids or the keys)."""
        missing, lacking = [], {}
        for sample_id in dict.fromkeys(ids):
            keys = self.missing_keys(sample_id)
            if keys is None:
                missing.append(sample_id)
            elif keys:
                lacking[sample_id] = keys
        if missing:
            shown = ", ".join(missing[:SHOWN_IDS]) + (", ..." if len(missing) > SHOWN_IDS else "")
            raise DataError(f"side data {self.name}: {self.path} has no group for {len(missing)} sample id(s): "
                            f"{shown}.")  # fmt: skip
        if lacking:
            sample_id, keys = next(iter(lacking.items()))
            raise DataError(f"side data {self.name}: in {self.path}, {len(lacking)} sample id(s) lack keys, e.g. "
                            f"{sample_id} has no {', '.join(keys)} (expected keys: {', '.join(self.spec.keys)}).")

    def read(self, sample_id: str) -> dict[str, np.ndarray]:
        """The arrays of ``sample_id``, by key, as stored; DataError when the id or a key is missing."""
        self.check([sample_id])
        group = self._handle()[sample_id]
        return {key: np.asarray(group[key]) for key in self.spec.keys}

    def describe(self) -> dict[str, Any]:
        """Provenance: the file's root attributes (each parsed from JSON; kept as text when it is not JSON), then
        ``path``, ``bytes`` and ``sha256`` of the file (hashed in full: reproducible across copies, unlike an
        mtime; about a second per GB, once per pre-training stage)."""
        info: dict[str, Any] = {}
        for key, value in self._handle().attrs.items():
            text = value.decode() if isinstance(value, bytes) else value
            try:
                info[key] = json.loads(text) if isinstance(text, str) else np.asarray(text).tolist()
            except json.JSONDecodeError:
                info[key] = text
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        return {**info, "path": str(self.path), "bytes": self.path.stat().st_size, "sha256": digest.hexdigest()}

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": None}  # a pickled copy (spawned worker) opens its own


def load_side_data(name_or_spec: str | SideData, root: Path) -> SideDataSource:
    """Open registered side data ``name`` (or an unregistered ``spec``) below the data root ``root``."""
    spec = SIDE_DATA.get(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    return SideDataSource(spec, Path(root))


def write_standin_side_data(name_or_spec: str | SideData, root: Path, size: str, seed: int = 0) -> list[Path]:
    """Write side data ``name`` for the synthetic stand-in below ``root`` (``<data root>/synthetic``) with the stand-in
    writer its spec names; return the files written. ConfigError when the spec names none.

    The writer runs alone, with ``rng = default_rng([seed, stream])`` as :func:`write_standin` would draw it: the
    sets it requires are read as they are (written first, by their own writers, only when absent), never
    rewritten, so a stand-in written at another size is left unchanged."""
    from bench.data.synthetic.writers import write_standin
    from bench.registry import DATASETS, STANDIN_WRITERS, load_plugins
    from bench.sources import missing_files

    load_plugins()
    spec = SIDE_DATA.get(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    if not spec.standin:
        raise ConfigError(f"side data {spec.name} names no stand-in writer: it cannot be written for the stand-in.")
    writer = STANDIN_WRITERS.get(spec.standin)
    absent = [name for name in writer.requires
              if name not in DATASETS or missing_files(name, Path(root), list(DATASETS.get(name).variants))]
    if absent:
        write_standin(Path(root), absent, size=size, seed=seed)
    return writer(Path(root), size, np.random.default_rng([seed, writer.stream]))


def side_key(name: str, key: str) -> str:
    """The sample key of array ``key`` of side data ``name``: ``"<name>.<key>"``."""
    return f"{name}.{key}"


class WithSideData(Dataset):
    """``dataset`` with the arrays of each side-data source added to every sample as ``"<name>.<key>"``.

    Every id of ``dataset`` is checked once, here. Attributes the wrapper does not define (``class_names``,
    ``labelweights``, ``rooms()``, ...) are the wrapped data set's."""

    def __init__(self, dataset: PointCloudDataset | WithSideData, sources: Sequence[SideDataSource] | SideDataSource,
                 ) -> None:  # fmt: skip
        self.dataset = dataset
        self.sources = [sources] if isinstance(sources, SideDataSource) else list(sources)
        names = [source.name for source in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"side data sources must have distinct names, got {names}.")
        ids = [dataset.sample_id(i) for i in range(len(dataset))]
        for source in self.sources:
            source.check(ids)

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, i: int) -> Sample:
        sample = dict(self.dataset.load(i))
        for source in self.sources:
            for key, value in source.read(sample["id"]).items():
                sample[side_key(source.name, key)] = value
        return sample

    def __getitem__(self, i: int) -> Sample:
        return self.load(i)

    def sample_id(self, i: int) -> str:
        return self.dataset.sample_id(i)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("dataset", "sources"):  # unpickling: not set yet
            raise AttributeError(name)
        return getattr(self.dataset, name)

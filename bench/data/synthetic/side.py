"""Writer of side-data files in the layout :mod:`bench.data.side` reads: one HDF5 group per sample id (ids holding
``/`` nest), one dataset per key. Written atomically (:func:`bench.io.atomic_output`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from bench.errors import ConfigError
from bench.io import atomic_output


def write_side_data(path: Path, ids: Sequence[str], arrays_by_key: Mapping[str, Sequence[np.ndarray]]) -> Path:
    """Write ``arrays_by_key[key][j]`` as ``h5[ids[j]][key]`` for every key and id; return ``path``.

    Each value of ``arrays_by_key`` is a sequence (or an array with a leading axis) of one array per id, in the
    order of ``ids``; arrays keep their dtype. Ids must be distinct."""
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"side data {path}: sample ids must be distinct.")
    for key, arrays in arrays_by_key.items():
        if len(arrays) != len(ids):
            raise ConfigError(f"side data {path}: key {key!r} has {len(arrays)} arrays for {len(ids)} ids.")
    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for j, sample_id in enumerate(ids):
            group = f.require_group(sample_id)
            for key, arrays in arrays_by_key.items():
                group.create_dataset(key, data=np.asarray(arrays[j]))
    return path

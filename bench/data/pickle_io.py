"""Pickle files from the field (``.dat`` caches, few-shot ``.pkl``), read with a restricted unpickler.

Only what numpy arrays, dtypes and scalars need for reconstruction and the builtins of plain containers are
admitted; any other global in the pickle stream raises :class:`bench.errors.DataError` before it is imported.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import BinaryIO

from bench.errors import DataError
from bench.io import atomic_write

#: (module, name) pairs a pickle of numpy arrays and plain containers may reference (numpy 1.x and 2.x names)
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [(mod, "_reconstruct") for mod in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(mod, "scalar") for mod in ("numpy.core.multiarray", "numpy._core.multiarray")]
    + [(mod, "_frombuffer") for mod in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    + [("builtins", name) for name in ("set", "frozenset", "bytearray", "bytes", "complex")]
    + [("__builtin__", name) for name in ("set", "frozenset", "bytearray", "complex")]
)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` admits only :data:`_ALLOWED`."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise DataError(
                f"{self._path}: the pickle references the forbidden global `{module}.{name}`. Only numpy arrays "
                "and plain containers (list, tuple, dict, set, numbers, strings) are accepted; refusing to load it."
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: object) -> object:
        raise DataError(f"{self._path}: the pickle uses persistent ids ({pid!r}), which are not accepted.")


def restricted_load(path: Path) -> object:
    """Load a pickle holding only numpy arrays and plain containers; anything else -> DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pickle file not found: expected {path}.")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, path).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a readable pickle of numpy arrays ({type(exc).__name__}: {exc}).") from None


def dump_pickle(obj: object, path: Path) -> None:
    """Write ``obj`` as a pickle atomically (:mod:`bench.io`)."""
    atomic_write(path, lambda handle: pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL))

"""The one atomic writer: every file the harness writes (records, checkpoints, leaderboards, summaries, data caches)
goes through :func:`atomic_write`.

Convention: the bytes go to a fresh, exclusively created temp file in the target's folder (``mkstemp``: a unique
name, ``O_EXCL``, so a planted file or link at a fixed temp name is never written through), are flushed and
fsynced, then ``os.replace`` renames the temp file onto the target. A reader sees the old file or the whole new one,
never half of it; a killed writer leaves at most a ``.<name>.*.tmp`` file, which the next write does not reuse.
The file gets mode 0644 less the process umask (``mkstemp`` would give 0600), the same for every output.
Writers that need a file name rather than a handle (h5py) use :func:`atomic_output`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from bench.errors import OutputError

DEFAULT_MODE = 0o644


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A fresh temp path beside ``path`` for writers that need a file name (h5py, a zip writer); on a clean exit
    the file is fsynced, given :data:`DEFAULT_MODE` less the umask and renamed onto ``path``; on an error it is
    removed and ``path`` is untouched. OutputError (naming the folder) when the folder cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}. Is {path.parent} writable?") from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, DEFAULT_MODE & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a binary temp file beside ``path``, fsync, rename onto ``path``; return ``path``."""
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text, written atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` written atomically."""
    import torch

    return atomic_write(path, lambda handle: torch.save(obj, handle))

"""The one atomic writer: every file the harness writes (records, checkpoints, leaderboards, summaries, data caches)
goes through :func:`atomic_write`.

Convention: the bytes go to a fresh, exclusively created temp file in the target's folder (``mkstemp``: a unique
name, ``O_EXCL``, so a planted file or link at a fixed temp name is never written through), are flushed and
fsynced, then ``os.replace`` renames the temp file onto the target. A reader sees the old file or the whole new one,
never half of it; a killed writer leaves at most a ``.<name>.*.tmp`` file, which the next write does not reuse.
The file gets mode 0644 less the process umask (``mkstemp`` would give 0600), the same for every output.
Writers that need a file name rather than a handle (h5py) use :func:`atomic_output`; files that belong together
(the leaderboard's formats) go through :func:`atomic_write_many`: all or none. A write that fails for want of space
(ENOSPC, EDQUOT) is an OutputError naming the file and the folder's free space, and leaves the target untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
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


#: errno values that mean "no room": the disk (or the user's quota) is full
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_out_of_space(err: BaseException) -> bool:
    """``err`` (or what caused it) says the disk or quota is full: ENOSPC / EDQUOT, or the text libraries that
    wrap it use (torch's stream writer, SQLite's "database or disk is full")."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return True
        text = str(err)
        if "No space left on device" in text or "disk is full" in text or "Disk quota exceeded" in text:
            return True
        err = err.__cause__ or err.__context__
    return False


def out_of_space_error(path: Path) -> OutputError:
    """The one message for a full disk: which file, which folder and what is free there."""
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return OutputError(f"no space left on the device while writing {path} ({free} in {path.parent}); the file is "
                       "unchanged. Free some space (or set output.dir to another disk) and run the same command again.")


def _fresh_temp(path: Path) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        if is_out_of_space(err):
            raise out_of_space_error(path) from None
        raise OutputError(f"cannot write {path}: {err.strerror or err}. Is {path.parent} writable?") from None
    return Path(name)


def _seal(tmp: Path) -> None:
    """fsync the finished temp file and give it the one mode."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, DEFAULT_MODE & ~_umask())


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """A fresh temp path beside ``path`` for writers that need a file name (h5py, a zip writer); on a clean exit
    the file is fsynced, given :data:`DEFAULT_MODE` less the umask and renamed onto ``path``; on an error it is
    removed and ``path`` is untouched. OutputError (naming the folder) when the folder cannot be written or the disk
    is full."""
    path = Path(path)
    tmp = _fresh_temp(path)
    try:
        yield tmp
        _seal(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and is_out_of_space(err):
            raise out_of_space_error(path) from None
        raise


def atomic_write_many(contents: dict[Path, bytes]) -> list[Path]:
    """Write every file of ``contents`` or none: all go to fresh temp files first (fsynced), and only when every one
    is complete are they renamed onto their targets. A failure (a full disk) removes the temp files and leaves every
    target as it was. Returns the paths written."""
    temps: dict[Path, Path] = {}
    path = None
    try:
        for path, data in contents.items():
            temps[path] = _fresh_temp(Path(path))
            with open(temps[path], "wb") as handle:
                handle.write(data)
            _seal(temps[path])
    except BaseException as err:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        if isinstance(err, Exception) and is_out_of_space(err):
            raise out_of_space_error(Path(path)) from None
        raise
    for path, tmp in temps.items():
        os.replace(tmp, path)
    return list(temps)


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


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the ``.<name>.<random>.tmp`` files (and the older fixed ``.<name>.tmp``) a killed atomic write left in
    ``folder`` (not below it); a link is removed, never followed. Returns what went."""
    stale = [path for path in Path(folder).glob(".*.tmp") if path.is_symlink() or path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` written atomically."""
    import torch

    return atomic_write(path, lambda handle: torch.save(obj, handle))


def check_output_links(folder: str | Path, allow: bool = False) -> None:
    """Refuse an output folder in which a sub-folder, at any depth, is a symlink to a folder outside it
    (``leaderboard -> /elsewhere``): the harness would create and replace files there. OutputError naming the link
    and its target, unless ``allow`` (``output.allow_links=true``). Links to files are harmless: the atomic writer
    replaces a link with its file, never writes through it. ``folder`` itself may be a link (it is resolved)."""
    root = Path(folder).resolve()
    if allow or not root.is_dir():
        return
    for parent, dirs, _ in os.walk(root):  # followlinks=False: a linked folder is seen, not entered
        for name in dirs:
            entry = Path(parent) / name
            if not entry.is_symlink():
                continue
            target = entry.resolve()
            if target != root and root not in target.parents:
                raise OutputError(f"{entry} is a symlink to {target}, outside the output folder {root}: the harness "
                                  "would write there. Remove the link, or set output.allow_links=true if that is "
                                  "where you want those files.")

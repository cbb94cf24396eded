"""Leases: which process is running a job (or a pre-training) of an output folder right now.

A lease is an exclusive ``fcntl.flock`` on a lock file: a job's is
``<output.dir>/leases/<suite>/<method>-<hash>/<job id with / -> __>.lock``, one per run record; a pre-training's is
``<output.dir>/leases/pretrain/<method>-<hash>.lock``. The holder writes its pid, host and start time (UTC, ISO
8601) into the file for humans (``cat`` it); only the lock counts, never the file's content or existence, and the
file stays after release.

Why a kernel lock, not a heartbeat file: the kernel drops the lock the moment its holder dies (a crash, an OOM kill,
SIGKILL included), so a lease "expires" at once, with no clock, no timeout to tune and no thread writing
heartbeats; a live holder is never mistaken for a dead one, however slow its epochs. ``flock`` locks belong to an
open file description, so two opens of one lock file conflict even inside one process (the sweep process and an
in-process job, two threads); a child forked while one is held (DataLoader workers with ``trainer.num_workers``
> 0) shares it until it exits too (torch's workers exit within seconds of their parent's death). Lock files are
opened close-on-exec, so a spawned or exec'd child never inherits one.

Limits: one host, or a file system that supports locks across hosts. On Linux, ``flock`` over NFS is emulated with
POSIX byte-range locks (since 2.6.12), which reach every client through the server's lock manager (NFSv3 lockd,
NFSv4); a client that loses contact with the server can lose its locks. A file system without locks (some FUSE
mounts, Lustre without ``-o flock``) raises an OutputError naming the file.

Lock files are created without following a planted symlink (``O_NOFOLLOW``), mode 0666 less the umask.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.errors import OutputError

LEASES_DIR = "leases"


@dataclass
class Lease:
    """A held lease: the lock file and the open descriptor that holds the lock (closing it releases the lock)."""

    path: Path
    fd: int

    def release(self) -> None:
        """Drop the lock (idempotent); the file and its holder line stay."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_acquire(path: Path) -> Lease | None:
    """The lease on ``path`` if no one holds it (the holder line is written), else None; never waits."""
    fd = _open(path)
    if not _lock(fd, path, blocking=False):
        return None
    return _held(path, fd)


def acquire(path: Path, on_wait: Callable[[str], None] | None = None) -> Lease:
    """The lease on ``path``, waiting for the holder to release it (or die) when it is held; ``on_wait(holder)``
    is called once, before the wait, with the holder's line (only when the lease is not free at once)."""
    lease = try_acquire(path)
    if lease is not None:
        return lease
    if on_wait is not None:
        on_wait(holder(path))
    fd = _open(path)
    _lock(fd, path, blocking=True)
    return _held(path, fd)


def is_free(path: Path) -> bool:
    """No process holds the lease on ``path`` now (it is taken and dropped at once to find out)."""
    lease = try_acquire(path)
    if lease is None:
        return False
    lease.release()
    return True


def holder(path: Path) -> str:
    """The last holder's line (``pid 123 on host since 2026-...``), or ``""`` when none was written."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise OutputError(f"cannot open the lock file {path}: {err.strerror or err}.") from None


def _lock(fd: int, path: Path, blocking: bool) -> bool:
    """Take the exclusive lock on ``fd``; False when it is held elsewhere (non-blocking only). ``fd`` is closed
    unless the lock was taken (also when the wait is interrupted by Ctrl-C)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        os.close(fd)
        return False
    except BaseException as err:
        os.close(fd)
        if isinstance(err, OSError) and err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise OutputError(f"cannot lock {path}: {err.strerror}. The file system of the output folder does not "
                              "support file locks (flock); put output.dir on one that does.") from None
        raise


def _held(path: Path, fd: int) -> Lease:
    """Write this process's holder line into the locked file and return the lease."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    line = f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
    except OSError:
        pass  # the line is for humans; a full disk must not fail the lease itself
    return Lease(path, fd)

"""bench.leases: a lease held through one open file excludes every other (same process or not), is released on
close and when its holder is SIGKILLed, records its holder for humans, and never writes through a planted link."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bench.errors import OutputError
from bench.leases import acquire, holder, is_free, try_acquire

HOLD = """
import sys, time
from pathlib import Path
from bench.leases import try_acquire
lease = try_acquire(Path(sys.argv[1]))
print("held" if lease else "busy", flush=True)
time.sleep(60)
"""


def test_a_lease_held_through_another_descriptor_is_not_acquired_in_the_same_process(tmp_path):
    path = tmp_path / "leases" / "job.lock"
    first = try_acquire(path)
    assert first is not None and path.is_file()
    assert try_acquire(path) is None and not is_free(path)
    first.release()
    first.release()  # idempotent
    second = try_acquire(path)
    assert second is not None
    second.release()
    assert is_free(path)


def test_the_holder_line_names_this_process_and_stays_after_release(tmp_path):
    path = tmp_path / "job.lock"
    with try_acquire(path):
        line = holder(path)
    assert line.startswith(f"pid {os.getpid()} on ") and " since 20" in line
    assert holder(path) == line and holder(tmp_path / "absent.lock") == ""


def test_acquire_waits_for_the_holder_and_says_so_once(tmp_path):
    path = tmp_path / "job.lock"
    first = try_acquire(path)
    waits: list[str] = []
    threading.Timer(0.3, first.release).start()
    tic = time.monotonic()
    with acquire(path, on_wait=waits.append):
        assert time.monotonic() - tic >= 0.25
    assert len(waits) == 1 and waits[0].startswith(f"pid {os.getpid()} on ")  # the holder, named once
    with acquire(path, on_wait=waits.append):  # free at once: no wait is noted
        pass
    assert len(waits) == 1


def test_a_lease_is_released_when_its_holder_is_killed(tmp_path):
    path = tmp_path / "job.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert try_acquire(path) is None and holder(path).startswith(f"pid {proc.pid} ")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        lease = try_acquire(path)  # no timeout to wait out: the kernel dropped the lock with the process
        assert lease is not None
        lease.release()
    finally:
        proc.kill()
        proc.wait()


def test_a_planted_symlink_is_not_followed(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("keep me")
    link = tmp_path / "job.lock"
    link.symlink_to(target)
    with pytest.raises(OutputError, match="job.lock"):
        try_acquire(link)
    assert target.read_text() == "keep me"

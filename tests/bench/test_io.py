"""The one atomic writer: whole files or none, a fresh temp name (a planted link at the old fixed name is never
written through), one documented mode."""

from __future__ import annotations

import os

import pytest
import torch

from bench.io import atomic_torch_save, atomic_write, atomic_write_text


def test_writes_whole_files_with_the_default_mode_less_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "a" / "b.txt", "héllo")
    finally:
        os.umask(old)
    assert path.read_text(encoding="utf-8") == "héllo" and (path.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in path.parent.iterdir()) == ["b.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = atomic_write_text(tmp_path / "r.json", "old")

    def boom(handle):
        handle.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_planted_link_at_the_old_fixed_temp_name_is_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".last.pt.tmp").symlink_to(outside)
    atomic_torch_save({"x": torch.ones(2)}, tmp_path / "out" / "last.pt")
    assert outside.read_text() == "precious"
    assert not (tmp_path / "out" / "last.pt").is_symlink()
    assert torch.load(tmp_path / "out" / "last.pt", weights_only=True)["x"].sum() == 2

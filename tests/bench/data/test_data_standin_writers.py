"""Registered stand-in writers: one per data set (plus the side data ``teachers``), each with its own random stream
and declared requirements; writing all sets, each set alone, or the sets in another order gives byte-identical
files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bench.data.synthetic import writers
from bench.data.synthetic.writers import StandinWriter, standin_writer, write_order, write_standin
from bench.errors import BenchError, UnknownNameError
from bench.registry import DATASETS, STANDIN_WRITERS, Registry, load_plugins

#: the stream of every writer: changing one changes that set's files, so it is pinned here
STREAMS = {"scanobjectnn": 0, "modelnet40": 1, "shapenet55": 2, "modelnet_fewshot": 3, "s3dis": 4, "shapenetpart": 5,
           "shapenet15k": 6, "teachers": 7, "shapenet_occ": 8}
#: writers of side data (no data set of their own), with the set they read
SIDE_WRITERS = {"teachers": "shapenet55"}


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` by relative path, without the STANDIN.json note."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "STANDIN.json"}  # fmt: skip


def test_every_data_set_registers_one_writer_with_its_own_stream() -> None:
    load_plugins()
    assert set(STANDIN_WRITERS.names()) == set(DATASETS.names()) | set(SIDE_WRITERS)
    assert {name: STANDIN_WRITERS.get(name).stream for name in STANDIN_WRITERS} == STREAMS
    assert STANDIN_WRITERS.get("modelnet_fewshot").requires == ("modelnet40",)
    assert STANDIN_WRITERS.origin("s3dis") == "bench.data.synthetic.rooms"
    assert STANDIN_WRITERS.origin("modelnet_fewshot") == "bench.data.synthetic.fewshot"
    assert STANDIN_WRITERS.get("teachers").requires == ("shapenet55",)
    assert STANDIN_WRITERS.origin("teachers") == "bench.data.teachers"
    assert [w.name for w in write_order(None)] == sorted(STREAMS, key=STREAMS.get)
    assert [w.name for w in write_order(["modelnet_fewshot", "s3dis"])] == ["modelnet40", "modelnet_fewshot", "s3dis"]


def test_each_set_alone_and_any_order_give_the_same_files(tiny_data_root: Path, tmp_path: Path) -> None:
    full = digests(tiny_data_root / "synthetic")
    alone: dict[str, str] = {}
    for name in STREAMS:
        written = write_standin(tmp_path / name, [name], size="tiny", seed=0)
        assert list(written)[-1] == name and set(written) <= {name, "modelnet40", SIDE_WRITERS.get(name)}
        files = digests(tmp_path / name)
        assert {str(p.relative_to(tmp_path / name)) for paths in written.values() for p in paths} == set(files)
        assert all(full[path] == digest for path, digest in files.items()), name
        alone.update(files)
    assert alone == full
    backwards = write_standin(tmp_path / "backwards", list(reversed(STREAMS)), size="tiny", seed=0)
    assert list(backwards) == ["shapenet_occ", "shapenet55", "teachers", "shapenet15k", "shapenetpart", "s3dis",
                               "modelnet40", "modelnet_fewshot", "scanobjectnn"]  # fmt: skip
    assert digests(tmp_path / "backwards") == full
    note = json.loads((tmp_path / "backwards" / "STANDIN.json").read_text())
    assert note == {"synthetic": True, "size": "tiny", "seed": 0, "datasets": sorted(STREAMS)}
    assert (tmp_path / "backwards" / "STANDIN.json").read_bytes() == (tiny_data_root / "synthetic" /
                                                                       "STANDIN.json").read_bytes()  # fmt: skip


def test_requirements_streams_and_names_are_checked(monkeypatch, tmp_path: Path) -> None:
    load_plugins()
    monkeypatch.setattr(writers, "STANDIN_WRITERS", Registry("stand-in writer"))

    def noop(root: Path, size: str, rng) -> list[Path]:
        return []

    standin_writer("a", stream=100, requires=("b",))(noop)
    standin_writer("b", stream=101, requires=("a",))(noop)
    with pytest.raises(BenchError, match="stream 100"):
        standin_writer("c", stream=100)(noop)
    with pytest.raises(BenchError, match="in a cycle: a -> b -> a"):
        write_order(["a"])
    standin_writer("d", stream=102, requires=("nowhere",))(noop)
    with pytest.raises(UnknownNameError, match='unknown stand-in writer "nowhere"'):
        write_order(["d"])
    assert isinstance(writers.STANDIN_WRITERS.get("a"), StandinWriter)
    assert writers.STANDIN_WRITERS.origin("a") == __name__

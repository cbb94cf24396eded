"""Registered prepare steps (``bench data prepare <name>``): what is registered, the default step, order and
repeats, the summary lines, and the CLI's messages and exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.data import modelnet40
from bench.data.prepare import DEFAULT_STEP, PrepareStep, resolve_steps, summary_lines
from bench.errors import BenchError, UnknownNameError
from bench.registry import PREPARERS, load_plugins


@pytest.fixture
def modelnet_root(tiny_data_root: Path, tmp_path: Path) -> Path:
    """A data root holding a copy of the stand-in's ModelNet40 txt layout, without its ``.dat`` caches."""
    folder = tmp_path / modelnet40.FOLDER
    shutil.copytree(tiny_data_root / "synthetic" / modelnet40.FOLDER, folder)
    for split in ("train", "test"):
        modelnet40.cache_path(folder, split).unlink()
    return tmp_path


def test_each_module_registers_its_steps() -> None:
    load_plugins()
    assert {"modelnet40", "fewshot"} <= set(PREPARERS.names()) and DEFAULT_STEP == "modelnet40"
    assert PREPARERS.origin("modelnet40") == "bench.data.modelnet40"
    assert PREPARERS.origin("fewshot") == "bench.data.fewshot"
    assert all(isinstance(PREPARERS.get(name), PrepareStep) for name in PREPARERS)


def test_steps_resolve_in_order_once_and_unknown_names_fail_first() -> None:
    assert [s.name for s in resolve_steps([])] == ["modelnet40"]
    assert [s.name for s in resolve_steps(["fewshot", "modelnet40", "fewshot"])] == ["fewshot", "modelnet40"]
    with pytest.raises(UnknownNameError, match='unknown prepare step "modelnet". Did you mean "modelnet40"?'):
        resolve_steps(["fewshot", "modelnet"])


def test_default_step_builds_the_caches(modelnet_root: Path, tiny_data_root: Path, capsys) -> None:
    folder = modelnet_root / modelnet40.FOLDER
    assert main(["data", "prepare", f"data.root={modelnet_root}"]) == 0
    caches = [modelnet40.cache_path(folder, split) for split in ("train", "test")]
    assert capsys.readouterr().out == "".join(f"wrote {path}\n" for path in caches)
    for path in caches:  # the same bytes as the stand-in writer's caches
        assert path.read_bytes() == (tiny_data_root / "synthetic" / path.relative_to(modelnet_root)).read_bytes()
    assert PREPARERS.get("modelnet40")(modelnet_root, {}) == caches


def test_cli_messages_and_exit_codes(tmp_path: Path, capsys) -> None:
    assert main(["data", "prepare", f"data.root={tmp_path}"]) == 2
    assert f"nothing to prepare: {tmp_path / modelnet40.FOLDER} does not exist." in capsys.readouterr().err
    assert main(["data", "prepare", "shapenet", f"data.root={tmp_path}"]) != 0
    err = capsys.readouterr().err
    assert f"Known: {', '.join(PREPARERS.names())}." in err and 'unknown prepare step "shapenet"' in err
    with pytest.raises(BenchError, match="seed=x: the few-shot draw seed must be a non-negative integer"):
        PREPARERS.get("fewshot")(tmp_path, {"seed": "x"})


def test_summary_lines(tmp_path: Path) -> None:
    step = PREPARERS.get("fewshot")
    few = [tmp_path / "a.dat", tmp_path / "b.dat"]
    assert summary_lines(step, few) == [f"wrote {few[0]}", f"wrote {few[1]}"]
    many = [tmp_path / "ModelNetFewshot" / f"{w}way_10shot" / f"{k}.pkl" for w in (5, 10) for k in range(10)]
    assert summary_lines(step, many) == [f"wrote 20 few-shot fold file(s) under {tmp_path / 'ModelNetFewshot'}"]
    assert summary_lines(step, []) == ["fewshot: nothing to write"]

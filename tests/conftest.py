"""Shared fixtures: the tiny synthetic stand-in (written once per session) and tiny run settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

#: overrides that make any suite x method run in seconds on the tiny stand-in
TINY_RUN = [
    "seeds=[0]",
    "trainer.epochs=2",
    "trainer.batch_size=8",
    "pretrain.trainer.epochs=1",
    "pretrain.trainer.batch_size=8",
    "data.standin_size=tiny",
    "executor.workers=1",  # the demo profile runs two jobs at a time; tests run them in-process
]


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """A data root whose ``synthetic/`` holds the tiny stand-in of every data set (and no real data)."""
    from bench.data.synthetic import write_standin

    root = tmp_path_factory.mktemp("data")
    write_standin(root / "synthetic", None, size="tiny")
    return root


@pytest.fixture()
def isolated_env(monkeypatch, tmp_path):
    """No BENCH_DATA / MLFLOW_TRACKING_URI from the caller's shell; cwd in a temp folder."""
    monkeypatch.delenv("BENCH_DATA", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_run() -> list[str]:
    """Overrides for a seconds-long run of any suite x method on the tiny stand-in."""
    return list(TINY_RUN)

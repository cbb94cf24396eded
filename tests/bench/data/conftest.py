"""Fixtures for the data tests: the tiny synthetic stand-in (written once per session) and the real fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.synthetic import write_standin

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
MODELNET_FIXTURE = SHARED_DATA / "modelnet40_normal_resampled_2class"


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data root holding the tiny stand-in of every data set (read-only by convention: copy before editing)."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_standin(root, size="tiny", seed=0)
    return root


@pytest.fixture
def shared_data() -> Path:
    """The real fixtures folder ../shared/data beside the checkout (skips when it is absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data fixtures not available: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def modelnet_folder(tmp_path: Path) -> Path:
    """A private copy of the real 2-class ModelNet40 fixture folder (skips when ../shared/data is absent)."""
    if not MODELNET_FIXTURE.is_dir():
        pytest.skip(f"real data fixture not available: {MODELNET_FIXTURE}")
    folder = tmp_path / "modelnet40_normal_resampled"
    shutil.copytree(MODELNET_FIXTURE, folder)
    return folder


@pytest.fixture
def cloud() -> dict[str, np.ndarray]:
    """A small raw sample with every per-point key: 64 points, unit normals, part labels, a label."""
    rng = np.random.default_rng(123)
    normal = rng.normal(size=(64, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return {
        "xyz": rng.uniform(-1, 1, (64, 3)).astype(np.float32),
        "normal": normal,
        "seg": np.arange(64, dtype=np.int64),
        "label": np.asarray(7, dtype=np.int64),
    }

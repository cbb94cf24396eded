"""The build cache: keys that change with the sources, the cache location, and the nvcc compile check."""

from __future__ import annotations

import shutil

import pytest

from extensions import build


def test_build_key_tracks_sources(tmp_path, monkeypatch):
    copy = tmp_path / "csrc"
    shutil.copytree(build.CSRC, copy)
    monkeypatch.setattr(build, "CSRC", copy)
    before = build.build_key("cpu")
    assert before == build.build_key("cpu") and before != build.build_key("cuda")
    with (copy / "cpu" / "fps.cpp").open("a") as handle:
        handle.write("\n// edit\n")
    assert build.build_key("cpu") != before


def test_cache_root_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_OPS_CACHE", str(tmp_path / "ops"))
    assert build.cache_root() == tmp_path / "ops"


def test_sources_are_split_by_backend():
    names = {p.name for p in build.sources("cpu")}
    assert {"bindings.cpp", "fps.cpp", "knn.cpp", "chamfer.cpp", "gather.cpp"} <= names
    cuda = {p.name for p in build.sources("cuda")}
    assert {"bindings.cpp", "fps.cu", "knn.cu", "chamfer.cu", "gather.cu"} <= cuda


@pytest.mark.slow
def test_cuda_sources_compile_with_nvcc():
    if shutil.which("nvcc") is None and not (build.Path("/usr/local/cuda/bin/nvcc")).exists():
        pytest.skip("nvcc not installed")
    rows = build.check_cuda_sources("sm_90")
    failed = [(name, message) for name, ok, _, message in rows if not ok]
    assert not failed, failed

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


def _load_in_subprocess(cache, timeout: float = 120.0):
    import os
    import subprocess
    import sys

    code = "from extensions import build; print(build.build('cpu'))"
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "BENCH_OPS_CACHE": str(cache)},
                          capture_output=True, text=True, timeout=timeout)


def test_a_stale_torch_baton_does_not_hang_a_cached_load(tmp_path):
    """torch's build baton (``<folder>/lock``) left by a process killed while loading the ops made every later
    load wait forever (a CI run hung on it); a cached build is now loaded without the baton."""
    folder = build.cache_root() / f"pointbench_cpu-{build.build_key('cpu')}"
    if not (folder / "pointbench_cpu.so").exists():
        pytest.skip(f"the CPU ops are not built in {folder} (python -m extensions.build builds them)")
    cache = tmp_path / "ops"
    shutil.copytree(folder, cache / folder.name)
    (cache / folder.name / "lock").write_text("")  # the baton of a killed process
    done = _load_in_subprocess(cache, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("pointbench_cpu.so")


@pytest.mark.slow
def test_a_stale_torch_baton_does_not_hang_a_compile(tmp_path):
    """With no cached library the compile runs under the harness's flock, which removes a baton nobody holds."""
    import shutil as sh

    if sh.which("g++") is None or sh.which("ninja") is None and not _has_ninja():
        pytest.skip("no C++ compiler or ninja here")
    cache = tmp_path / "ops"
    folder = cache / f"pointbench_cpu-{build.build_key('cpu')}"
    folder.mkdir(parents=True)
    (folder / "lock").write_text("")
    done = _load_in_subprocess(cache, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (folder / "pointbench_cpu.so").exists() and not (folder / "lock").exists()


def _has_ninja() -> bool:
    try:
        import ninja  # noqa: F401
    except ImportError:
        return False
    return True

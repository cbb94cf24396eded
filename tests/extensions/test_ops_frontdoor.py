"""The front door: backend selection rules, fallbacks, argument errors and the documented conventions."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from extensions import backends, build, ops

REPO = Path(__file__).resolve().parents[2]


def test_env_var_forces_backend(monkeypatch, cpp_built):
    cpu = torch.device("cpu")
    monkeypatch.setenv("BENCH_OPS", "torch")
    assert backends.resolve(cpu, torch.float32) == "torch"
    monkeypatch.setenv("BENCH_OPS", "cpp")
    assert backends.resolve(cpu, torch.float32) == "cpp"
    assert backends.resolve(cpu, torch.float16) == "torch"  # compiled ops take float32/float64 only
    monkeypatch.setenv("BENCH_OPS", "cuda")
    assert backends.resolve(cpu, torch.float32) == "torch"  # CPU tensors under a forced GPU backend
    monkeypatch.delenv("BENCH_OPS")
    assert backends.resolve(cpu, torch.float64) == "cpp"
    assert backends.resolve(cpu, None) == "torch"  # mixed dtypes
    monkeypatch.setenv("BENCH_OPS", "fast")
    with pytest.raises(ValueError, match="BENCH_OPS"):
        backends.resolve(cpu, torch.float32)


def test_explicit_backend_is_strict(cpp_built):
    xyz = torch.rand(1, 8, 3)
    with pytest.raises(backends.BackendUnavailable):
        ops.knn(xyz, xyz, 2, backend="cuda")
    with pytest.raises(backends.BackendUnavailable):
        ops.furthest_point_sample(xyz.half(), 2, backend="cpp")
    with pytest.raises(ValueError, match="backend must be"):
        ops.knn(xyz, xyz, 2, backend="keops")
    assert ops.furthest_point_sample(xyz.half(), 2).tolist() == ops.furthest_point_sample(xyz, 2).tolist()


def test_failed_build_falls_back_with_one_warning(monkeypatch):
    def broken(kind: str, verbose: bool = False) -> Path:
        raise build.BuildError(f"building pointbench {kind} ops failed: no compiler")

    monkeypatch.setattr(build, "_STATE", {})
    monkeypatch.setattr(build, "build", broken)
    monkeypatch.delenv("BENCH_OPS", raising=False)
    xyz = torch.rand(2, 30, 3)
    with pytest.warns(RuntimeWarning, match="falling back to the PyTorch reference"):
        first = ops.furthest_point_sample(xyz, 5)
    assert backends.resolve("cpu", torch.float32) == "torch"
    assert torch.equal(first, ops.furthest_point_sample(xyz, 5, backend="torch"))
    assert "no compiler" in build.status("cpu")
    with pytest.raises(backends.BackendUnavailable, match="no compiler"):
        ops.knn(xyz, xyz, 2, backend="cpp")


def test_import_and_ops_work_without_a_toolchain(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "BENCH_OPS_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    env.pop("BENCH_OPS", None)
    code = ("import warnings, torch; warnings.simplefilter('error'); import extensions.ops as o; "
            "warnings.simplefilter('ignore'); x = torch.rand(2, 9, 3); print(o.furthest_point_sample(x, 3).shape, "
            "o.backend_name())")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["torch.Size([2,", "3])", "torch"]


def test_backend_name_is_logged_once(caplog, cpp_built, monkeypatch):
    monkeypatch.delenv("BENCH_OPS", raising=False)
    monkeypatch.setattr(backends, "_logged", set())
    with caplog.at_level(logging.INFO, logger="extensions.ops"):
        names = {ops.backend_name("cpu") for _ in range(3)}
    assert names == {"cpp"}
    assert sum("point ops backend: cpp" in r.getMessage() for r in caplog.records) == 1


def test_argument_errors():
    xyz = torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match="cannot pick 6"):
        ops.furthest_point_sample(xyz, 6)
    with pytest.raises(ValueError, match="start=5"):
        ops.furthest_point_sample(xyz, 2, start=5)
    with pytest.raises(ValueError, match="k=6"):
        ops.knn(xyz, xyz, 6)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        ops.knn(torch.rand(2, 5, 2), xyz, 1)
    with pytest.raises(ValueError, match="at least 3"):
        ops.three_nn(xyz, xyz[:, :2])
    with pytest.raises(ValueError, match="non-empty"):
        ops.chamfer_distance(xyz, torch.rand(2, 0, 3))


@pytest.mark.parametrize("name", ["torch", "cpp"])
def test_fps_start_and_chamfer_conventions(name, request):
    if name == "cpp":
        request.getfixturevalue("cpp_built")
    xyz = torch.tensor([[[0.0, 0, 0], [3, 0, 0], [1, 0, 0], [-2, 0, 0]]])
    assert ops.furthest_point_sample(xyz, 3, backend=name).tolist() == [[0, 1, 3]]
    assert ops.furthest_point_sample(xyz, 3, start=2, backend=name).tolist() == [[2, 3, 1]]
    a = torch.tensor([[[0.0, 0, 0], [2, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0]]])
    d_ab, d_ba = ops.chamfer_distance(a, b, backend=name)
    assert d_ab.tolist() == [[0.0, 4.0]] and d_ba.tolist() == [[0.0]]
    assert ops.chamfer_l2(a, b).item() == pytest.approx(2.0)  # mean(0, 4) + mean(0)
    assert ops.chamfer_l1(a, b).item() == pytest.approx(0.5)  # (mean(0, 2) + 0) / 2
    assert ops.chamfer_per_cloud(a, b).tolist() == pytest.approx([2.0])


def test_interpolation_weights_are_normalised_inverse_distances():
    w = ops.interpolation_weights(torch.tensor([[[1.0, 4.0, 4.0]]]))  # distances 1, 2, 2
    torch.testing.assert_close(w, torch.tensor([[[0.5, 0.25, 0.25]]]), rtol=1e-6, atol=1e-6)

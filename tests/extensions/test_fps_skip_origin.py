"""FPS ``skip_origin``: pointnet2_ops' kernel never picks a point with |p|^2 <= 1e-3 after its first pick.

Every backend is checked against a literal one-thread reading of the kernel (erikwijmans/Pointnet2_PyTorch
``pointnet2_ops_lib/pointnet2_ops/_ext-src/src/sampling_gpu.cu``, ``furthest_point_sampling_kernel``, read not
copied), against hand-computed orders at the threshold, and the process setting (``BENCH_FPS_SKIP_ORIGIN``, default
on) is checked to reach the front door, spawned worker processes and the RunRecord environment.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

from extensions import backends, build, ops

ENV = backends.FPS_SKIP_ORIGIN_ENV


def pointnet2_fps(cloud: np.ndarray, m: int) -> list[int]:
    """The kernel's lines with one thread, float32: ``temp`` starts at 1e10; the first pick is 0; each step skips
    points whose float ``mag`` is <= 1e-3 (a double literal, so the float is compared as a double), updates
    ``temp = min(d, temp)`` for the others and keeps the first strictly larger ``temp`` (``best = -1``,
    ``besti = 0``)."""
    pts = cloud.astype(np.float32)
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    mag = x * x + y * y + z * z  # float32, left to right
    kept = mag.astype(np.float64) > 1e-3
    temp = np.full(len(pts), 1e10, dtype=np.float32)
    old, out = 0, [0]
    for _ in range(1, m):
        d = (x - x[old]) * (x - x[old]) + (y - y[old]) * (y - y[old]) + (z - z[old]) * (z - z[old])
        temp = np.where(kept, np.minimum(d, temp), temp)
        candidates = np.where(kept, temp, np.float32(-1))  # skipped points never beat best = -1
        old = int(np.argmax(candidates)) if candidates.max() > -1 else 0  # the first maximum (strict '>'), else 0
        out.append(old)
    return out


@pytest.fixture(params=["torch", "cpp", pytest.param("cuda", marks=pytest.mark.gpu)])
def any_backend(request: pytest.FixtureRequest) -> str:
    """Every backend, the pure-PyTorch reference included."""
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        assert build.ensure("cuda"), build.status("cuda")
    elif request.param == "cpp":
        request.getfixturevalue("cpp_built")
    return request.param


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "cuda" else "cpu")


@pytest.mark.parametrize("b,n,m", [(3, 40, 40), (2, 300, 64), (2, 2100, 300)])  # the last: bucketed CPU kernel
def test_every_backend_matches_the_literal_kernel(any_backend, make_cloud, b, n, m):
    xyz = make_cloud(b, n, torch.float32, _device(any_backend), seed=n, duplicates=True, near_origin=True)
    got = ops.furthest_point_sample(xyz, m, skip_origin=True, backend=any_backend).cpu()
    for row in range(b):
        assert got[row].tolist() == pointnet2_fps(xyz[row].cpu().numpy(), m), row
    picked = xyz.cpu().gather(1, got[:, 1:].unsqueeze(-1).expand(-1, -1, 3))
    assert (picked.square().sum(-1) > 1e-3).all()  # never a point near the origin after the first pick


def _octahedron(dtype: torch.dtype, inner: list[list[float]]) -> torch.Tensor:
    """The six unit axis points (picked first, around the origin), then points near the origin."""
    axes = [[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]
    return torch.tensor([axes + inner], dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("skip_origin,expected", [(False, [0, 1, 2, 3, 4, 5, 6, 7]), (True, [0, 1, 2, 3, 4, 5, 7, 0])])
def test_threshold(any_backend, dtype, skip_origin, expected):
    """|p|^2 = 0.0316^2 = 0.00099856 is skipped, 0.0317^2 = 0.00100489 is not. Without skipping, 6 comes first
    (0.9684^2 from (1,0,0) beats 7's 0.9683^2 from (0,1,0)), then 7; skipping, 7 comes alone and, with every kept
    point used, the lowest kept index (0) repeats."""
    xyz = _octahedron(dtype, [[0.0316, 0, 0], [0, 0.0317, 0]]).to(_device(any_backend))
    got = ops.furthest_point_sample(xyz, 8, skip_origin=skip_origin, backend=any_backend)
    assert got.tolist() == [expected]


def test_a_float32_norm_equal_to_float32_1e_3_is_kept(any_backend):
    """fl32(x*x + y*y) == fl32(1e-3) = 0.00100000005 > 1e-3: the kernel compares as a double and keeps the point;
    comparing in float32 would skip it."""
    x, y = np.float32(0.031622775), np.float32(7.633545e-06)
    assert np.float32(x * x + y * y) == np.float32(1e-3)
    xyz = _octahedron(torch.float32, [[float(x), float(y), 0.0], [0.0, 0.0, 0.0]]).to(_device(any_backend))
    got = ops.furthest_point_sample(xyz, 8, skip_origin=True, backend=any_backend).tolist()
    assert got == [[0, 1, 2, 3, 4, 5, 6, 0]]  # 6 is kept, the origin (7) never comes
    assert got[0] == pointnet2_fps(xyz[0].cpu().numpy(), 8)


def test_the_setting_is_the_default_of_every_call(monkeypatch):
    xyz = _octahedron(torch.float32, [[0.01, 0, 0]])
    monkeypatch.setenv(ENV, "")  # recorded, so teardown restores the caller's (delenv of an unset name is not)
    assert ops.fps_skip_origin() is True  # the reference kernel's behaviour by default
    assert ops.furthest_point_sample(xyz, 7).tolist() == [[0, 1, 2, 3, 4, 5, 0]]
    ops.set_fps_skip_origin(False)
    assert ops.fps_skip_origin() is False and ops.furthest_point_sample(xyz, 7).tolist() == [[0, 1, 2, 3, 4, 5, 6]]
    assert ops.furthest_point_sample(xyz, 7, skip_origin=True).tolist() == [[0, 1, 2, 3, 4, 5, 0]]  # a call says
    for raw, value in [("1", True), ("off", False), (" TRUE ", True), ("", True)]:
        monkeypatch.setenv(ENV, raw)
        assert ops.fps_skip_origin() is value
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ValueError, match=ENV):
        ops.fps_skip_origin()
    with pytest.raises(TypeError, match="bool"):
        ops.set_fps_skip_origin("no")  # type: ignore[arg-type]


def _worker_setting() -> bool:
    from extensions import ops as worker_ops

    return worker_ops.fps_skip_origin()


def test_the_setting_reaches_spawned_workers(monkeypatch):
    """The pool executor spawns its workers (bench.executors.ProcessPool): they inherit the parent's setting."""
    monkeypatch.setenv(ENV, "1")
    ops.set_fps_skip_origin(False)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert pool.submit(_worker_setting).result(timeout=120) is False


def test_run_records_store_the_setting(monkeypatch):
    from bench.env import environment

    monkeypatch.setenv(ENV, "")  # recorded, so teardown restores the caller's (delenv of an unset name is not)
    assert environment("cpu")["ops_fps_skip_origin"] is True
    monkeypatch.setenv(ENV, "0")
    assert environment("cpu")["ops_fps_skip_origin"] is False

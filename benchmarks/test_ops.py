"""Point-op speed: compiled CPU backend vs the PyTorch reference and the fastest public CPU alternatives, measured
side by side in one run (``pytest benchmarks/test_ops.py --benchmark-enable``).

Groups (float32, batch 32 unless noted): FPS 8192->1024 and 1024->64 (vs the reference loop and ``fpsample`` 0.3.3
vanilla and bucket-kdline h=7, looped over the clouds, one thread each); kNN k=32 for 64/128/512 centres over
1024/2048/8192 points (vs ``cdist`` + ``topk``); Chamfer between 2048-point clouds, forward and forward+backward
(vs ``cdist`` + ``min``); scaling of FPS (m=512) and kNN (512 centres) over N = 1k, 8k, 64k at batch 8 on one
thread. At the end a summary prints median ratios, fitted scaling exponents and the peak RSS above the pre-call
RSS (Linux VmHWM after resetting it, one subprocess per measurement; the outputs themselves are included).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from extensions import build, ops

try:
    import fpsample  # optional comparison (fpsample==0.3.3 ships a cp311 manylinux wheel)
except ImportError:
    fpsample = None

THREADS = int(os.environ.get("BENCH_THREADS", torch.get_num_threads()))
MEDIANS: dict[tuple[str, str], float] = {}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _setup_and_summary(request):
    torch.set_num_threads(THREADS)
    if not build.ensure("cpu"):
        pytest.skip(f"compiled CPU ops unavailable: {build.status('cpu')}")
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if MEDIANS and capture is not None:
        lines = _summary_lines()
        with capture.global_and_fixture_disabled():
            print("\n".join(lines), flush=True)


def _cloud(b: int, n: int, seed: int) -> torch.Tensor:
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed))


def _run(benchmark, group: str, name: str, fn, rounds: int = 5) -> None:
    benchmark.group = group
    benchmark.name = name
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
    if benchmark.stats is not None:
        MEDIANS[(group, name)] = benchmark.stats.stats.median


FPS_CASES = [(8192, 1024), (1024, 64)]
FPS_IMPLS = ["cpp", "torch", "fpsample-vanilla", "fpsample-kdline"]


@pytest.mark.parametrize("impl", FPS_IMPLS)
@pytest.mark.parametrize("n,m", FPS_CASES)
def test_fps(benchmark, n, m, impl):
    xyz = _cloud(32, n, seed=n)
    if impl in ("cpp", "torch"):
        fn = lambda: ops.furthest_point_sample(xyz, m, backend=impl)  # noqa: E731
    else:
        if fpsample is None:
            pytest.skip("fpsample not installed (pip install fpsample==0.3.3)")
        arrays = [c.numpy() for c in xyz]
        sampler = fpsample.fps_sampling if impl == "fpsample-vanilla" else fpsample.bucket_fps_kdline_sampling
        extra = () if impl == "fpsample-vanilla" else (7,)
        fn = lambda: [sampler(a, m, *extra, start_idx=0) for a in arrays]  # noqa: E731
    _run(benchmark, f"fps B32 {n}->{m}", impl, fn, rounds=3 if impl == "torch" and n > 4096 else 5)


KNN_CASES = [(64, 1024), (128, 2048), (512, 8192)]


def _cdist_topk(query: torch.Tensor, ref: torch.Tensor, k: int):
    return torch.cdist(query, ref).topk(k, dim=-1, largest=False)


@pytest.mark.parametrize("impl", ["cpp", "cdist+topk"])
@pytest.mark.parametrize("m,n", KNN_CASES)
def test_knn(benchmark, m, n, impl):
    query, ref = _cloud(32, m, seed=m), _cloud(32, n, seed=n)
    if impl == "cpp":
        fn = lambda: ops.knn(query, ref, 32, backend="cpp")  # noqa: E731
    else:
        fn = lambda: _cdist_topk(query, ref, 32)  # noqa: E731
    _run(benchmark, f"knn B32 {m}x{n} k32", impl, fn)


def _cdist_chamfer(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = torch.cdist(a, b).square()
    return d.min(2).values, d.min(1).values


@pytest.mark.parametrize("impl", ["cpp", "cdist+min"])
@pytest.mark.parametrize("grad", [False, True], ids=["fwd", "fwd+bwd"])
def test_chamfer(benchmark, impl, grad):
    a, b = _cloud(32, 2048, seed=1).requires_grad_(grad), _cloud(32, 2048, seed=2).requires_grad_(grad)

    def fn():
        d_ab, d_ba = ops.chamfer_distance(a, b, backend="cpp") if impl == "cpp" else _cdist_chamfer(a, b)
        if grad:
            (d_ab.mean() + d_ba.mean()).backward()

    _run(benchmark, f"chamfer B32 2048x2048 {'fwd+bwd' if grad else 'fwd'}", impl, fn, rounds=3)


SCALING_N = [1024, 8192, 65536]


@pytest.mark.parametrize("n", SCALING_N)
@pytest.mark.parametrize("op", ["fps", "knn"])
def test_scaling(benchmark, op, n):
    xyz = _cloud(8, n, seed=n)
    if op == "fps":
        fn = lambda: ops.furthest_point_sample(xyz, 512, backend="cpp")  # noqa: E731
    else:
        query = _cloud(8, 512, seed=3)
        fn = lambda: ops.knn(query, xyz, 32, backend="cpp")  # noqa: E731
    torch.set_num_threads(1)  # one thread: the exponent reflects the algorithm, not OpenMP team wake-ups
    try:
        _run(benchmark, f"scaling {op} B8 1-thread", str(n), fn, rounds=3)
    finally:
        torch.set_num_threads(THREADS)


PEAK_CODE = """
import torch
from extensions import ops
torch.set_num_threads({threads})
g = torch.Generator().manual_seed(0)
q, r = torch.rand(32, {m}, 3, generator=g), torch.rand(32, {n}, 3, generator=g)
run = {{"cpp-knn": lambda: ops.knn(q, r, 32, backend="cpp"),
        "cdist+topk": lambda: torch.cdist(q, r).topk(32, dim=-1, largest=False),
        "cpp-chamfer": lambda: ops.chamfer_distance(q, r, backend="cpp"),
        "cdist+min": lambda: torch.cdist(q, r).square().min(2)}}["{impl}"]
ops.knn(q[:1, :2], r[:1, :4], 1, backend="cpp")
def kib(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = kib("VmRSS:")
out = run()
print((kib("VmHWM:") - before) / 1024)
"""


def _peak_mb(impl: str, m: int, n: int) -> float:
    code = PEAK_CODE.format(threads=THREADS, m=m, n=n, impl=impl)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return float(out.stdout.split()[-1])


def _ratio(group: str, slow: str, fast: str = "cpp") -> str:
    if (group, slow) not in MEDIANS or (group, fast) not in MEDIANS:
        return "n/a"
    return f"{MEDIANS[(group, slow)] / MEDIANS[(group, fast)]:.1f}x"


def _exponent(group: str) -> str:
    points = [(math.log(int(n)), math.log(MEDIANS[(group, n)])) for g, n in MEDIANS if g == group]
    if len(points) < 2:
        return "n/a"
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return f"{slope:.2f}"


def _summary_lines() -> list[str]:
    lines = ["", f"point-op summary ({THREADS} threads; ratio = other median / cpp median; >1 means cpp is faster)"]
    for group in sorted({g for g, _ in MEDIANS}):
        names = sorted(n for g, n in MEDIANS if g == group)
        cells = ", ".join(f"{n} {MEDIANS[(group, n)] * 1e3:.1f} ms" for n in names)
        ratios = ", ".join(f"{n}/cpp {_ratio(group, n)}" for n in names if n != "cpp" and "cpp" in names)
        lines.append(f"  {group}: {cells}" + (f" | {ratios}" if ratios else ""))
    lines.append(f"  scaling exponents (time ~ N^e, 1 thread): fps {_exponent('scaling fps B8 1-thread')}, "
                 f"knn {_exponent('scaling knn B8 1-thread')}")
    for m, n in [(128, 2048), (512, 8192), (2048, 2048)]:
        pair = ("cpp-chamfer", "cdist+min") if m == n else ("cpp-knn", "cdist+topk")
        peaks = ", ".join(f"{impl} {_peak_mb(impl, m, n):.0f} MB" for impl in pair)
        lines.append(f"  peak extra RSS B32 {m}x{n}: {peaks}")
    return lines

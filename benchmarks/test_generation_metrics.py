"""Generation-metric speed, measured side by side in one run
(``pytest benchmarks/test_generation_metrics.py --benchmark-enable``; skipped without it).

Groups (float32 CPU, ``BENCH_THREADS`` threads, default all torch sees):
- ``pairwise CD <n>x<n>x<N>``: the (n, n) CD matrix of n clouds against n others, N points each (PointFlow CD:
  squared, sum of the two means). ``ours`` is :func:`bench.metrics.generation.pairwise_cd` (the
  ``extensions.ops.chamfer_distance`` kernel on blocks of pairs); ``ours-torchref`` the same with ``BENCH_OPS=torch``
  (the fallback when the compiled ops are not built); ``gemm-blocks`` |x|^2 + |y|^2 - 2 x.y as one K=5 GEMM per
  block of 2 x 4 pairs, clamp, min, mean; ``cdist-per-ref`` a loop over the references, ``torch.cdist`` against 8
  samples at a time; ``pointflow-batch`` PointFlow's style: each reference expanded against a batch of 8 samples,
  full ``bmm`` Gram matrices as in its ``distChamfer``. Every comparator is checked against ``ours``.
  n = ``BENCH_GEN_CLOUDS`` (default 32), N = ``BENCH_GEN_POINTS`` (default 2048). ``BENCH_FULL=1`` sets n = 405
  (airplane) and times ``ours`` only: each comparator would take about half an hour, and per-pair ratios do not
  depend on n.
- ``emd N=2048``: approx vs exact (scipy) EMD on ``BENCH_EMD_PAIRS`` (default 2) pairs, both costs; the time ratio
  and the approximation error go into ``extra_info``.
- ``compute_all_metrics``: 16 vs 16 clouds of 256 points, default options (approx squared-cost EMD).
The summary at the end prints ms per pair, ratios to ``ours`` and the time of the three CD matrices for 405 + 405
clouds (M_rs full, M_rr and M_ss upper triangles: 405^2 + 405*404 = 327,645 pairs) extrapolated from the measured
per-pair time, and the approx-EMD time for the three full EMD matrices (3 * 405^2 = 492,075 pairs).
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from bench.metrics.generation import compute_all_metrics, pairwise_cd
from extensions import ops
from extensions.emd import earth_movers_distance

THREADS = int(os.environ.get("BENCH_THREADS", torch.get_num_threads()))
FULL = os.environ.get("BENCH_FULL", "") == "1"
CLOUDS = 405 if FULL else int(os.environ.get("BENCH_GEN_CLOUDS", "32"))
POINTS = int(os.environ.get("BENCH_GEN_POINTS", "2048"))
EMD_PAIRS = int(os.environ.get("BENCH_EMD_PAIRS", "2"))
CD_GROUP = f"pairwise CD {CLOUDS}x{CLOUDS}x{POINTS}"
PER_PAIR: dict[str, float] = {}  # impl -> seconds per pair
EMD_FIGURES: dict[str, dict[str, float]] = {}
ALL_METRICS: dict[str, float] = {}
REFERENCE_PAIRS = {"cd": 405**2 + 405 * 404, "emd": 3 * 405**2}


@pytest.fixture(scope="module", autouse=True)
def _setup_and_summary(request):
    config = request.config
    if config.getoption("benchmark_disable") and not config.getoption("benchmark_enable"):
        pytest.skip("generation-metric benchmarks run only with --benchmark-enable")
    torch.set_num_threads(THREADS)
    yield
    capture = config.pluginmanager.get_plugin("capturemanager")
    if (PER_PAIR or EMD_FIGURES) and capture is not None:
        with capture.global_and_fixture_disabled():
            print("\n".join(_summary_lines()), flush=True)


@pytest.fixture(scope="module")
def cd_clouds() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    refs, samples = torch.rand(CLOUDS, POINTS, 3, generator=g), torch.rand(CLOUDS, POINTS, 3, generator=g)
    return refs, samples, pairwise_cd(refs[:4], samples[:4])


# --- comparators -------------------------------------------------------------------------------------------------
def _gemm_blocks(a: torch.Tensor, b: torch.Tensor, rows: int = 2, cols: int = 4) -> torch.Tensor:
    n = a.shape[1]
    xa = torch.cat([a, a.square().sum(-1, keepdim=True), torch.ones_like(a[..., :1])], -1)  # [x, |x|^2, 1]
    xb = torch.cat([-2 * b, torch.ones_like(b[..., :1]), b.square().sum(-1, keepdim=True)], -1)  # [-2y, 1, |y|^2]
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.float64)
    for i in range(0, a.shape[0], rows):
        left = xa[i : i + rows].reshape(-1, 5)
        for j in range(0, b.shape[0], cols):
            d = (left @ xb[j : j + cols].reshape(-1, 5).T).view(left.shape[0] // n, n, -1, n)
            to_b = d.amin(3).clamp_min(0).double().mean(1)  # (rows, cols): mean over a's points
            to_a = d.amin(1).clamp_min(0).double().mean(2)
            out[i : i + rows, j : j + cols] = to_b + to_a
    return out


def _cdist_per_ref(a: torch.Tensor, b: torch.Tensor, batch: int = 8) -> torch.Tensor:
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.float64)
    for i in range(a.shape[0]):
        for j in range(0, b.shape[0], batch):
            chunk = b[j : j + batch]
            d = torch.cdist(a[i], chunk.reshape(-1, 3)).square().view(a.shape[1], chunk.shape[0], -1)
            out[i, j : j + batch] = d.amin(2).double().mean(0) + d.amin(0).double().mean(1)
    return out


def _pointflow_batch(a: torch.Tensor, b: torch.Tensor, batch: int = 8) -> torch.Tensor:
    out = torch.empty(a.shape[0], b.shape[0], dtype=torch.float64)
    for i in range(a.shape[0]):
        for j in range(0, b.shape[0], batch):
            y = b[j : j + batch]
            x = a[i].expand_as(y)
            gram_x, gram_y, cross = x @ x.transpose(1, 2), y @ y.transpose(1, 2), x @ y.transpose(1, 2)
            norm_x = gram_x.diagonal(dim1=1, dim2=2).unsqueeze(2)
            norm_y = gram_y.diagonal(dim1=1, dim2=2).unsqueeze(1)
            d = norm_x + norm_y - 2 * cross  # (batch, N, N): d[k, p, q] = |x_p - y_q|^2
            out[i, j : j + batch] = d.amin(2).double().mean(1) + d.amin(1).double().mean(1)
    return out


IMPLS = {
    "ours": pairwise_cd,
    "ours-torchref": pairwise_cd,
    "gemm-blocks": _gemm_blocks,
    "cdist-per-ref": _cdist_per_ref,
    "pointflow-batch": _pointflow_batch,
}


def _pedantic(benchmark, group: str, name: str, fn, rounds: int):
    benchmark.group, benchmark.name = group, name
    return benchmark.pedantic(fn, rounds=rounds, warmup_rounds=0, iterations=1)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_pairwise_cd(benchmark, cd_clouds, impl, monkeypatch):
    if FULL and impl != "ours":
        pytest.skip("BENCH_FULL=1 times ours only (a comparator takes ~0.5 h at 405 clouds)")
    if impl == "ours-torchref":
        monkeypatch.setenv("BENCH_OPS", "torch")
    refs, samples, check = cd_clouds
    fn = IMPLS[impl]
    torch.testing.assert_close(fn(refs[:4], samples[:4]), check, rtol=1e-4, atol=1e-7)  # also warms up
    result = _pedantic(benchmark, CD_GROUP, impl, lambda: fn(refs, samples), rounds=3 if impl == "ours" else 1)
    assert result.shape == (CLOUDS, CLOUDS)
    if benchmark.stats is not None:
        PER_PAIR[impl] = benchmark.stats.stats.median / CLOUDS**2
        benchmark.extra_info.update(pairs=CLOUDS**2, ms_per_pair=PER_PAIR[impl] * 1e3)
        benchmark.extra_info["backend"] = "torch" if impl == "ours-torchref" else ops.backend_name("cpu")


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
def test_emd_approx_vs_exact(benchmark, cost):
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(EMD_PAIRS, 2048, 3, generator=g), torch.rand(EMD_PAIRS, 2048, 3, generator=g)
    start = time.perf_counter()
    exact = earth_movers_distance(a.double(), b.double(), cost, "exact")
    exact_s = (time.perf_counter() - start) / EMD_PAIRS
    approx = _pedantic(benchmark, "emd N=2048", f"approx {cost}", lambda: earth_movers_distance(a, b, cost), 1)
    if benchmark.stats is None:
        return
    approx_s = benchmark.stats.stats.median / EMD_PAIRS
    ratio = approx.double() / exact
    figures = {
        "approx_s_per_pair": approx_s,
        "exact_s_per_pair": exact_s,
        "time_ratio_approx_over_exact": approx_s / exact_s,
        "error_ratio_mean": ratio.mean().item(),
        "error_ratio_max": ratio.max().item(),
    }
    benchmark.extra_info.update(figures)
    EMD_FIGURES[cost] = figures


def test_compute_all_metrics(benchmark):
    g = torch.Generator().manual_seed(2)
    samples, refs = torch.rand(16, 256, 3, generator=g), torch.rand(16, 256, 3, generator=g)
    _pedantic(
        benchmark, "compute_all_metrics", "16x16x256 approx sqeuclidean", lambda: compute_all_metrics(samples, refs), 1
    )
    if benchmark.stats is not None:
        ALL_METRICS["16x16x256"] = benchmark.stats.stats.median


def _summary_lines() -> list[str]:
    lines = ["", f"generation-metric summary ({THREADS} threads)"]
    if PER_PAIR:
        base = PER_PAIR.get("ours")
        cells = ", ".join(
            f"{k} {v * 1e3:.2f} ms/pair" + (f" ({v / base:.1f}x ours)" if base and k != "ours" else "")
            for k, v in PER_PAIR.items()
        )
        lines.append(f"  {CD_GROUP}: {cells}")
        for impl, per_pair in PER_PAIR.items():
            est = per_pair * REFERENCE_PAIRS["cd"]
            lines.append(f"  estimate, 405+405 CD matrices with {impl}: {est:.0f} s ({est / 60:.1f} min)")
    for cost, fig in EMD_FIGURES.items():
        est = fig["approx_s_per_pair"] * REFERENCE_PAIRS["emd"] / 3600
        lines.append(
            f"  emd N=2048 {cost}: approx {fig['approx_s_per_pair']:.2f} s/pair, exact "
            f"{fig['exact_s_per_pair']:.2f} s/pair, approx/exact value ratio mean {fig['error_ratio_mean']:.3f}"
            f" max {fig['error_ratio_max']:.3f}; 405+405 approx EMD matrices ~{est:.0f} h on this CPU"
        )
    for size, seconds in ALL_METRICS.items():
        lines.append(f"  compute_all_metrics {size}: {seconds:.2f} s")
    return lines

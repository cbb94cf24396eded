"""S3DIS whole-room inference on CPU (2 threads): our streaming sliding-block voting vs a reference-style pass.

Run: ``pytest benchmarks/test_s3dis_wholeroom.py --benchmark-enable -s``. One synthetic room of 1M points
(:func:`bench.data.synthetic.rooms.make_room`, 10 to 12 m a side), 1 m blocks, stride 0.5 m, chunks of 2048 points,
13 classes. The model is a per-point linear map, so the timings are the pipeline's own cost (block search,
chunking, logit accumulation), not the network's.

- ``streaming``: :func:`suites.protocols.semseg.whole_room_logits` (one sort by x, one by y per strip; chunks
  batched 32 at a time and their logits added into an (N, C) sum straight away);
- ``reference_style``: as the reference ``ScannetDatasetWholeScene`` loader: one boolean mask over the whole room
  per block, every chunk of the room stacked into one array first, then inference over it.
Each round runs both passes back to back (interleaved). Reported: the fastest wall and CPU seconds per pass and
their ratios, points / second, and peak traced memory (``tracemalloc``, the
numpy side: torch's own allocations are not traced, the (N, C) float32 sum and (N,) int32 votes are
added as computed sizes for both) and the process's peak RSS. CPU timings on a shared machine are noisy: compare the
ratio, and absolute figures only on an idle machine.
"""

from __future__ import annotations

import math
import resource
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch import Tensor, nn

from bench.data.s3dis import block_starts
from bench.data.synthetic.rooms import make_room
from suites.protocols.semseg import whole_room_logits

THREADS, POINTS, CLASSES, NUM_POINT, BATCH, ROUNDS = 2, 1_000_000, 13, 2048, 32, 2
RESULTS: dict[str, dict[str, float]] = {}


class PointwiseLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(3, CLASSES, generator=torch.Generator().manual_seed(0))

    def forward(self, points: Tensor) -> Tensor:
        return points @ self.weight


@pytest.fixture(scope="module")
def room() -> np.ndarray:
    xyz = make_room(np.random.default_rng(0), POINTS, (10.0, 12.0))[:, :3].astype(np.float32)
    assert len(xyz) == POINTS
    return xyz


def streaming(xyz: np.ndarray, model: nn.Module) -> Tensor:
    total, _ = whole_room_logits(model, xyz, NUM_POINT, CLASSES, block_size=1.0, stride=0.5, batch_size=BATCH,
                                 device="cpu", rng=np.random.default_rng(0))  # fmt: skip
    return total


@torch.no_grad()
def reference_style(xyz: np.ndarray, model: nn.Module) -> Tensor:
    """Per-block full-room masks; all chunks of the room built first (the reference whole-scene loader)."""
    rng = np.random.default_rng(0)
    lo, hi = xyz[:, :2].min(0).astype(np.float64), xyz[:, :2].max(0).astype(np.float64)
    x, y = xyz[:, 0].astype(np.float64), xyz[:, 1].astype(np.float64)
    chunks, indices, primary = [], [], []
    for sx in block_starts(lo[0], hi[0], 1.0, 0.5):
        for sy in block_starts(lo[1], hi[1], 1.0, 0.5):
            inside = np.flatnonzero((x >= sx) & (x <= sx + 1.0) & (y >= sy) & (y <= sy + 1.0))
            if inside.size == 0:
                continue
            count = math.ceil(inside.size / NUM_POINT) * NUM_POINT
            pad = count - inside.size
            order = np.concatenate([rng.permutation(inside), rng.choice(inside, pad, replace=pad > inside.size)])
            block = xyz[order].copy()
            block[:, :2] -= [sx + 0.5, sy + 0.5]
            chunks.append(block.reshape(-1, NUM_POINT, 3))
            indices.append(order)
            primary.append(np.arange(count) < inside.size)
    data, idx, keep = np.concatenate(chunks), torch.from_numpy(np.concatenate(indices)), np.concatenate(primary)
    logits = torch.cat([model(torch.from_numpy(data[i : i + BATCH])).reshape(-1, CLASSES)
                        for i in range(0, len(data), BATCH)])  # fmt: skip
    total = torch.zeros(len(xyz), CLASSES)
    keep_t = torch.from_numpy(keep)
    return total.index_add_(0, idx[keep_t], logits[keep_t])


def _peak_traced(fn: Callable[[], Tensor]) -> float:
    """Peak numpy-side traced MB of one call, plus the (N, C) float32 sum and (N,) int32 votes torch holds."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (peak + POINTS * (CLASSES * 4 + 4)) / 2**20


def test_wholeroom_interleaved(benchmark: BenchmarkFixture, room: np.ndarray) -> None:
    """Each round runs both passes back to back (interleaved); the fastest wall / CPU time per pass is kept."""
    model = PointwiseLinear()
    passes = {"streaming": streaming, "reference_style": reference_style}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in passes}

    def one_round() -> None:
        for name, fn in passes.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn(room, model)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))

    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    for name, fn in passes.items():
        wall, cpu = min(t[0] for t in times[name]), min(t[1] for t in times[name])
        RESULTS[name] = {"wall_s": wall, "cpu_s": cpu, "points_per_s_wall": POINTS / wall,
                         "peak_traced_mb": _peak_traced(lambda fn=fn: fn(room, model))}  # fmt: skip
        print(f"\n{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in RESULTS[name].items()))
    s, r = RESULTS["streaming"], RESULTS["reference_style"]
    ratios = {"time_ratio_wall": r["wall_s"] / s["wall_s"], "time_ratio_cpu": r["cpu_s"] / s["cpu_s"],
              "memory_ratio": r["peak_traced_mb"] / s["peak_traced_mb"],
              "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    benchmark.extra_info.update(RESULTS, **ratios, threads=THREADS, points=POINTS)
    print("reference_style / streaming: " + ", ".join(f"{k} {v:.3g}" for k, v in ratios.items()))


def test_streaming_matches_reference_style(room: np.ndarray) -> None:
    """Same sums: with a per-point model each point votes once per block holding it, whatever the padding draws."""
    sub = room[::50]  # 20k points: the equality check itself need not be big
    model = PointwiseLinear()
    assert torch.allclose(streaming(sub, model), reference_style(sub, model), atol=1e-3)


@pytest.mark.parametrize("block_points", [0, NUM_POINT], ids=["demo_block", "paper_block"])
def test_wholeroom_with_the_demo_segmenter(benchmark: BenchmarkFixture, room: np.ndarray, block_points: int) -> None:
    """End to end with a real network: the demo profile's Point-MAE encoder + segmentation head (random weights,
    eval mode) over the same 1M-point room, at the demo's points per block (0) or the paper's 2048. One timed pass:
    points / second. Memory is the pipeline test's figure: the network adds activations of one batch of chunks
    (``BATCH`` x points per block), whatever the room size."""
    from omegaconf import OmegaConf

    from bench.config import resolve
    from bench.registry import METHODS
    from suites.protocols.semseg import PointSegmenter

    cfg = resolve("s3dis", "point_mae", profile="demo")
    backbone = METHODS.get("point_mae").build_backbone(OmegaConf.to_object(cfg.method), num_group=cfg.suite.num_group,
                                                        group_size=cfg.suite.group_size, drop_path=0.0)
    model = PointSegmenter(backbone, cfg.suite.num_classes).eval()
    npoints = block_points or int(cfg.suite.npoints)

    def one_pass() -> None:
        with torch.no_grad():
            whole_room_logits(model, room, npoints, cfg.suite.num_classes, block_size=1.0, stride=0.5,
                              batch_size=BATCH, device="cpu", rng=np.random.default_rng(0))

    wall = time.perf_counter()
    benchmark.pedantic(one_pass, rounds=1, iterations=1, warmup_rounds=0)
    wall = time.perf_counter() - wall
    info = {"points_per_block": npoints, "wall_s": wall, "points_per_s_wall": POINTS / wall, "threads": THREADS}
    benchmark.extra_info.update(info)
    print("\ndemo segmenter: " + ", ".join(f"{k} {v:.4g}" for k, v in info.items()))

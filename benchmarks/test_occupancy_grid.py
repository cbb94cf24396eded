"""Occupancy decoding on a 128^3 grid in chunks: time and peak memory per chunk size, side by side
(``pytest benchmarks/test_occupancy_grid.py --benchmark-enable -s``; ``tox -e bench``).

What runs: :func:`bench.shape_fields.field_volumes` of G3PT's :class:`~methods.blocks.perceiver.OccupancyDecoder`
(the demo profile's size: width 64, 64 latents, 4 heads, 2 self-attention blocks, 6 Fourier frequencies) for one
shape over 128^3 = 2,097,152 query points, float32, ``torch.no_grad``, 2 threads, chunks of 16k / 64k / 256k
points (64k is the suite default). The three run interleaved, one of each per round
(``interleaved.time_interleaved``); printed and in extra_info: each chunk's fastest round and its time relative to
the default chunk. Peak memory: each chunk size runs once more in a fresh interpreter, which reports its peak
resident set (``ru_maxrss``) minus that of the same interpreter after building the model and the grid (so the
figure is what decoding adds); the ratio to the largest chunk shows the memory bound holding. On a GPU (when
``torch.cuda.is_available()``) the default chunk is also timed on the device. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from interleaved import time_interleaved
from pytest_benchmark.fixture import BenchmarkFixture

from bench.api import ShapeFields
from bench.shape_fields import field_volumes
from methods.blocks.perceiver import OccupancyDecoder

THREADS = 2
RESOLUTION, ROUNDS = 128, 3
CHUNKS = {"16k": 16_384, "64k": 65_536, "256k": 262_144}
BUILD = """
import torch
from bench.api import ShapeFields
from methods.blocks.perceiver import OccupancyDecoder
torch.manual_seed(0)
torch.set_num_threads(2)
decoder = OccupancyDecoder(64, 4, 2, 6).eval()
with torch.no_grad():
    decoded = decoder.decode(torch.randn(1, 64, 64))
"""


def decoder_fields(device: str = "cpu") -> ShapeFields:
    torch.manual_seed(0)
    decoder = OccupancyDecoder(64, 4, 2, 6).eval().to(device)
    with torch.no_grad():
        decoded = decoder.decode(torch.randn(1, 64, 64, device=device))

    def query(points: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return decoder.query(points.to(device), decoded)

    return ShapeFields("occupancy", query, 1)


def peak_rss_mb(chunk: int) -> float:
    """Peak RSS added by one 128^3 decoding with ``chunk`` (a fresh interpreter; MB, Linux ru_maxrss is KB)."""
    code = BUILD + textwrap.dedent(f"""
        import json, resource
        from bench.shape_fields import field_volumes
        fields = ShapeFields("occupancy", lambda q: decoder.query(q, decoded), 1)
        field_volumes(fields, 8, 1.0, 512)  # warm the kernels on a tiny grid
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with torch.no_grad():
            field_volumes(fields, {RESOLUTION}, 1.0, {chunk})
        print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def test_grid_decoding_time_and_memory_per_chunk(benchmark: BenchmarkFixture,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    fields = decoder_fields()
    benchmark.group = f"occupancy decoding {RESOLUTION}^3"
    steps = {name: (lambda c=chunk: field_volumes(fields, RESOLUTION, 1.0, c)) for name, chunk in CHUNKS.items()}
    time_interleaved(benchmark, steps, ROUNDS, THREADS,
                     lambda best: {f"{k} / 64k time": v / best["64k"] for k, v in best.items()}, capsys)
    memory = {name: peak_rss_mb(chunk) for name, chunk in CHUNKS.items()}
    benchmark.extra_info.update({f"peak_added_rss_{k}_mb": v for k, v in memory.items()})
    with capsys.disabled():
        for name, value in memory.items():
            print(f"peak added RSS {name} (MB): {value:.1f}  ({value / max(memory['256k'], 1e-9):.2f} of 256k)")
    if torch.cuda.is_available():
        gpu = decoder_fields("cuda")
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        field_volumes(gpu, RESOLUTION, 1.0, CHUNKS["64k"])
        end.record()
        torch.cuda.synchronize()
        benchmark.extra_info["gpu_64k_s"] = start.elapsed_time(end) / 1000

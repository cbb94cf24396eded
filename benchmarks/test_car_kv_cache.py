"""CAR next-scale sampling with the KV cache vs without, side by side in one run
(``pytest benchmarks/test_car_kv_cache.py --benchmark-enable``; under ``--benchmark-disable`` each runs once).

One sampling pass = every scale in order: :meth:`CARTransformer.step` (``use_cache`` True: only the new scale's
tokens run against the cached keys/values; False: the whole sequence so far is recomputed with the block-causal
mask), top-k sampling (temperature 1, k 50, a seeded CPU generator), then the CVQ's up-sampling of the sampled ids
and down-sampling of the partial reconstruction into the next scale's inputs (the same cost in both). Tiny random
models, eval mode, ``torch.no_grad``, batch 8, float32 CPU, 2 threads:
- CAR width 64, depth 4, 4 heads, vocab 512, class-like condition of 32 dims; CVQ width 32, 64 latents.
- ``4 scales`` (1, 4, 16, 64; T = 85) and ``7 scales`` (1, 2, 4, 8, 16, 32, 64; T = 127): more scales mean more
  recomputation without the cache.
Before timing, both modes are checked to sample the same ids (greedy). The two modes run interleaved, one of each
per round (``interleaved.time_interleaved``), so machine load hits them alike; printed and in extra_info: each
mode's fastest round and the ratio uncached / cached. No timing is asserted.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from interleaved import time_interleaved
from pytest_benchmark.fixture import BenchmarkFixture
from torch import Tensor

from methods.blocks.car import CARTransformer
from methods.blocks.cvq import CrossScaleQuantizer
from methods.blocks.maskgit import sample_ids

THREADS = 2
BATCH, ROUNDS, VOCAB, COND_DIM = 8, 7, 512, 32
CASES = {"4 scales": (1, 4, 16, 64), "7 scales": (1, 2, 4, 8, 16, 32, 64)}
Models = tuple[CARTransformer, CrossScaleQuantizer, Tensor]


def _models(scales: Sequence[int]) -> Models:
    torch.manual_seed(0)
    cvq = CrossScaleQuantizer(32, scales[-1], scales, VOCAB, 8, heads=4).eval()
    car = CARTransformer(VOCAB, 64, 4, 4, scales, cond_dim=COND_DIM, in_dim=32).eval()
    return car, cvq, torch.randn(BATCH, COND_DIM)


def sample_pass(car: CARTransformer, cvq: CrossScaleQuantizer, cond: Tensor, use_cache: bool, top_k: int,
                temperature: float, generator: torch.Generator) -> list[Tensor]:  # fmt: skip
    """One full next-scale sampling pass; returns the sampled ids of every scale."""
    with torch.no_grad():
        state, inputs, f_hat, ids = car.start(cond), None, None, []
        for s in range(car.num_scales):
            logits = car.step(state, s, inputs, use_cache=use_cache)
            ids.append(sample_ids(logits, temperature, top_k, 1.0, generator)[0])
            h = cvq.upsample(s, cvq.lookup(s, ids[-1]))
            f_hat = h if f_hat is None else f_hat + h
            if s + 1 < car.num_scales:
                inputs = cvq.next_input(s + 1, f_hat)
        return ids


@pytest.fixture(scope="module", params=list(CASES))
def models(request: pytest.FixtureRequest) -> tuple[str, Models]:
    case = request.param
    car, cvq, cond = _models(CASES[case])
    greedy = [sample_pass(car, cvq, cond, flag, 0, 0.0, torch.Generator().manual_seed(0)) for flag in (True, False)]
    assert all(torch.equal(a, b) for a, b in zip(*greedy, strict=True)), "cached and uncached sampling differ"
    return case, (car, cvq, cond)


def test_car_sampling_pass_cached_vs_uncached(benchmark: BenchmarkFixture, models: tuple[str, Models],
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    case, (car, cvq, cond) = models
    benchmark.group = f"car sampling {case}"
    benchmark.extra_info.update(batch=BATCH, scales=list(CASES[case]))
    generator = torch.Generator().manual_seed(0)
    steps = {mode: (lambda flag=flag: sample_pass(car, cvq, cond, flag, 50, 1.0, generator))
             for mode, flag in (("cached", True), ("uncached", False))}  # fmt: skip
    ratio = f"{case}: uncached / cached"
    time_interleaved(benchmark, steps, ROUNDS, THREADS, lambda best: {ratio: best["uncached"] / best["cached"]}, capsys)

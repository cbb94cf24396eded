"""Timing several training steps side by side: one of each per round, so machine load hits them alike; each step's
fastest round is its time (the robust statistic on a shared, noisy machine), and ratios come from those."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch import Tensor, nn

from extensions import ops


def paired(make_ours: Callable[[], nn.Module], make_ref: Callable[[], nn.Module], batch: int,
           points: int = 1024) -> tuple[nn.Module, nn.Module, Tensor]:
    """(ours, reference, xyz): ours built under seed 0, the reference loaded from our state dict (same names and
    shapes, asserted by ``load_state_dict``), and one (batch, points, 3) uniform cloud batch."""
    torch.manual_seed(0)
    ours = make_ours()
    ref = make_ref()
    ref.load_state_dict(ours.state_dict())
    return ours, ref, torch.rand(batch, points, 3)


def train_step(model: nn.Module, loss_fn: Callable[[], Tensor]) -> Callable[[], None]:
    """One optimiser step of ``model`` on ``loss_fn()``: train mode, zero grads, backward, AdamW (lr 1e-4, wd 0.05)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)

    def step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()

    return step


def time_interleaved(
    benchmark: BenchmarkFixture, steps: dict[str, Callable[[], None]], rounds: int, threads: int,
    ratios: Callable[[dict[str, float]], dict[str, float]], capsys: pytest.CaptureFixture[str],
) -> dict[str, float]:
    """Run ``rounds`` rounds (after one warm-up) of every step in order; record and print each step's best time and
    the ``ratios`` computed from those best times; return the best times (seconds)."""
    times: dict[str, list[float]] = {k: [] for k in steps}

    def one_round() -> None:
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1)
    best = {k: min(v[-rounds:]) for k, v in times.items()}
    found = ratios(best)
    benchmark.extra_info.update(threads=threads, ops_backend=ops.backend_name(), **found)
    benchmark.extra_info.update({f"best_{k}_s": v for k, v in best.items()})
    with capsys.disabled():
        print()
        for name, value in {**{f"best {k} (s)": v for k, v in best.items()}, **found}.items():
            print(f"{name}: {value:.3f}")
    return best

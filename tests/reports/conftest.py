"""Shared helpers for the report tests: hand-built, valid RunRecords."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.records import RunRecord


def build_record(
    method: str = "point_mae",
    suite: str = "scanobjectnn",
    variant: str = "objbg",
    seed: int = 0,
    last: float = 80.0,
    best: float = 85.0,
    **overrides: Any,
) -> RunRecord:
    """A valid RunRecord with a two-epoch history; ``overrides`` set any other field, ``extra_final`` adds to final."""
    final: dict[str, float] = {"last": last, "best": best, "best_epoch": 1}
    final.update(overrides.pop("extra_final", {}))
    fields: dict[str, Any] = {
        "job_id": f"{suite}/{variant}/{method}/seed{seed}",
        "sweep_id": "sweep-test",
        "method": method,
        "suite": suite,
        "suite_version": 1,
        "variant": variant,
        "seed": seed,
        "protocol": "finetune",
        "data_kind": "real",
        "profile": "paper",
        "recipe": "method",
        "metric": "acc",
        "higher_is_better": True,
        "epochs": [{"epoch": 0, "test_acc": best}, {"epoch": 1, "test_acc": last}],
        "final": final,
        "selection": {"best": "max over epochs on test", "last": "last epoch"},
        "config": {"seed": seed},
        "env": {"git_commit": "abc1234", "torch": "2.4.0", "cuda": None, "ops_backend": "torch", "device": "cpu"},
        "wall_time_s": 12.5,
        "config_hash": "cfg0001abc",
        "created": "2025-01-01T00:00:00",
    }
    fields.update(overrides)
    return RunRecord(**fields)


@pytest.fixture
def make_record() -> Callable[..., RunRecord]:
    """The :func:`build_record` factory."""
    return build_record


@pytest.fixture
def three_seeds() -> list[RunRecord]:
    """Seeds 0, 1, 2 with last 80, 82, 84 and best 85, 86, 90: paper 90 (seed 2), honest 82.00 ± 2.00."""
    return [build_record(seed=s, last=last, best=best) for s, last, best in [(0, 80, 85), (1, 82, 86), (2, 84, 90)]]

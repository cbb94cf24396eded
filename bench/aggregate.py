"""Statistics over the seeds of one (method, variant, config): the numbers of a leaderboard row and of the MLflow
group run, computed from RunRecords (definitions: :mod:`reports.leaderboard`).

Every per-seed value is the statistic of the record's typed result that has the asked *role* (:mod:`bench.results`);
"best over seeds" follows the metric's :class:`~bench.metrics.base.Direction`. Means and sample standard deviations
(ddof=1) use :mod:`statistics`; a single seed has a NaN std.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from bench.errors import DataError
from bench.metrics.base import Direction
from bench.records import RunRecord
from bench.results import HONEST, PAPER, VOTE, VOTE_REPEATED, MetricResult

NAN = float("nan")


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is absent, None, NaN or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1); NaN std for one value, NaN both for none."""
    if not values:
        return NAN, NAN
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else NAN


def best_seed(pairs: list[tuple[int, float]], direction: Direction) -> tuple[int, float]:
    """The (seed, value) with the best value; the smallest seed on ties (``pairs`` are in seed order)."""
    target = direction.best(value for _, value in pairs)
    return next((seed, value) for seed, value in pairs if value == target)


def metric_result(record: RunRecord, metric: str) -> MetricResult:
    """The record's result called ``metric``; DataError naming the record when it has none."""
    result = record.result(metric)
    if result is None:
        raise DataError(f"record {record.job_id}: suite.report.metrics names {metric!r}, but the record has no "
                        f"such result (it has {', '.join(r.name for r in record.results)})")
    return result


def metric_values(record: RunRecord, metric: str) -> tuple[float, float]:
    """(honest, paper) statistics of ``metric``; DataError when either is absent or not finite."""
    result = metric_result(record, metric)
    values = (result.value(HONEST), result.value(PAPER))
    bad = [role for role, v in zip((HONEST, PAPER), values, strict=True) if v is None or not math.isfinite(v)]
    if bad:
        raise DataError(f"record {record.job_id}: the result {metric!r} lacks a finite {' and '.join(bad)} "
                        "statistic")
    return float(values[0]), float(values[1])


def seed_statistics(records: list[RunRecord], direction: Direction, metric: str) -> dict[str, Any]:
    """paper / honest / best-mean statistics of ``metric`` over the row's seeds (see the module docstring)."""
    values = [metric_values(r, metric) for r in records]
    last = [v[0] for v in values]
    best = [v[1] for v in values]
    paper_seed, paper = best_seed([(r.seed, b) for r, b in zip(records, best, strict=True)], direction)
    honest_mean, honest_std = mean_std(last)
    best_mean, best_std = mean_std(best)
    return {
        "n_seeds": len(records),
        "seeds": json.dumps([r.seed for r in records]),
        "paper": paper,
        "paper_seed": paper_seed,
        "honest_mean": honest_mean,
        "honest_std": honest_std,
        "best_mean": best_mean,
        "best_std": best_std,
        "last_values": json.dumps(last),
        "best_values": json.dumps(best),
    }


def role_values(records: list[RunRecord], metric: str, role: str) -> list[tuple[RunRecord, float]]:
    """(record, value) of the ``role`` statistic of ``metric`` for the seeds that have a finite one."""
    found = [(r, r.result(metric).role(role)) for r in records if r.result(metric) is not None]
    return [(r, s[1].value) for r, s in found if s is not None and finite(s[1].value) is not None]


def vote_statistics(records: list[RunRecord], direction: Direction, metric: str) -> dict[str, Any]:
    """Vote statistics over the seeds that have them; NaN (and vote_n 0) when none do."""
    votes = [(r.seed, v) for r, v in role_values(records, metric, VOTE)]
    mean, std = mean_std([v for _, v in votes])
    stats: dict[str, Any] = {"vote_n": len(votes), "vote_mean": mean, "vote_std": std}
    stats["vote_max"] = best_seed(votes, direction)[1] if votes else NAN
    repeated = [(r.seed, v) for r, v in role_values(records, metric, VOTE_REPEATED)]
    if repeated:
        seed, value = best_seed(repeated, direction)
        winner = next(r for r in records if r.seed == seed)
        repeats = winner.result(metric).role(VOTE_REPEATED)[1].repeats
        stats.update(vote_best_of_r=value, vote_repeats=NAN if repeats is None else float(repeats))
    else:
        stats.update(vote_best_of_r=NAN, vote_repeats=NAN)
    return stats


def group_statistics(records: list[RunRecord]) -> dict[str, float]:
    """The headline's paper, honest mean / std, seed count and vote statistics (finite ones), for MLflow."""
    if not records:
        return {}
    metric = records[0].metric
    direction = records[0].headline.order
    row = {**seed_statistics(records, direction, metric), **vote_statistics(records, direction, metric)}
    keys = ("paper", "honest_mean", "honest_std", "n_seeds", "vote_mean", "vote_std", "vote_best_of_r")
    return {k: float(row[k]) for k in keys if finite(row.get(k)) is not None}

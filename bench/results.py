"""Typed job results: what a protocol hands back, what a RunRecord stores and what every report reads.

A job yields one :class:`MetricResult` per reported metric (the headline first). Each holds named
:class:`Statistic` values, each with the rule it was selected by and its *role*, which is all that reports and
tuning need to know about it:

- ``honest``: chosen without looking at the test split (last epoch, a validation pick, a pure evaluation);
  the leaderboard shows mean ± sample std over seeds.
- ``paper``: the published practice (e.g. max over epochs on the test split, a fixed reference C); the leaderboard
  shows the best over seeds, or the fold mean for few-shot suites.
- ``vote``: a test-time-voting pass on the selected checkpoint (mean ± std and best over seeds).
- ``vote_repeated``: the best of R voting passes (best over seeds; test-set selection).
- ``info``: recorded, not aggregated (the selected epoch, the chosen C, ...).

The statistic *names* (``last``, ``best``, ``vote_best`` ...) are the protocol's own vocabulary; nothing outside a
protocol reads them. Direction, unit and display scale come from the registered metric (:mod:`bench.metrics.base`)
and are copied into the result, so a record describes itself. Per-epoch history is optional: a job that only
evaluates (generation) has none and is a first-class result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.metrics.base import Direction, MetricSpec

HONEST, PAPER, VOTE, VOTE_REPEATED, INFO = "honest", "paper", "vote", "vote_repeated", "info"
ROLES = (HONEST, PAPER, VOTE, VOTE_REPEATED, INFO)


@dataclass
class Statistic:
    """One per-job value of a metric and how it was selected."""

    value: float
    rule: str = ""
    role: str = INFO
    repeats: int | None = None  # how many draws the value was selected over (best of R voting passes: R)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"statistic role {self.role!r} is not one of {', '.join(ROLES)}")
        self.value = float(self.value)


@dataclass
class MetricResult:
    """The statistics of one reported metric of one job.

    name: the column the suite reports (``acc``, ``inst_miou_all``, ``room_miou``); metric: the registered metric
    whose definition it follows (``acc``, ``inst_miou``, ``miou``), which gives direction, unit and scale.
    """

    name: str
    metric: str
    direction: str
    unit: str
    scale: float
    statistics: dict[str, Statistic] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: MetricSpec, statistics: dict[str, Statistic], name: str | None = None) -> MetricResult:
        return cls(name or spec.name, spec.name, str(spec.direction), spec.unit, spec.scale, dict(statistics))

    @property
    def order(self) -> Direction:
        return Direction.parse(self.direction)

    def role(self, role: str) -> tuple[str, Statistic] | None:
        """(name, statistic) of the first statistic with ``role``, or None."""
        return next(((n, s) for n, s in self.statistics.items() if s.role == role), None)

    def value(self, role: str) -> float | None:
        found = self.role(role)
        return None if found is None else found[1].value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricResult:
        stats = {k: Statistic(**v) for k, v in data.get("statistics", {}).items()}
        return cls(data["name"], data["metric"], data["direction"], data.get("unit", ""),
                   float(data.get("scale", 1.0)), stats)


@dataclass
class JobResult:
    """What a protocol hands back for one job; the runner turns it into a RunRecord.

    ``metrics``: headline first. ``epochs``: per-epoch rows (``epoch``, ``train_*``, ``test_*``, ``val_*``), empty
    for evaluation-only jobs. ``extra``: further facts for the record's ``details`` (deviations from the reference,
    the resumed epoch, ...); ``checkpoint_load`` goes to the record's ``pretrain`` section.
    """

    metrics: list[MetricResult]
    epochs: list[dict[str, float]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.metrics:
            raise ValueError("a JobResult needs at least one metric (the headline first)")

    @property
    def headline(self) -> MetricResult:
        return self.metrics[0]


def statistics_line(result: MetricResult) -> str:
    """``last 91.20  best 92.10  vote 91.80`` : the aggregated statistics of one metric, for progress lines."""
    shown = [f"{name} {s.value * result.scale:.2f}" for name, s in result.statistics.items() if s.role != INFO]
    return "  ".join(shown)

"""The metric contract: a streaming value (``update`` / ``compute`` / ``reset``) that knows its direction, its unit
and its display scale, as torchmetrics' metrics know ``higher_is_better``.

Direction (:class:`Direction`): ``max`` (accuracy, mIoU, COV), ``min`` (MMD, Chamfer) or ``target:<t>`` (1-NNA,
best at 50%: the value closest to ``t`` wins). Everything that selects or ranks (the Trainer's checkpoint, the
leaderboard's best seed, the tuning objective) asks the direction; nothing assumes "higher is better".
``unit`` is what ``compute`` returns ("%" for accuracies, stored in percent as the papers print them);
``scale`` multiplies the stored value for display only (MMD-CD is shown x10^3: ``scale = 1e3``).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from bench.errors import ConfigError

if TYPE_CHECKING:  # annotations only: records and the CLI read metric specs without importing torch
    from torch import Tensor


@dataclass(frozen=True)
class Direction:
    """Which value is better: ``max``, ``min`` or ``target`` (closest to :attr:`target`). Written as text
    ``"max"`` / ``"min"`` / ``"target:50"`` in records and configs."""

    kind: str = "max"
    target: float | None = None

    @classmethod
    def parse(cls, text: str | Direction) -> Direction:
        if isinstance(text, Direction):
            return text
        word = str(text).strip()
        if word in ("max", "min"):
            return cls(word)
        if word.startswith("target:"):
            try:
                return cls("target", float(word.split(":", 1)[1]))
            except ValueError:
                pass
        raise ConfigError(f'direction "{text}" is not "max", "min" or "target:<number>" (e.g. target:50).')

    def __str__(self) -> str:
        return self.kind if self.kind != "target" else f"target:{self.target:g}"

    def score(self, value: float) -> float:
        """A number that is larger the better ``value`` is (NaN stays NaN)."""
        if self.kind == "max":
            return value
        if self.kind == "min":
            return -value
        return -abs(value - float(self.target))

    def better(self, value: float, than: float | None) -> bool:
        """Strictly better than ``than`` (None: anything finite is better); NaN is never better."""
        if value is None or math.isnan(value):
            return False
        return than is None or math.isnan(than) or self.score(value) > self.score(than)

    def best(self, values: Iterable[float]) -> float:
        """The best of ``values`` (the first one on ties)."""
        chosen = None
        for value in values:
            if chosen is None or self.better(value, chosen):
                chosen = value
        if chosen is None:
            raise ValueError("best() of no values")
        return chosen

    def describe(self) -> str:
        if self.kind == "target":
            return f"closest to {self.target:g} is best"
        return "higher is better" if self.kind == "max" else "lower is better"

    @property
    def optuna(self) -> str:
        """Optuna's study direction for :meth:`score` values (a target is maximised as minus the distance)."""
        return "minimize" if self.kind == "min" else "maximize"


MAX, MIN = Direction("max"), Direction("min")


@dataclass(frozen=True)
class MetricSpec:
    """What a registered metric declares, copied into every result so records describe themselves."""

    name: str
    direction: Direction
    unit: str
    scale: float = 1.0


class Metric(abc.ABC):
    """Accumulates sufficient statistics with ``update``; ``compute`` gives the value; ``reset`` clears."""

    name: ClassVar[str] = ""
    direction: ClassVar[Direction] = MAX
    unit: ClassVar[str] = ""
    scale: ClassVar[float] = 1.0

    @classmethod
    def spec(cls) -> MetricSpec:
        return MetricSpec(cls.name, cls.direction, cls.unit, cls.scale)

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear the accumulated state."""

    @abc.abstractmethod
    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> float:
        """The value over everything seen since the last reset."""

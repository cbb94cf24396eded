"""The metric contract."""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor


class Metric(abc.ABC):
    """Accumulates sufficient statistics with ``update``; ``compute`` gives the value; ``reset`` clears.

    ``higher_is_better`` tells reports which way is better; ``unit`` is what ``compute`` returns ("%" for
    accuracies, which are stored in percent like the papers print them).
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    unit: ClassVar[str] = ""

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear the accumulated state."""

    @abc.abstractmethod
    def update(self, preds: Tensor, target: Tensor) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> float:
        """The value over everything seen since the last reset."""

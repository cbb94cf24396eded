"""The metric contract."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor


class Metric:
    """Accumulates sufficient statistics with ``update``; ``compute`` gives the value; ``reset`` clears.

    ``higher_is_better`` tells reports which way is better; ``unit`` is what ``compute`` returns ("%" for
    accuracies, which are stored in percent like the papers print them).
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    unit: ClassVar[str] = ""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

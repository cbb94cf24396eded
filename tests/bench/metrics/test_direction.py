"""Metric directions: max, min and target (1-NNA is best at 50%), as every selection reads them."""

from __future__ import annotations

import math

import pytest

from bench.errors import ConfigError
from bench.metrics.base import MAX, MIN, Direction


def test_parse_and_text_round_trip():
    for text in ("max", "min", "target:50"):
        assert str(Direction.parse(text)) == text
    assert Direction.parse("target:0.5").target == 0.5
    for bad in ("up", "target:", "target:fifty"):
        with pytest.raises(ConfigError, match="direction"):
            Direction.parse(bad)


def test_best_and_better_follow_the_direction():
    values = [62.0, 48.0, 55.0, 50.5]
    assert MAX.best(values) == 62.0 and MIN.best(values) == 48.0
    assert Direction.parse("target:50").best(values) == 50.5  # |50.5 - 50| < |48 - 50|
    assert MAX.better(2.0, 1.0) and not MAX.better(1.0, 1.0)  # strictly: ties keep the earlier epoch
    assert MIN.better(1.0, 2.0) and MIN.better(1.0, None) and not MIN.better(float("nan"), 2.0)
    assert MAX.best([3.0, 3.0, 1.0]) == 3.0


def test_descriptions_and_optuna_directions():
    assert (MAX.describe(), MIN.describe()) == ("higher is better", "lower is better")
    assert Direction.parse("target:50").describe() == "closest to 50 is best"
    assert (MAX.optuna, MIN.optuna, Direction.parse("target:50").optuna) == ("maximize", "minimize", "maximize")
    assert Direction.parse("target:50").score(47.0) == -3.0 and math.isnan(MIN.score(float("nan")))

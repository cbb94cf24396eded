"""How the display modules (:mod:`reports.tables`, :mod:`reports.latex`, :mod:`reports.baseline`) read one cell of
the long leaderboard table: a blank (None, or NaN as pandas and the CSV give it), a flag, the display scale."""

from __future__ import annotations

import math
from typing import Any


def missing(value: Any) -> bool:
    """None or NaN: a statistic the row does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def flagged(value: Any) -> bool:
    """True for a set, true flag (bool or numpy bool); False for False, None and NaN."""
    return not missing(value) and bool(value)


def display_scale(row: Any) -> float:
    """The factor a row's values are shown at (the metric's ``scale``: MMD-CD x10^3); 1 when the row has none."""
    scale = row.get("scale", 1.0)
    return 1.0 if missing(scale) else float(scale)

"""What pre-training bought: each pre-trained row's honest gap to the row trained from random initialisation.

The baseline of a table cell is the row of the same table (suite, data kind, profile), recipe, variant and metric
whose records all trained from random initialisation (the long table's ``random_init``: every record's
``pretrain.source`` is ``none``; read from the records, never from a method name). With exactly one such row the
cell of every other row gets a line ``vs Scratch +8.33 (better, beyond the seeds' std)``:

- the gap is ``honest_mean`` (row) − ``honest_mean`` (baseline), in the metric's display scale; the honest
  statistic, not the paper one, since a max over epochs and seeds rewards the noisier row;
- ``better`` / ``worse`` follows the metric's direction (:class:`bench.metrics.base.Direction`);
- ``beyond the seeds' std`` when the gap exceeds the larger of the two rows' sample std over seeds, else ``within
  the seeds' std`` (the test of issue 16: a gain smaller than the seed lottery is not shown as one); with one seed
  there is no std and the line says so.

Two or more random-init rows for one cell (two scratch configs) make the baseline ambiguous: no line is drawn, and
the table's note says why.
"""

from __future__ import annotations

import pandas as pd

from bench.metrics.base import Direction
from reports.names import display_name
from reports.values import display_scale, flagged, missing

CellKey = tuple[str, str, str]  # recipe, variant, metric


def _cell_key(row: pd.Series) -> CellKey:
    return str(row["recipe"]), str(row["variant"]), str(row["metric"])


def _is_random_init(row: pd.Series) -> bool:
    return flagged(row.get("random_init", False))


def baselines(rows: pd.DataFrame) -> tuple[dict[CellKey, pd.Series], list[str]]:
    """The baseline row of each (recipe, variant, metric) of one table, and notes on cells left without one."""
    found: dict[CellKey, list[pd.Series]] = {}
    for _, row in rows.iterrows():
        if _is_random_init(row):
            found.setdefault(_cell_key(row), []).append(row)
    chosen = {key: group[0] for key, group in found.items() if len(group) == 1}
    ambiguous = sorted({" / ".join(key[1:]) for key, group in found.items() if len(group) > 1})
    notes = []
    if ambiguous:
        notes.append(f"No 'vs' line in {', '.join(ambiguous)}: more than one row there trained from random "
                     "initialisation, so which one is the baseline is not clear.")
    return chosen, notes


def _scaled(row: pd.Series, column: str) -> float:
    return float(row[column]) * display_scale(row)


def gain_line(row: pd.Series, base: pd.Series | None) -> str | None:
    """The ``vs <baseline>`` line of one cell (module docstring); None for the baseline itself or without one."""
    if base is None or _is_random_init(row) or missing(row["honest_mean"]) or missing(base["honest_mean"]):
        return None
    gap = _scaled(row, "honest_mean") - _scaled(base, "honest_mean")
    direction = Direction.parse(str(row.get("direction", "max")))
    if gap == 0:
        verdict = "equal"
    else:
        better = direction.better(float(row["honest_mean"]), float(base["honest_mean"]))
        verdict = "better" if better else "worse"
    stds = [_scaled(r, "honest_std") for r in (row, base) if not missing(r["honest_std"])]
    if len(stds) < 2:
        spread = "one seed: no std to compare with"
    else:
        spread = "beyond the seeds' std" if abs(gap) > max(stds) else "within the seeds' std"
    return f"vs {display_name(str(base['method']))} {gap:+.2f} ({verdict}, {spread})"


def gain_note(rows: pd.DataFrame, bases: dict[CellKey, pd.Series]) -> list[str]:
    """The table note defining the ``vs`` lines, when at least one cell of ``rows`` has one (``bases``: from
    :func:`baselines`)."""
    drawn = any(not _is_random_init(row) and _cell_key(row) in bases for _, row in rows.iterrows())
    if not drawn:
        return []
    return ["vs = what pre-training bought: the row's honest mean − the honest mean of the row trained from random "
            "initialisation (same recipe and variant); 'beyond the seeds' std' when the gap exceeds the larger of "
            "the two rows' std over seeds, else 'within' (a gain the seed lottery could give)."]

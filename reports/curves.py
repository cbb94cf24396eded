"""The learning-curves figure of a leaderboard table, and the caption that says what it shows.

Per variant one panel (each with its own y label), per method one colour (the table's, :func:`reports.plots.
method_colors`; legend labels are display names, :mod:`reports.names`): the test metric of each seed thin
(``test_<metric>`` of the records' ``epochs`` rows), the mean over seeds thick, and the mean over seeds of the
training metric (``train_<metric>``, measured in train mode) dashed where the records have it. For accuracy-like
metrics (``acc``, ``macc``) with a known class count (``suite.num_classes`` of the resolved config), chance
(100 / K %) is a dotted line.

The caption explains two effects that make early epochs look broken (bench/profiles/demo.yaml): the warm-up's first
epoch runs at ``trainer.warmup_lr_init`` (1e-6), which the records' per-epoch ``lr`` shows; and the test metric is
measured in eval mode, where BatchNorm uses running statistics (initialised at mean 0 / variance 1, momentum 0.1 per
step) that lag the features when an epoch has few optimizer steps, so it can stay at chance while the training
metric climbs. Each sentence is added only when the records show it (an epoch-0 lr under 1% of the largest;
a seed's test metric within :data:`NEAR_CHANCE` points of chance after its second epoch).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import matplotlib

from bench.records import RunRecord
from reports.layout import metric_label
from reports.names import display_name
from reports.plots import COLORS, RC, figure, method_colors, to_svg
from reports.tables import Table

CHANCE_METRICS = ("acc", "macc")  # metrics whose chance level is 100 / number of classes
NEAR_CHANCE = 2.0  # points: a test metric this close to chance after epoch 1 has not started to learn
Curve = tuple[list[float], list[float]]


@dataclass(frozen=True)
class CurvesFigure:
    """The figure's inline SVG and the caption sentences that depend on the records."""

    svg: str
    caption: str


def _series(record: RunRecord, split: str) -> Curve | None:
    key = f"{split}_{record.metric}"
    points = [(float(r["epoch"]), float(r[key])) for r in record.epochs if key in r and "epoch" in r]
    return ([p[0] for p in points], [p[1] for p in points]) if points else None


def chance_level(records: list[RunRecord]) -> float | None:
    """100 / K for an accuracy-like headline with ``suite.num_classes`` = K in every record's config; else None."""
    counts = set()
    for record in records:
        suite = record.config.get("suite") if isinstance(record.config, dict) else None
        counts.add(suite.get("num_classes") if isinstance(suite, dict) else None)
    if len(counts) != 1 or not records or records[0].metric not in CHANCE_METRICS:
        return None
    (count,) = counts
    return 100.0 / count if isinstance(count, int) and count > 1 else None


def _mean(curves: list[Curve]) -> Curve:
    n = min(len(xs) for xs, _ in curves)
    return curves[0][0][:n], [sum(ys[i] for _, ys in curves) / len(curves) for i in range(n)]


def _panel(ax, runs: dict[str, list[RunRecord]], colors: dict[str, str], chance: float | None) -> None:
    """One variant: per method, thin test curves per seed, the thick test mean and the dashed train mean."""
    for method, records in runs.items():
        color = colors[method]
        tests = [c for c in map(lambda r: _series(r, "test"), records) if c is not None]
        for xs, ys in tests:
            ax.plot(xs, ys, color=color, alpha=0.3, linewidth=0.8)
        ax.plot(*_mean(tests), color=color, linewidth=2, label=f"{display_name(method)} (n={len(tests)})")
        trains = [c for c in map(lambda r: _series(r, "train"), records) if c is not None]
        if trains:
            ax.plot(*_mean(trains), color=color, linewidth=1.2, linestyle="--")
    if chance is not None:
        ax.axhline(chance, color="#555555", linestyle=":", linewidth=1.2)


def _by_variant(table: Table, records: list[RunRecord]) -> dict[str, dict[str, list[RunRecord]]]:
    """The table's records with a test curve, by variant (table order) and method."""
    mine = [r for r in records if (r.suite, r.data_kind, r.profile) == (table.suite, table.data_kind, table.profile)]
    found: dict[str, dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in mine:
        if _series(record, "test") is not None:
            found[record.variant][record.method].append(record)
    return {v: found[v] for v in dict.fromkeys(v for v, _ in table.columns) if v in found}


def _colors(table: Table, by_variant: dict[str, dict[str, list[RunRecord]]]) -> dict[str, str]:
    colors = method_colors(table)
    spare = [c for c in COLORS if c not in colors.values()] or list(COLORS)
    for i, method in enumerate(m for runs in by_variant.values() for m in runs if m not in colors):
        colors.setdefault(method, spare[i % len(spare)])
    return colors


def learning_curves(table: Table, records: list[RunRecord]) -> CurvesFigure | None:
    """The figure (see the module docstring) and its caption; None when no record of the table has a test curve."""
    by_variant = _by_variant(table, records)
    if not by_variant:
        return None
    shown = [r for runs in by_variant.values() for recs in runs.values() for r in recs]
    chance = chance_level(shown)
    colors = _colors(table, by_variant)
    label = f"{metric_label(shown[0].metric)} (%)"
    with matplotlib.rc_context(RC):
        fig = figure(min(max(3.6 * len(by_variant), 5.0), 13.5), 3.0)
        axes = fig.subplots(1, len(by_variant), squeeze=False)[0]
        for ax, (variant, runs) in zip(axes, by_variant.items(), strict=True):
            _panel(ax, runs, colors, chance)
            ax.set_title(variant)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
        axes[0].legend(loc="best")
        svg = to_svg(fig, f"learning curves, {table.heading}")
    return CurvesFigure(svg, curves_caption(shown, chance))


def _first_lr(records: list[RunRecord]) -> tuple[float, float] | None:
    """(epoch-0 lr, largest lr) of the first record whose epoch rows carry ``lr``."""
    for record in records:
        lrs = [(float(r["epoch"]), float(r["lr"])) for r in record.epochs if "lr" in r and "epoch" in r]
        if lrs:
            return min(lrs)[1], max(lr for _, lr in lrs)
    return None


def _stuck_at_chance(records: list[RunRecord], chance: float) -> bool:
    """True when some seed's test metric is still within :data:`NEAR_CHANCE` points of chance at epoch 1."""
    for record in records:
        curve = _series(record, "test")
        if curve is not None and any(x == 1.0 and abs(y - chance) <= NEAR_CHANCE for x, y in zip(*curve, strict=True)):
            return True
    return False


def curves_caption(records: list[RunRecord], chance: float | None) -> str:
    """The sentences of the caption that depend on the records (see the module docstring)."""
    parts = []
    if any(_series(r, "train") is not None for r in records):
        parts.append("Dashed: the training metric (train mode, mean over seeds).")
    if chance is not None:
        parts.append(f"Dotted: chance ({chance:.1f} %).")
    lr = _first_lr(records)
    if lr is not None and lr[1] > 0 and lr[0] < 0.01 * lr[1]:
        parts.append(f"Epoch 0 is the warm-up's first epoch, at lr {lr[0]:g} (peak {lr[1]:g}): it barely moves the "
                     "weights.")
    if chance is not None and _stuck_at_chance(records, chance):
        parts.append("A test metric at chance for the first epochs while the training metric climbs is expected, not "
                     "a bug: the test pass runs in eval mode, where BatchNorm uses running statistics (start: mean 0, "
                     "variance 1; momentum 0.1 per step) that lag the features when an epoch has few optimizer steps, "
                     "as on the small stand-in data (bench/profiles/demo.yaml).")
    return " ".join(parts)

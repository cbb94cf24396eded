"""The scaling figure: test loss against trained parameters on log-log axes with the fitted power law (G3PT's
scaling-law claim; wave2.md 2.2 item 7), for tables whose records carry ``details["scaling"]`` (written by the
``scaling`` protocol, :class:`suites.protocols.scaling.ScalingDetails`; no suite name is looked at).

- Points: per method configuration (method, recipe, suite version, config hash) and size (variant), N = the
  record's ``params_trained`` (the mean over seeds; they agree unless the configs differ) and L = the mean over
  seeds of the headline's honest statistic (the test loss after the last epoch); error bar = its sample std
  (ddof=1) when there is more than one seed, none otherwise. Duplicate seeds are dropped as in the leaderboard
  (:func:`reports.leaderboard.row_records`).
- Fit (:func:`fit_power_law`): L = a N^b by least squares on log L = log a + b log N (natural logarithms, numpy
  ``lstsq``) over the per-size points; R^2 = 1 - SS_res / SS_tot of that fit in log space (1 when every log L is
  the same). It needs two distinct N; a method with fewer gets its points and no line.
- Drawn: points with error bars, each labelled with its size, the fitted line over the N range (dashed), one colour
  per method (the table's, :func:`reports.plots.method_colors`), b and R^2 in the legend and in the caption.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import numpy as np

from bench.records import RunRecord
from reports.leaderboard import KEY, row_records
from reports.names import display_name
from reports.plots import COLORS, RC, method_colors, to_svg
from reports.tables import Table

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after selecting the backend)
from matplotlib.ticker import EngFormatter, FuncFormatter  # noqa: E402

DETAILS = "scaling"  # the details entry that marks a scaling record


@dataclass(frozen=True)
class PowerLaw:
    """L = a N^b fitted in log space; ``r2`` is the coefficient of determination of log L."""

    a: float
    b: float
    r2: float
    points: int

    def __call__(self, n: np.ndarray | float) -> np.ndarray | float:
        return self.a * np.power(n, self.b)

    def describe(self) -> str:
        return f"L = {self.a:.3g}·N^{self.b:.3f}, R² = {self.r2:.3f}"


def fit_power_law(params: Sequence[float], losses: Sequence[float]) -> PowerLaw:
    """Least-squares fit of log L = log a + b log N (see the module docstring); ValueError for fewer than two
    distinct N, unequal lengths, or values that are not finite and positive."""
    n, loss = np.asarray(params, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    if n.shape != loss.shape or n.ndim != 1:
        raise ValueError(f"power-law fit: {n.shape} parameter counts but {loss.shape} losses")
    if not (np.isfinite(n).all() and np.isfinite(loss).all() and (n > 0).all() and (loss > 0).all()):
        raise ValueError("power-law fit: parameter counts and losses must be finite and positive")
    if len(np.unique(n)) < 2:
        raise ValueError("power-law fit: needs at least two distinct parameter counts")
    x, y = np.log(n), np.log(loss)
    design = np.stack([np.ones_like(x), x], axis=1)
    (log_a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = float(((y - design @ np.array([log_a, b])) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return PowerLaw(float(math.exp(log_a)), float(b), r2, len(n))


@dataclass(frozen=True)
class ScalingPoint:
    """One size of one method: trained parameters, mean test loss over seeds, its std (None with one seed)."""

    size: str
    params: float
    loss: float
    std: float | None
    seeds: int


@dataclass
class ScalingSeries:
    """One method configuration's points (by parameter count) and its fit (None with fewer than two sizes)."""

    label: str
    color: str
    points: list[ScalingPoint]
    fit: PowerLaw | None


def _point(size: str, records: list[RunRecord]) -> ScalingPoint:
    losses = [r.headline.value("honest") * r.headline.scale for r in records]
    params = statistics.fmean(float(r.details[DETAILS]["params_trained"]) for r in records)
    std = statistics.stdev(losses) if len(losses) > 1 else None
    return ScalingPoint(size, params, statistics.fmean(losses), std, len(losses))


def scaling_series(table: Table, records: list[RunRecord]) -> list[ScalingSeries]:
    """The table's scaling records as one series per method configuration, in table colour order."""
    groups: dict[tuple, dict[str, list[RunRecord]]] = defaultdict(dict)
    where = (table.suite, table.data_kind, table.profile)
    for key, recs in row_records(records).items():
        row = dict(zip(KEY, key, strict=True))
        mine = [r for r in recs if isinstance((r.details or {}).get(DETAILS), dict)]
        if (row["suite"], row["data_kind"], row["profile"]) == where and mine:
            groups[(row["method"], row["recipe"], row["suite_version"], row["config_hash"])][row["variant"]] = mine
    colors = method_colors(table)
    methods = [k[0] for k in groups]
    series = []
    for i, (key, by_size) in enumerate(groups.items()):
        points = sorted((_point(size, recs) for size, recs in by_size.items()), key=lambda p: p.params)
        fit = fit_power_law([p.params for p in points], [p.loss for p in points]) \
            if len({p.params for p in points}) > 1 else None
        label = display_name(str(key[0])) + ("" if methods.count(key[0]) == 1 else f" ({key[1]}, v{key[2]}, {key[3]})")
        series.append(ScalingSeries(label, colors.get(key[0], COLORS[i % len(COLORS)]), points, fit))
    return series


@dataclass(frozen=True)
class ScalingPlot:
    """The figure as inline SVG and a caption line with each fit."""

    svg: str
    caption: str


def _draw(ax, line: ScalingSeries) -> None:
    xs = [p.params for p in line.points]
    ys = [p.loss for p in line.points]
    low = [min(p.std, 0.9 * p.loss) if p.std else 0.0 for p in line.points]  # a log axis has no room below 0
    high = [p.std or 0.0 for p in line.points]
    ax.errorbar(xs, ys, yerr=[low, high] if any(high) else None, fmt="o", color=line.color, capsize=3,
                markersize=5, label=f"{line.label} (test loss per size)")
    for p in line.points:
        ax.annotate(p.size, (p.params, p.loss), textcoords="offset points", xytext=(5, 4), fontsize=7,
                    color=line.color)
    if line.fit is not None:
        grid = np.geomspace(min(xs), max(xs), 50)
        ax.plot(grid, line.fit(grid), linestyle="--", color=line.color, linewidth=1.2,
                label=f"{line.label} fit: {line.fit.describe()}")


def _minor_labels(axis, values: list[float], label) -> None:
    """Label the minor ticks of a log axis when the data span less than a decade (else a loss axis shows no label at
    all): every one under a factor 3, else only those at 2, 3 and 5 x 10^k (so wider spans do not crowd)."""
    low, high = min(values), max(values)
    if high >= 10 * low:
        return

    def minor(value: float, position) -> str:
        mantissa = value / 10 ** math.floor(math.log10(value))
        keep = high < 3 * low or any(abs(mantissa - m) < 1e-6 for m in (2, 3, 5))
        return label(value, position) if keep else ""

    axis.set_minor_formatter(FuncFormatter(minor))


def _readable_ticks(ax, params: list[float], losses: list[float]) -> None:
    """Plain tick labels (``5.6``, ``40k``) instead of powers of ten, minor ticks included (:func:`_minor_labels`)."""
    plain = FuncFormatter(lambda value, _: f"{value:.3g}")
    engineering = EngFormatter(sep="")
    ax.yaxis.set_major_formatter(plain)
    ax.xaxis.set_major_formatter(engineering)
    _minor_labels(ax.yaxis, losses, plain)
    _minor_labels(ax.xaxis, params, engineering)


def scaling_figure(series: list[ScalingSeries], title: str, unit: str) -> Figure:
    """The log-log axes of every series (points, size labels, fitted lines), axis labels and legend."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.4, 3.8))
        fig.subplots_adjust(left=0.14, right=0.97, bottom=0.14, top=0.92)
        ax = fig.subplots()
        for line in series:
            _draw(ax, line)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _readable_ticks(ax, [p.params for line in series for p in line.points],
                        [p.loss for line in series for p in line.points])
        ax.set_xlabel("trained parameters N (log scale)")
        ax.set_ylabel(f"test loss L ({unit}, log scale)")
        ax.set_title(title, fontsize=9)
        ax.legend(loc="best")
    return fig


def scaling_plot(table: Table, records: list[RunRecord] | None) -> ScalingPlot | None:
    """The log-log scaling figure of ``table`` (see the module docstring); None without scaling records."""
    series = scaling_series(table, records or [])
    if not series:
        return None
    units = {r.headline.unit for r in records if isinstance((r.details or {}).get(DETAILS), dict)}
    unit = ", ".join(sorted(u for u in units if u)) or "as the loss key returns it"
    fig = scaling_figure(series, f"{table.suite}: test loss against model size", unit)
    fits = [f"{s.label}: b = {s.fit.b:.3f}, R² = {s.fit.r2:.3f} over {s.fit.points} sizes" if s.fit else
            f"{s.label}: one size, no fit" for s in series]
    return ScalingPlot(to_svg(fig, f"scaling law, {table.heading}"), "Fits: " + "; ".join(fits) + ".")

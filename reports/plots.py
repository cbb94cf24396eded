"""The report's figures as inline SVG text (matplotlib, Agg, no pyplot state), so the HTML page works offline.

Text stays text (``svg.fonttype = none``) and ids are derived from a fixed salt, so the same input gives the same
SVG. Every function returns None when it has nothing to draw. Values are in percent, as in the records.

- :func:`seed_distribution`: per column of a leaderboard table and per method, a box of the last-epoch values over
  seeds (the honest statistic) with each seed as a filled dot, each seed's best epoch as a hollow dot, and the
  published number (real data only) as a black diamond;
- learning curves: :mod:`reports.curves`;
- :func:`fold_bars`: for fold-mean (few-shot) tables, bars of the mean over folds of each fold's best epoch with
  ± sample-std error bars, published mean ± std beside them (real data only);
- :func:`tuning_history`: a tuning study's trial values by trial number, the best so far, and the default's value;
- :func:`param_importance`: a tuning study's parameter importances (``summary.json`` ``importance``) as bars;
- :func:`generated_samples`: for generation tables, a grid of generated clouds (one row per variant and method) beside
  reference clouds of the variant, read from the records' ``samples_file`` (records whose file is gone are skipped),
  in a fixed oblique view (azimuth 30°, elevation 20°, Y up), at most :data:`CLOUD_POINTS` points per cloud.

The seed distribution shows each metric at its display scale (MMD-CD x10^3), as the table does. Legends name
methods by display name (:mod:`reports.names`) and use the body font size (:data:`LEGEND_FONT_SIZE` points, as the
axis labels), so they stay readable where the page scales a wide figure down.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after selecting the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bench.records import RunRecord  # noqa: E402
from reports.names import display_name  # noqa: E402
from reports.tables import Table, fold_mean  # noqa: E402

LEGEND_FONT_SIZE = 9.0  # points, the same as the axis labels
#: every size the figures use, pinned (a library that calls plt.style.use elsewhere in the process cannot move them)
RC = {"svg.fonttype": "none", "svg.hashsalt": "pointbench", "font.size": 9, "legend.fontsize": LEGEND_FONT_SIZE,
      "axes.labelsize": "medium", "axes.titlesize": "large", "xtick.labelsize": "medium", "ytick.labelsize": "medium",
      "axes.spines.top": False, "axes.spines.right": False}
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
_STRIP = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<metadata>.*?</metadata>", re.S)


def to_svg(fig: Figure, label: str) -> str:
    """The figure as an ``<svg>`` element for inline use: no XML prolog, no metadata, ``role="img"`` + label."""
    buffer = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = _STRIP.sub("", buffer.getvalue()).strip()
    safe = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return text.replace("<svg ", f'<svg role="img" aria-label="{safe}" ', 1)


def figure(width: float, height: float) -> Figure:
    """A figure with fixed margins in inches (a layout engine would cost a second draw per figure)."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.6 / height, top=1 - 0.35 / height,
                        wspace=0.25)
    return fig


def _method_groups(frame: Any) -> list[tuple[str, str, Any]]:
    """(legend label, colour, rows) per method/recipe/version/config of a table's long rows, in table order.

    Colours follow the table's method order, so one method has one colour in every figure of its table."""
    keys = ["method", "recipe", "suite_version", "config_hash"]
    groups = list(frame.groupby(keys, sort=False))
    methods = [k[0] for k, _ in groups]
    labels = [display_name(str(k[0])) + ("" if methods.count(k[0]) == 1 else f" ({k[1]}, v{k[2]}, {k[3]})")
              for k, _ in groups]
    return [(label, COLORS[i % len(COLORS)], g) for i, (label, (_, g)) in enumerate(zip(labels, groups, strict=True))]


def method_colors(table: Table) -> dict[str, str]:
    """Method name -> colour, by the table's row order (the first configuration of a method wins)."""
    colors: dict[str, str] = {}
    if table.frame is not None:
        for _, color, rows in _method_groups(table.frame):
            colors.setdefault(str(rows["method"].iloc[0]), color)
    return colors


def _published(row: Any) -> float | None:
    value = row.get("published")
    ok = row.get("data_kind") == "real" and isinstance(value, float) and not math.isnan(value)
    return value if ok else None


def _cells(table: Table, rows: Any, group: int, width: float) -> Iterator[tuple[int, float, Any]]:
    """(column index, x position, row) of one method group's rows, per table column it has: column c spans
    [c - 0.4, c + 0.4], group g takes the g-th slot of ``width`` in it."""
    for c, (variant, metric) in enumerate(table.columns):
        match = rows[(rows["variant"] == variant) & (rows["metric"] == metric)]
        if not match.empty:
            yield c, c - 0.4 + width * (group + 0.5), match.iloc[0]


def seed_distribution(table: Table) -> str | None:
    """Per-seed values of every (variant, metric) column and method: box + dots (see the module docstring)."""
    if table.frame is None or table.frame.empty:
        return None
    groups = _method_groups(table.frame)
    width = 0.8 / len(groups)
    with matplotlib.rc_context(RC):
        fig = figure(max(4.5, 1.1 * len(table.columns) * max(1, len(groups) / 2) + 1.5), 3.2)
        ax = fig.subplots()
        for g, (label, color, rows) in enumerate(groups):
            for c, x, row in _cells(table, rows, g, width):
                k = _scale(row)
                last = [k * v for v in json.loads(row["last_values"])]
                best = [k * v for v in json.loads(row["best_values"])]
                ax.boxplot([last], positions=[x], widths=min(width * 0.7, 0.3), showfliers=False, manage_ticks=False,
                           boxprops={"color": color}, medianprops={"color": color}, whiskerprops={"color": color},
                           capprops={"color": color})
                spread = min(width * 0.5, 0.3) / max(len(last) - 1, 1)  # seeds side by side, centred on the box
                jitter = [x + spread * (i - (len(last) - 1) / 2) for i in range(len(last))]
                ax.scatter(jitter, last, s=14, color=color, zorder=3, label=label if c == 0 else None)
                ax.scatter(jitter, best, s=14, facecolors="none", edgecolors=color, zorder=3)
                if (pub := _published(row)) is not None:
                    ax.scatter([x], [k * pub], marker="D", s=22, color="black", zorder=4)
        ax.set_xticks(range(len(table.columns)), table.header[len(table.header) - len(table.columns):])
        ax.set_xlim(-0.5, len(table.columns) - 0.5)
        units = set(table.frame["unit"].fillna("")) if "unit" in table.frame else {"%"}
        ax.set_ylabel("percent" if units <= {"%"} else "as shown in the table")
        ax.legend(loc="best")
        return to_svg(fig, f"per-seed distribution, {table.heading}")


def _scale(row: Any) -> float:
    scale = row.get("scale", 1.0)
    return 1.0 if not isinstance(scale, (int, float)) or math.isnan(scale) else float(scale)


def fold_bars(table: Table) -> str | None:
    """Bars of the fold mean of best epochs ± std per variant and method; None unless the table is fold-mean."""
    frame = table.frame
    if frame is None or frame.empty or not any(fold_mean(row) for _, row in frame.iterrows()):
        return None
    groups = _method_groups(frame)
    width = 0.8 / len(groups)
    with matplotlib.rc_context(RC):
        fig = figure(max(4.5, 1.4 * len(table.columns) + 1.5), 3.0)
        ax = fig.subplots()
        for g, (label, color, rows) in enumerate(groups):
            xs, means, stds = [], [], []
            for _, x, row in _cells(table, rows, g, width):
                std = row["best_std"]
                xs.append(x)
                means.append(row["best_mean"])
                stds.append(0.0 if math.isnan(std) else std)
                if (pub := _published(row)) is not None:
                    pub_std = row["published_std"]
                    ax.errorbar([x + width * 0.47], [pub], yerr=[0.0 if math.isnan(pub_std) else pub_std],
                                fmt="D", color="black", markersize=3, capsize=2)
            ax.bar(xs, means, width * 0.9, yerr=stds, capsize=3, color=color, alpha=0.8, label=label)
        spread = float(frame["best_std"].fillna(0).max())
        tops = [frame["best_mean"] + frame["best_std"].fillna(0), frame["published"] + frame["published_std"].fillna(0)]
        high = max(float(top.max()) for top in tops if top.notna().any())
        ax.set_ylim(max(0.0, float(frame["best_mean"].min()) - 2 * spread - 5), high + 4)  # room for the legend
        ax.set_xticks(range(len(table.columns)), table.header[len(table.header) - len(table.columns):])
        ax.set_xlim(-0.5, len(table.columns) - 0.5)
        ax.set_ylabel("mean ± std over folds (%)")
        ax.legend(loc="upper left", ncols=len(groups), frameon=False)
        return to_svg(fig, f"few-shot fold means, {table.heading}")


Points = list[tuple[int, float]]


def history_series(trials: list[dict[str, Any]], direction: str) -> tuple[Points, Points, list[float]]:
    """(completed (number, value), pruned (number, last reported value), best so far at each completed trial).
    The best runs over completed trials only, as Optuna's ``best_trial``: a pruned value is a partial curve."""
    points = sorted((int(t["number"]), float(t["value"]), t.get("state") == "PRUNED") for t in trials
                    if t.get("value") is not None)
    done = [(n, v) for n, v, pruned in points if not pruned]
    pick = max if direction == "maximize" else min
    best: list[float] = []
    for _, value in done:
        best.append(value if not best else pick(best[-1], value))
    return done, [(n, v) for n, v, pruned in points if pruned], best


def tuning_history(trials: list[dict[str, Any]], direction: str, default: float | None, title: str) -> str | None:
    """Completed trials' values by trial number (filled), pruned trials' last reported value (hollow), the best so
    far (:func:`history_series`) and the default config's value (dashed)."""
    done, cut, best = history_series(trials, direction)
    if not done and not cut:
        return None
    with matplotlib.rc_context(RC):
        fig = figure(5.5, 2.8)
        ax = fig.subplots()
        ax.scatter([n for n, _ in done], [v for _, v in done], s=14, color=COLORS[0], label="completed trial")
        if cut:
            ax.scatter([n for n, _ in cut], [v for _, v in cut], s=14, facecolors="none", edgecolors=COLORS[0],
                       label="pruned (last reported epoch)")
        if done:
            ax.step([n for n, _ in done], best, where="post", color=COLORS[1], label="best so far")
        if default is not None:
            ax.axhline(default, color="black", linestyle="--", linewidth=1, label=f"default {default:.2f}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel("validation score")
        ax.legend(loc="best")
        return to_svg(fig, f"tuning history, {title}")


def param_importance(importance: dict[str, float], title: str) -> str | None:
    """Horizontal bars of a tuning study's parameter importances (Optuna's, summing to 1), largest on top."""
    if not importance:
        return None
    names = list(importance)[::-1]
    with matplotlib.rc_context(RC):
        fig = figure(5.5, 0.9 + 0.32 * len(names))
        fig.subplots_adjust(left=min(0.6, (0.6 + 0.075 * max(len(n) for n in names)) / 5.5))
        ax = fig.subplots()
        ax.barh(range(len(names)), [importance[n] for n in names], color=COLORS[0])
        ax.set_yticks(range(len(names)), names)
        ax.set_xlim(0, max(1.0, max(importance.values())) * 1.05)
        ax.set_xlabel("importance (Optuna, sums to 1)")
        return to_svg(fig, f"parameter importance, {title}")


CLOUD_POINTS = 256  # points drawn per cloud in the samples figure (an evenly spaced subset)
VIEW = (math.radians(30.0), math.radians(20.0))  # azimuth about Y (up), elevation


def project(cloud: np.ndarray) -> np.ndarray:
    """(P, 2) screen coordinates of a (P, 3) Y-up cloud in the fixed oblique :data:`VIEW`."""
    az, el = VIEW
    x, y, z = cloud[:, 0], cloud[:, 1], cloud[:, 2]
    u = x * math.cos(az) - z * math.sin(az)
    depth = x * math.sin(az) + z * math.cos(az)
    return np.stack([u, y * math.cos(el) - depth * math.sin(el)], axis=1)


def _load_clouds(path: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(samples, refs) of a record's ``samples_file``; None when it is gone or unreadable."""
    try:
        with np.load(Path(str(path)), allow_pickle=False) as data:
            return np.asarray(data["samples"]), np.asarray(data["refs"])
    except (OSError, KeyError, ValueError, TypeError):
        return None


def _sample_rows(table: Table, records: list[RunRecord]) -> list[tuple[str, str, np.ndarray]]:
    """(label, colour, clouds) per figure row: per variant, its references, then each method's first-seed samples."""
    mine = sorted((r for r in records if (r.suite, r.data_kind, r.profile) == (table.suite, table.data_kind,
                   table.profile) and (r.details or {}).get("samples_file")), key=lambda r: r.seed)  # fmt: skip
    colors = method_colors(table)
    rows: list[tuple[str, str, np.ndarray]] = []
    for variant in dict.fromkeys(v for v, _ in table.columns):
        seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for record in (r for r in mine if r.variant == variant and r.method not in seen):
            if (loaded := _load_clouds(record.details["samples_file"])) is not None:
                seen[record.method] = loaded
        if seen:
            rows.append((f"{variant}: reference", "#7f7f7f", next(iter(seen.values()))[1]))
            rows += [(f"{variant}: {display_name(m)}", colors.get(m, COLORS[0]), clouds)
                     for m, (clouds, _) in seen.items()]
    return [row for row in rows if len(row[2])]


def generated_samples(table: Table, records: list[RunRecord]) -> str | None:
    """A grid of generated and reference clouds (see the module docstring); None without any samples file."""
    rows = _sample_rows(table, records)
    if not rows:
        return None
    columns = max(len(clouds) for _, _, clouds in rows)
    with matplotlib.rc_context(RC):
        width, height = 2.1 + 1.3 * columns, 0.3 + 1.3 * len(rows)
        fig = Figure(figsize=(width, height))
        fig.subplots_adjust(left=2.0 / width, right=1 - 0.05 / width, bottom=0.05 / height, top=1 - 0.25 / height,
                            wspace=0.05, hspace=0.05)
        axes = fig.subplots(len(rows), columns, squeeze=False)
        for (label, color, clouds), line in zip(rows, axes, strict=True):
            line[0].text(-0.08, 0.5, label, transform=line[0].transAxes, ha="right", va="center", fontsize=8)
            for i, ax in enumerate(line):
                ax.set_axis_off()
                if i < len(clouds):
                    cloud = clouds[i][np.linspace(0, len(clouds[i]) - 1, min(CLOUD_POINTS, len(clouds[i]))).astype(int)]
                    xy = project(np.asarray(cloud, dtype=np.float64))
                    ax.scatter(xy[:, 0], xy[:, 1], s=1.6, color=color, linewidths=0)
                    ax.set_aspect("equal", adjustable="datalim")
        return to_svg(fig, f"generated samples, {table.heading}")

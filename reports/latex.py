"""The leaderboard tables as a LaTeX document (booktabs), and each table as a ``tabular`` fragment to ``\\input``.

:func:`render_latex`: a whole document (leaderboard.tex, compiles as it is). :func:`latex_fragments`: per table one
file ``<suite>-<data kind>-<profile>.tex`` holding only the ``tabular`` (after ``%`` comment lines with the heading
and the caption), to ``\\input`` inside a paper's own ``table`` environment; it needs ``booktabs`` only.
One ``table`` per leaderboard table (:mod:`reports.tables`: suite x data kind x profile), the same columns as the
HTML / Markdown tables (variants, or variant x metric). Per method, one line per statistic:

- ``paper``: max over seeds of each seed's best epoch, or for fold-mean suites mean ± sample std over folds of each
  fold's best epoch;
- ``honest``: mean ± sample std (ddof=1) over seeds of the last epoch (no std with one seed);
- ``vote`` (when any cell has one): mean over seeds of one vote pass; ``vote (ours)`` where the authors' code does
  not vote on the suite (ScanObjectNN: ``reports/published.yaml`` ``suites.<suite>.vote``);
- ``published`` (real data only): reports/published.yaml, ``$^{\\ast}$`` = unverified.

Every text goes through :func:`latex_escape`. Needs only ``booktabs`` (and ``geometry`` for the page).
"""

from __future__ import annotations

import re

import pandas as pd

from reports.marks import mark_notes, method_marks
from reports.names import display_name
from reports.tables import Table, build_tables, fold_mean, metric_words, selection_rules, vote_label
from reports.values import display_scale, flagged, missing

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "±": r"$\pm$", "Δ": r"$\Delta$", "—": "---", "–": "--", "−": "$-$", "✱": r"$^{\ast}$", "|": r"\textbar{}",
    "†": r"$^{\dagger}$", "‡": r"$^{\ddagger}$",
}
PREAMBLE = r"""% pointbench leaderboard: generated from run records, do not edit by hand.
\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{booktabs}
\usepackage[margin=1.5cm,landscape]{geometry}
\begin{document}
"""


def latex_escape(text: object) -> str:
    """``text`` with every LaTeX special character (and ± Δ — ✱ −) replaced by its LaTeX spelling."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.2f}" if missing(std) else f"{mean:.2f} $\\pm$ {std:.2f}"


def _statistic(row: pd.Series, name: str) -> str:
    """One cell of statistic ``name`` (paper / honest / vote / published) for one long-table row."""
    k = display_scale(row)
    if name == "paper":
        return _mean_std(k * row["best_mean"], k * row["best_std"]) if fold_mean(row) else f"{k * row['paper']:.2f}"
    if name == "honest":
        return _mean_std(k * row["honest_mean"], k * row["honest_std"])
    if name == "vote":
        return "--" if row["vote_n"] == 0 else _mean_std(k * row["vote_mean"], k * row["vote_std"])
    column = "published_vote" if name == "published vote" else "published"
    if missing(row[column]) or row["data_kind"] != "real":
        return "--"
    unverified = row[f"{column}_unverified"]
    flag = r"$^{\ast}$" if flagged(unverified) else ""
    value = f"{row[column]:g}{flag}"  # as published, no added digits
    std = row["published_std"] if column == "published" else None
    return value if missing(std) else f"{value} $\\pm$ {std:g}"


def _statistics(table: Table) -> list[str]:
    frame = table.frame
    names = ["paper", "honest"]
    if (frame["vote_n"] > 0).any():
        names.append("vote")
    if table.data_kind == "real":
        names += [name for name, column in (("published", "published"), ("published vote", "published_vote"))
                  if frame[column].notna().any()]
    return names


def _vote_name(table: Table) -> str:
    """``vote (ours)`` when a row of the table votes where the authors' code does not (:func:`vote_label`)."""
    labels = {vote_label(row) for _, row in table.frame.iterrows()}
    return "vote (ours)" if "vote (ours)" in labels else "vote"


def _caption(table: Table, names: list[str]) -> str:
    """Heading, metric and the definition of each statistic the table shows (``names``, :func:`_statistics`): vote
    and published only where the table has them."""
    fold = any(fold_mean(row) for _, row in table.frame.iterrows())
    rules = {key: latex_escape(rule) for key, rule in selection_rules(table.frame).items()}
    paper = (f"paper = mean $\\pm$ std over folds of each fold's best ({rules['paper']})" if fold else
             f"paper = max over seeds of each seed's best ({rules['paper']})")
    seeds = sorted({int(n) for n in table.frame["n_seeds"]})
    unit = "folds" if fold else "seeds"
    parts = [f"{latex_escape(table.heading)}. {latex_escape(metric_words(table.frame))}", paper,
             f"honest = mean $\\pm$ sample std over {unit} (n = {'/'.join(map(str, seeds))}) of each one's last "
             f"({rules['honest']})"]
    if "vote" in names:
        vote = _vote_name(table)
        ours = "" if vote == "vote" else " (ours: the authors' code does not vote on this suite)"
        parts.append(f"{latex_escape(vote)} = one vote pass, mean over seeds{latex_escape(ours)}")
    if "published" in names or "published vote" in names:
        parts.append("published: $^{\\ast}$ = not checked against a primary source")
    return "; ".join(parts) + "." + "".join(f" {latex_escape(note)}" for note in mark_notes(table.frame))


def _method_rows(table: Table, names: list[str]) -> list[str]:
    frame = table.frame
    lines = []
    groups = list(frame.groupby(["method", "recipe", "suite_version", "config_hash"], sort=False))
    methods = [key[0] for key, _ in groups]
    for i, ((method, recipe, version, chash), group) in enumerate(groups):
        label = display_name(str(method))
        if methods.count(method) > 1:
            label += f" ({recipe}, v{version}, {chash})"
        label += method_marks(group)
        by_column = {(r["variant"], r["metric"]): r for _, r in group.iterrows()}
        lead = latex_escape(label)
        for name in names:
            cells = [_statistic(by_column[c], name) if c in by_column else "--" for c in table.columns]
            if name not in ("paper", "honest") and all(cell == "--" for cell in cells):
                continue  # no vote / published number for this method
            shown = _vote_name(table) if name == "vote" else name
            lines.append(" & ".join([lead, latex_escape(shown), *cells]) + r" \\")
            lead = ""
        if i < len(groups) - 1:
            lines.append(r"\midrule")
    return lines


def _tabular(table: Table, names: list[str]) -> list[str]:
    """The booktabs ``tabular`` of ``table``: Method, Statistic, then one column per data column."""
    header = ["Method", "Statistic", *table.header[len(table.header) - len(table.columns):]]
    return [f"\\begin{{tabular}}{{ll{'r' * len(table.columns)}}}", r"\toprule",
            " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule",
            *_method_rows(table, names), r"\bottomrule", r"\end{tabular}"]


def latex_table(table: Table, index: int) -> str:
    """One booktabs ``table`` environment for ``table``."""
    names = _statistics(table)
    label = f"tab:{table.suite}-{table.data_kind}-{table.profile}-{index}".replace("_", "-")
    return "\n".join([
        r"\begin{table}[ht]", r"\centering", r"\small",
        f"\\caption{{{_caption(table, names)}}}", f"\\label{{{latex_escape(label)}}}",
        *_tabular(table, names), r"\end{table}", "",
    ])


def fragment_name(table: Table) -> str:
    """``<suite>-<data kind>-<profile>``, with any character other than letters, digits, ``-`` and ``_`` as ``_``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{table.suite}-{table.data_kind}-{table.profile}")


def latex_fragment(table: Table) -> str:
    """The table's ``tabular`` alone, for ``\\input`` into a paper's ``table`` environment, after comment lines that
    say what it is and give the caption to paste."""
    names = _statistics(table)
    return "\n".join([
        f"% pointbench: {table.heading}. Generated from run records, do not edit by hand.",
        "% \\input this inside a table environment; needs \\usepackage{booktabs}. Caption:",
        f"% {_caption(table, names)}", *_tabular(table, names), "",
    ])


def latex_fragments(df: pd.DataFrame) -> dict[str, str]:
    """:func:`fragment_name` -> :func:`latex_fragment` for every leaderboard table of ``df`` (a repeated name gets
    ``-2``, ``-3``, ...)."""
    fragments: dict[str, str] = {}
    for table in build_tables(df):
        name, n = fragment_name(table), 1
        while name in fragments:
            n += 1
            name = f"{fragment_name(table)}-{n}"
        fragments[name] = latex_fragment(table)
    return fragments


def render_latex(df: pd.DataFrame) -> str:
    """A complete LaTeX document with one booktabs table per leaderboard table (a note when there is none)."""
    tables = build_tables(df)
    body = [latex_table(t, i) for i, t in enumerate(tables)] or ["No run records: nothing to report.\n"]
    return PREAMBLE + "\n".join(body) + "\\end{document}\n"

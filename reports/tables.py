"""Lay the long leaderboard table out as display tables, independent of the output format.

One :class:`Table` per (suite, data_kind, profile): methods (by display name, :mod:`reports.names`; with recipe,
suite version, config hash and git commit, which never merge) as rows, where a label column that holds one value in
every row moves to the notes ('Every row: recipe method; suite version v1.'); the columns follow the suite's
``report.columns`` (:mod:`reports.layout`): one per variant (headline metric), or one per variant and metric (Cls. /
Inst. mIoU, mIoU / mAcc / OA). Each cell is a list of short text lines; :mod:`reports.render` joins them for
Markdown (one line) or HTML (line breaks). Synthetic and real rows never share
a table, since data_kind is part of the key. With ``paper_statistic: fold_mean`` (few-shot) the paper line is the
mean ± std over folds of each fold's best epoch instead of the max. Metrics of one table may differ in unit, display
scale and direction (generation: 1-NNA best at 50, COV max, MMD min x10^3); the notes describe each, and add the
records' own ``table_notes`` (the 1-NNA noise floor). A method whose records' pre-training side data carries a
provenance flag (the long table's ``pretrain_flags``) gets the flag's mark after its name (``MMPD †``) and the
mark's note under the table (:mod:`reports.marks`). Real-data tables of suites with published ``reference_rows``
also list the published numbers of methods we have no records of (LION, PVD, PointFlow) as rows of their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.metrics.base import Direction
from reports.baseline import baselines, gain_line, gain_note
from reports.layout import metric_label
from reports.marks import mark_notes, method_marks
from reports.names import display_name
from reports.published import (
    VOTE_OURS,
    canonical_suite,
    load_published,
    published_for,
    reference_methods,
    variant_rank,
    vote_practice,
)
from reports.values import display_scale, flagged, missing

SYNTHETIC_LABEL = "SYNTHETIC stand-in data — not comparable to published numbers"
UNVERIFIED_MARK = "✱"
@dataclass
class TableRow:
    """One method / recipe / suite-version row: its data kind, its label cells (method, then the
    :data:`LABEL_COLUMNS` the table keeps) and one list of text lines per variant column. ``reference``: a row of
    published numbers only (a method without records of ours), whose label cells are dashes."""

    data_kind: str
    label: list[str]
    cells: list[list[str]]
    reference: bool = False


@dataclass
class Table:
    """A display table with its heading, statistic definitions and (real data only) published references.

    ``columns`` names each data column as (variant, metric); ``frame`` is the long table's rows behind it.
    """

    suite: str
    data_kind: str
    profile: str
    heading: str
    header: list[str]
    rows: list[TableRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    columns: list[tuple[str, str]] = field(default_factory=list)
    frame: pd.DataFrame | None = None


def _num(value: float) -> str:
    return f"{value:.2f}"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _published(value: float, unverified: Any) -> str:
    return f"{value:g}{UNVERIFIED_MARK if flagged(unverified) else ''}"


def shown(row: pd.Series, column: str) -> str:
    """A statistic of ``row`` as displayed: times the metric's display ``scale`` (MMD-CD x10^3), two decimals."""
    return _num(row[column] * display_scale(row))


def _honest_line(row: pd.Series) -> str:
    n = int(row["n_seeds"])
    if missing(row["honest_std"]):
        return f"honest {shown(row, 'honest_mean')} (n={n}, no std)"
    return f"honest {shown(row, 'honest_mean')} ± {shown(row, 'honest_std')} (n={n})"


def vote_label(row: pd.Series) -> str:
    """``vote (ours)`` where the authors' code does not vote on the row's suite (``vote_origin`` ours: an extra
    statistic of ours beside the un-voted headline), else ``vote``."""
    return "vote (ours)" if row.get("vote_origin") == VOTE_OURS else "vote"


def _vote_lines(row: pd.Series) -> list[str]:
    lines = []
    label = vote_label(row)
    if row["vote_n"] > 0:
        std = "" if missing(row["vote_std"]) else f" ± {shown(row, 'vote_std')}"
        lines.append(f"{label} {shown(row, 'vote_mean')}{std} (n={int(row['vote_n'])})")
    if not missing(row["vote_best_of_r"]):
        repeats = "?" if missing(row["vote_repeats"]) else str(int(row["vote_repeats"]))
        lines.append(f"{label} best-of-R {shown(row, 'vote_best_of_r')} (R={repeats})")
    return lines


def _published_lines(row: pd.Series) -> list[str]:
    lines = []
    if not missing(row["published"]):
        std = "" if missing(row["published_std"]) else f" ± {row['published_std']:g}"
        pub = _published(row["published"], row["published_unverified"])
        lines.append(f"published {pub}{std} (Δ {_signed(row['diff'])} vs {row['diff_basis'].replace('_', ' ')})")
    if not missing(row["published_vote"]):
        pub = _published(row["published_vote"], row["published_vote_unverified"])
        diff = "" if missing(row["vote_diff"]) else f" (Δ {_signed(row['vote_diff'])})"
        lines.append(f"published vote {pub}{diff}")
    return lines


#: wording used for rows whose records state no selection rule (records written before it was stored)
DEFAULT_RULES = {"paper": "max over epochs of the test metric (test-set selection, as the papers report)",
                 "honest": "the test metric after the last epoch (no selection)"}


def _joined(values: Any) -> str:
    words = [w for text in values for w in str(text).split(" | ") if w]
    return " | ".join(dict.fromkeys(words))


def selection_rules(rows: pd.DataFrame) -> dict[str, str]:
    """{"paper", "honest"} -> the headline rows' selection wording, distinct wordings joined by " | "."""
    column = rows[_headline(rows)].get("selection", pd.Series(dtype=str))
    stated = [json.loads(text) for text in column.dropna() if text]
    return {key: _joined(rule.get(key, "") for rule in stated) or default for key, default in DEFAULT_RULES.items()}


def statistic_names(rows: pd.DataFrame) -> dict[str, str]:
    """{"paper", "honest"} -> the protocol's name(s) of the statistic behind it, e.g. 'best' and 'last'."""
    heads = rows[_headline(rows)]
    return {role: _joined(heads.get(f"{role}_from", pd.Series(dtype=str)).dropna()) or role
            for role in ("paper", "honest")}


def _words(row: pd.Series) -> str:
    """'in percent, higher is better' for one row's unit, display scale and direction."""
    unit = str(row.get("unit", "%"))
    scale = display_scale(row)
    units = "in percent" if unit == "%" else f"in {unit}" if unit and unit != "nan" else "unitless"
    if scale != 1.0:
        units += f", shown x{scale:g}"
    return f"{units}, {Direction.parse(str(row.get('direction', 'max'))).describe()}"


def metric_words(rows: pd.DataFrame) -> str:
    """'Acc. in percent, higher is better' for the rows' metrics; metrics that differ in unit, display scale or
    direction are described one group at a time ('1-NNA-CD in percent, closest to 50 is best; MMD-CD ...')."""
    groups: dict[str, list[str]] = {}
    for _, row in rows.drop_duplicates("metric").iterrows():
        groups.setdefault(_words(row), []).append(metric_label(str(row["metric"])))
    return "; ".join(f"{', '.join(names)} {words}" for words, names in groups.items())


def fold_mean(row: pd.Series) -> bool:
    """True when the row's paper statistic is the few-shot fold mean (``paper_statistic`` or a few-shot suite)."""
    return row.get("paper_statistic") == "fold_mean" or canonical_suite(str(row["suite"])) == "fewshot"


def paper_line(row: pd.Series) -> str:
    """``paper 90.00 (seed 2)``, or for a fold-mean suite ``paper 96.30 ± 2.50 (fold mean, n=10)``."""
    if fold_mean(row):
        std = "" if missing(row["best_std"]) else f" ± {shown(row, 'best_std')}"
        return f"paper {shown(row, 'best_mean')}{std} (fold mean, n={int(row['n_seeds'])})"
    return f"paper {shown(row, 'paper')} (seed {int(row['paper_seed'])})"


def cell_lines(row: pd.Series, base: pd.Series | None = None) -> list[str]:
    """The text lines of one cell: honest, its gap to the random-init ``base`` row (:mod:`reports.baseline`),
    paper (max or fold mean), votes, then published and Δ (real only)."""
    gain = gain_line(row, base)
    lines = [_honest_line(row), *([gain] if gain else []), paper_line(row)]
    lines.extend(_vote_lines(row))
    if row["data_kind"] == "real":
        lines.extend(_published_lines(row))
    return lines


def _references(rows: pd.DataFrame) -> list[str]:
    """One line per published number shown in the table: value, selection protocol, source, flags."""
    refs = []
    for _, row in rows.iterrows():
        where = f"{display_name(row['method'])} / {row['variant']}"
        if row.get("report_columns") == "metrics":
            where += f" / {metric_label(str(row['metric']))}"
        for prefix, tag in (("published", ""), ("published_vote", " vote")):
            if missing(row[prefix]):
                continue
            flag = f" {UNVERIFIED_MARK} unverified" if flagged(row[f"{prefix}_unverified"]) else ""
            note = row["published_note"] if prefix == "published" else None
            std = row["published_std"] if prefix == "published" else None
            value = f"{row[prefix]:g}" + ("" if missing(std) else f" ± {std:g}")
            ref = f"{where}{tag}: {value}{flag}. {row[f'{prefix}_protocol']}. Source: {row[f'{prefix}_source']}"
            refs.append(ref + ("" if missing(note) else f". Note: {note}"))
    return list(dict.fromkeys(refs))


def _notes(rows: pd.DataFrame, data_kind: str) -> list[str]:
    """The statistic definitions, metric, seed counts and provenance of one table."""
    counts = sorted({int(n) for n in rows["n_seeds"]})
    seeds = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]} (n= in each cell)"
    rules, names = selection_rules(rows), statistic_names(rows)
    kinds = {Direction.parse(str(d)).kind for d in rows.get("direction", pd.Series(["max"])).dropna()} or {"max"}
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    best = {"max": "max", "min": "min", "mixed": "best (in each metric's direction)"}.get(
        kind, "best (closest to the target)")
    notes = [
        f"Metric: {metric_words(rows)}. Seeds per cell: {seeds}.",
        f"paper = {best} over seeds of each seed's '{names['paper']}': {rules['paper']}.",
        f"honest = mean ± sample std (ddof=1) over seeds of each seed's '{names['honest']}': {rules['honest']}; no "
        "std with one seed.",
    ]
    if any(fold_mean(row) for _, row in rows.iterrows()):
        notes[1] = (f"paper (fold mean) = mean ± sample std over folds of each fold's '{names['paper']}' (the "
                    f"few-shot papers'): {rules['paper']}.")
        notes[2] = f"honest = mean ± sample std over folds of each fold's '{names['honest']}': {rules['honest']}."
    if (rows["vote_n"] > 0).any() or rows["vote_best_of_r"].notna().any():
        times = sorted({t for s in rows["vote_times"] for t in json.loads(s)})
        per_pass = "/".join(str(t) for t in times) or "?"
        notes.append(f"vote = mean ± std over seeds of one {per_pass}-vote pass (logits averaged) on the chosen "
                     "checkpoint; vote best-of-R = max over seeds of the best of R such passes (test-set selected).")
        notes += _ours_vote_notes(rows)
    if data_kind == "real":
        notes.append(f"published = reports/published.yaml ({UNVERIFIED_MARK} = not checked against a primary "
                     "source); Δ = ours − published, ours being the statistic named after 'vs'; vote Δ uses "
                     "vote best-of-R when present, else the max over seeds of one vote pass.")
    commits = sorted({c for s in rows["git_commits"] for c in json.loads(s)})
    backends = sorted({b for s in rows["ops_backends"] for b in json.loads(s)})
    notes.append(f"git commits: {', '.join(commits) or 'unknown'}; ops backends: {', '.join(backends) or 'unknown'}.")
    stated = rows.get("table_notes", pd.Series(dtype=str)).dropna()
    notes += list(dict.fromkeys(note for text in stated if text for note in json.loads(text)))
    return notes + mark_notes(rows)


def _ours_vote_notes(rows: pd.DataFrame) -> list[str]:
    """One note per suite of ``rows`` whose vote is ours (``vote_origin``), with the reason from published.yaml."""
    if "vote_origin" not in rows:
        return []
    suites = dict.fromkeys(str(s) for s, o in zip(rows["suite"], rows["vote_origin"], strict=True) if o == VOTE_OURS)
    notes = []
    for suite in suites:
        why = vote_practice(suite).note
        notes.append(f"vote (ours) on {suite}: an extra statistic of ours, not the published protocol; the headline "
                     f"is the un-voted paper statistic.{f' Why: {why}.' if why else ''}")
    return notes


def _heading(suite: str, data_kind: str, profile: str) -> str:
    kind = SYNTHETIC_LABEL if data_kind == "synthetic" else f"{data_kind} data"
    return f"{suite} — {kind} — profile {profile}"


def _headline(rows: pd.DataFrame) -> pd.Series:
    """Which rows are headline rows (a frame without the ``headline`` column has only those)."""
    if "headline" not in rows:
        return pd.Series(True, index=rows.index)
    return rows["headline"].fillna(True).astype(bool)


def _columns(suite: str, rows: pd.DataFrame) -> tuple[list[tuple[str, str]], list[str]]:
    """The data columns as (variant, metric) and their headers, by the rows' ``report_columns`` layout."""
    variants = sorted(set(rows["variant"]), key=lambda v: variant_rank(suite, v))
    layouts = set(rows["report_columns"]) if "report_columns" in rows else set()
    if "metrics" not in layouts:
        heads = rows[_headline(rows)]
        return [(v, str(heads[heads["variant"] == v]["metric"].iloc[0])) for v in variants], list(variants)
    order = [*rows[_headline(rows)]["metric"], *(m for s in rows["report_metrics"] for m in json.loads(s))]
    metrics = [m for m in dict.fromkeys(order) if m in set(rows["metric"])]  # headline, then report.metrics order
    columns = [(v, m) for v in variants for m in metrics]
    if len(variants) == 1:
        return columns, [metric_label(m) for _, m in columns]
    return columns, [f"{v} {metric_label(m)}" for v, m in columns]


#: the label columns after the method's, in order: a column whose value is the same in every row of ours moves to
#: the table's notes (:func:`_fold_constant_columns`)
LABEL_COLUMNS = ("recipe", "suite version", "config", "git commit")


def _label(group: pd.DataFrame) -> list[str]:
    """Method (display name and pre-training marks), recipe, suite version, config hash, git commits."""
    first = group.iloc[0]
    commits = sorted({c for s in group["git_commits"] for c in json.loads(s)})
    return [display_name(str(first["method"])) + method_marks(group), str(first["recipe"]),
            f"v{first['suite_version']}", str(first["config_hash"]), ", ".join(c[:10] for c in commits) or "unknown"]


def _fold_constant_columns(table: Table) -> None:
    """Drop each :data:`LABEL_COLUMNS` column whose value is the same in every row of ours (reference rows have
    dashes there and do not count) and state that value once in the notes: 'Every row: recipe method; suite
    version v1.' (the git commits are in the notes already)."""
    ours = [row for row in table.rows if not row.reference]
    same = [i for i in range(1, 1 + len(LABEL_COLUMNS)) if ours and len({row.label[i] for row in ours}) == 1]
    if not same:
        return
    stated = [f"{table.header[i]} {ours[0].label[i]}" for i in same if table.header[i] != "git commit"]
    if stated:  # the commits are in the notes already ('git commits: ...')
        table.notes.append("Every row: " + "; ".join(stated) + ".")
    keep = [i for i in range(len(table.header)) if i not in same]
    table.header = [table.header[i] for i in keep]
    width = 1 + len(LABEL_COLUMNS)
    for row in table.rows:
        row.label = [row.label[i] for i in keep if i < width]


def _build_table(suite: str, data_kind: str, profile: str, rows: pd.DataFrame) -> Table:
    columns, names = _columns(suite, rows)
    table = Table(suite, data_kind, profile, _heading(suite, data_kind, profile),
                  header=["method", *LABEL_COLUMNS, *names], columns=columns, frame=rows)
    keys = ["method", "recipe", "suite_version", "config_hash"]
    bases, base_notes = baselines(rows)
    for _, group in rows.groupby(keys, sort=False):
        by_column = {(row["variant"], row["metric"]): row for _, row in group.iterrows()}
        recipe = str(group["recipe"].iloc[0])
        cells = [cell_lines(by_column[c], bases.get((recipe, *c))) if c in by_column else ["—"] for c in columns]
        table.rows.append(TableRow(str(group["data_kind"].iloc[0]), _label(group), cells))
    table.notes = _notes(rows, data_kind) + gain_note(rows, bases) + base_notes
    if data_kind == "real":
        table.references = _references(rows)
        _add_reference_rows(table, set(map(str, rows["method"])))
    _fold_constant_columns(table)
    return table


def _add_reference_rows(table: Table, ours: set[str]) -> None:
    """Rows of published numbers for methods without records of ours (suites with ``reference_rows``: LION, PVD,
    PointFlow on generation), with their reference lines; real-data tables only."""
    for method in reference_methods(table.suite, frozenset(ours)):
        cells, found = [], False
        for variant, metric in table.columns:
            entry = next((e for e in published_for(method, table.suite, variant) if e.metric == metric), None)
            found = found or entry is not None
            cells.append(["—"] if entry is None else [f"published {_published(entry.value, entry.unverified)}"])
            if entry is not None:
                flag = f" {UNVERIFIED_MARK} unverified" if entry.unverified else ""
                ref = (f"{display_name(method)} / {variant} / {metric_label(metric)}: {entry.value:g}{flag}. "
                       f"{entry.protocol}. Source: {entry.source}")
                table.references.append(ref + (f". Note: {entry.note}" if entry.note else ""))
        if found:
            label = [f"{display_name(method)} (published)", *("—" for _ in LABEL_COLUMNS)]
            table.rows.append(TableRow(table.data_kind, label, cells, reference=True))


def build_tables(df: pd.DataFrame) -> list[Table]:
    """One table per (suite, data_kind, profile) of :func:`reports.leaderboard.summarize`'s output, real first."""
    tables = []
    order = {"real": 0, "synthetic": 1}
    keys = sorted(df.groupby(["suite", "data_kind", "profile"]).groups, key=lambda k: (k[0], order.get(k[1], 2), k[2]))
    for suite, data_kind, profile in keys:
        mask = (df["suite"] == suite) & (df["data_kind"] == data_kind) & (df["profile"] == profile)
        tables.append(_build_table(str(suite), str(data_kind), str(profile), df[mask]))
    return tables


def caveats(tables: list[Table]) -> list[str]:
    """The published-number caveats, shown once when any table compares with published numbers."""
    if not any(table.references for table in tables):
        return []
    return list(load_published().caveats)

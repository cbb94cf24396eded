"""Render the leaderboard as Markdown, CSV, LaTeX and a self-contained HTML report.

The statistics are defined in :mod:`reports.leaderboard`; the tables (one per suite, data kind and profile, methods
as rows, variants or metrics as columns per ``suite.report``) are laid out by :mod:`reports.tables`. Every table
states its statistic definitions and seed counts; tables from synthetic stand-in data carry
:data:`reports.tables.SYNTHETIC_LABEL` in their heading and never show published numbers. The HTML page
(:mod:`reports.page`) adds figures, tuning and provenance; it has inline CSS and inline SVG only: no script, no
external asset, no link out but to the MLflow UI of a tracking server. LaTeX: :mod:`reports.latex` (the whole
document, and each table as a ``tabular`` fragment for ``\\input``). Methods are named by display name everywhere
(:mod:`reports.names`). Tuning studies (:mod:`reports.tuning_page`) are reported with or without run records.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.errors import OutputError
from bench.io import atomic_write_many
from bench.records import RunRecord
from reports.fidelity import options_line
from reports.latex import latex_fragments, render_latex
from reports.leaderboard import summarize
from reports.page import EMPTY, TITLE, TUNING_ONLY, render_page
from reports.sources import TuningSummary, load_tuning
from reports.tables import Table, build_tables, caveats
from reports.tuning_page import tuning_markdown

__all__ = ["render_html", "render_latex", "render_markdown", "write_leaderboard"]


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = [f"## {table.heading}", ""]
    lines += [f"- {note}" for note in table.notes]
    lines += ["", "| " + " | ".join(_md_escape(h) for h in table.header) + " |"]
    lines.append("|" + " --- |" * len(table.header))
    for row in table.rows:
        cells = [*row.label, *(" · ".join(cell) for cell in row.cells)]
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    if table.references:
        lines += ["", "Published references:", *(f"- {_md_escape(ref)}" for ref in table.references)]
    return [*lines, ""]


OPTIONS_HEADING = "## Provenance: fidelity options per row"


def _md_options(df: pd.DataFrame) -> list[str]:
    """One line per leaderboard row (its headline row) with fidelity options (the long table's ``options``,
    :mod:`reports.fidelity`), in the long table's order; nothing when no row has any."""
    if "options" not in df:
        return []
    heads = df[df["headline"].fillna(True).astype(bool)] if "headline" in df else df
    lines = []
    for _, row in heads.iterrows():
        shown = options_line(row["options"] if isinstance(row["options"], str) else None)
        if shown:
            where = (f"{row['suite']} / {row['variant']} / {row['method']} ({row['data_kind']}, profile "
                     f"{row['profile']}, recipe {row['recipe']}, config {row['config_hash']})")
            lines.append(f"- {_md_escape(where)}: {_md_escape(shown)}")
    return [OPTIONS_HEADING, "", *lines, ""] if lines else []


def render_markdown(df: pd.DataFrame, tuning: list[TuningSummary] | None = None) -> str:
    """Markdown for :func:`reports.leaderboard.summarize`'s output: one table per (suite, data kind, profile), then
    the tuning studies (``tuning``, :func:`reports.tuning_page.tuning_markdown`) and each row's fidelity options
    (:func:`_md_options`).

    Cells join their lines with " · " so the text also reads well in a terminal.
    """
    tables = build_tables(df)
    lines = [f"# {TITLE}", ""]
    if not tables:
        return "\n".join([*lines, TUNING_ONLY if tuning else EMPTY, "", *tuning_markdown(tuning or [])])
    for table in tables:
        lines += _md_table(table)
    lines += tuning_markdown(tuning or [])
    lines += _md_options(df)
    notes = caveats(tables)
    if notes:
        lines += ["## Caveats on published numbers", "", *(f"- {_md_escape(c)}" for c in notes), ""]
    return "\n".join(lines)


def render_html(df: pd.DataFrame, records: list[RunRecord] | None = None,
                tuning: list[TuningSummary] | None = None) -> str:
    """The self-contained HTML page (:mod:`reports.page`); figures and provenance need the ``records``."""
    return render_page(df, records, tuning)


def write_leaderboard(records: list[RunRecord], out_dir: Path, tuning_dir: Path | None = None) -> dict[str, Path]:
    """Write leaderboard.md, .csv (the long table), .tex (a whole document) and .html (the full report) into
    ``out_dir``, atomically, and beside them one ``<suite>-<data kind>-<profile>.tex`` per table: its ``tabular``
    alone, to ``\\input`` into a paper (:func:`reports.latex.latex_fragments`).

    ``tuning_dir`` (``<output>/tuning``, optional, may be absent) adds the tuning studies from its
    ``<study>/summary.json`` files (also with no records). Returns the paths by key: ``{"md", "csv", "html", "tex"}``
    and ``"tex:<fragment name>"`` per fragment. Raises :class:`bench.errors.OutputError` when ``out_dir`` cannot be
    written.
    """
    df = summarize(records)
    tuning = load_tuning(tuning_dir)
    texts = {
        "md": render_markdown(df, tuning),
        "csv": df.to_csv(index=False, lineterminator="\n"),
        "html": render_html(df, records, tuning),
        "tex": render_latex(df),
    }
    paths = {fmt: Path(out_dir) / f"leaderboard.{fmt}" for fmt in texts}
    for name, text in latex_fragments(df).items():
        texts[f"tex:{name}"] = text
        paths[f"tex:{name}"] = Path(out_dir) / f"{name}.tex"
    try:  # every format or none: a full disk never leaves a new md beside a stale html
        atomic_write_many({paths[fmt]: text.encode("utf-8") for fmt, text in texts.items()})
    except OSError as err:
        raise OutputError(f"cannot write the leaderboard in {out_dir}: {err}") from err
    return paths

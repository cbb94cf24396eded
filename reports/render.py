"""Render the leaderboard as Markdown, CSV, LaTeX and a self-contained HTML report.

The statistics are defined in :mod:`reports.leaderboard`; the tables (one per suite, data kind and profile, methods
as rows, variants or metrics as columns per ``suite.report``) are laid out by :mod:`reports.tables`. Every table
states its statistic definitions and seed counts; tables from synthetic stand-in data carry
:data:`reports.tables.SYNTHETIC_LABEL` in their heading and never show published numbers. The HTML page
(:mod:`reports.page`) adds figures, tuning and provenance; it has inline CSS and inline SVG only: no script, no
external asset, no link out. LaTeX: :mod:`reports.latex`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.errors import OutputError
from bench.io import atomic_write_text
from bench.records import RunRecord
from reports.latex import render_latex
from reports.leaderboard import summarize
from reports.page import EMPTY, TITLE, render_page
from reports.sources import TuningSummary, load_tuning
from reports.tables import Table, build_tables, caveats

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


def render_markdown(df: pd.DataFrame) -> str:
    """Markdown for :func:`reports.leaderboard.summarize`'s output: one table per (suite, data kind, profile).

    Cells join their lines with " · " so the text also reads well in a terminal.
    """
    tables = build_tables(df)
    lines = [f"# {TITLE}", ""]
    if not tables:
        return "\n".join([*lines, EMPTY, ""])
    for table in tables:
        lines += _md_table(table)
    notes = caveats(tables)
    if notes:
        lines += ["## Caveats on published numbers", "", *(f"- {_md_escape(c)}" for c in notes), ""]
    return "\n".join(lines)


def render_html(df: pd.DataFrame, records: list[RunRecord] | None = None,
                tuning: list[TuningSummary] | None = None) -> str:
    """The self-contained HTML page (:mod:`reports.page`); figures and provenance need the ``records``."""
    return render_page(df, records, tuning)


def write_leaderboard(records: list[RunRecord], out_dir: Path, tuning_dir: Path | None = None) -> dict[str, Path]:
    """Write leaderboard.md, .csv (the long table), .tex and .html (the full report) into ``out_dir``, atomically.

    ``tuning_dir`` (``<output>/tuning``, optional, may be absent) adds the tuned-vs-default section from its
    ``<study>/summary.json`` files. Returns the paths by format: ``{"md", "csv", "html", "tex"}``. Raises
    :class:`bench.errors.OutputError` when ``out_dir`` cannot be written.
    """
    df = summarize(records)
    texts = {
        "md": render_markdown(df),
        "csv": df.to_csv(index=False, lineterminator="\n"),
        "html": render_html(df, records, load_tuning(tuning_dir)),
        "tex": render_latex(df),
    }
    paths = {fmt: Path(out_dir) / f"leaderboard.{fmt}" for fmt in texts}
    for fmt, text in texts.items():
        try:
            atomic_write_text(paths[fmt], text)
        except OSError as err:
            raise OutputError(f"cannot write {paths[fmt]}: {err}") from err
    return paths

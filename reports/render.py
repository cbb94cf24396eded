"""Render the leaderboard as Markdown, CSV and a self-contained HTML page.

The statistics are defined in :mod:`reports.leaderboard`; the tables (one per suite, data kind and profile, methods
as rows, variants as columns) are laid out by :mod:`reports.tables`. Every table states its statistic definitions
and seed counts; tables from synthetic stand-in data carry :data:`reports.tables.SYNTHETIC_LABEL` in their heading
and never show published numbers. The HTML page has inline CSS only: no script, no external asset, no link out.
"""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

import pandas as pd

from bench.errors import OutputError
from bench.records import RunRecord
from reports.leaderboard import summarize
from reports.published import load_published
from reports.tables import Table, build_tables

__all__ = ["render_html", "render_markdown", "write_leaderboard"]

TITLE = "pointbench leaderboard"
EMPTY = "No run records: nothing to report."
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1b1b1b; }
h2 { margin-top: 2em; }
section.synthetic h2 { color: #8a3b00; background: #fff1d6; padding: 0.3em 0.5em; border-left: 6px solid #d98200; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #c8c8c8; padding: 0.35em 0.6em; vertical-align: top; text-align: left; }
thead th { background: #f0f0f0; }
ul.notes, ul.refs { font-size: 0.85em; color: #444; }
"""


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


def _caveats(tables: list[Table]) -> list[str]:
    """The published-number caveats, shown once when any table compares with published numbers."""
    if not any(table.references for table in tables):
        return []
    return list(load_published().caveats)


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
    caveats = _caveats(tables)
    if caveats:
        lines += ["## Caveats on published numbers", "", *(f"- {_md_escape(c)}" for c in caveats), ""]
    return "\n".join(lines)


def _html_list(items: list[str], css_class: str) -> list[str]:
    if not items:
        return []
    return [f'<ul class="{css_class}">', *(f"<li>{html.escape(item)}</li>" for item in items), "</ul>"]


def _html_row(row_kind: str, label: list[str], cells: list[list[str]]) -> str:
    kind = html.escape(row_kind)
    head = f'<th scope="row">{html.escape(label[0])}</th>' + "".join(f"<td>{html.escape(v)}</td>" for v in label[1:])
    body = "".join("<td>" + "<br>".join(html.escape(line) for line in cell) + "</td>" for cell in cells)
    return f'<tr data-kind="{kind}">{head}{body}</tr>'


def _html_table(table: Table) -> list[str]:
    kind = html.escape(table.data_kind)
    parts = [f'<section class="board {kind}" data-kind="{kind}">', f"<h2>{html.escape(table.heading)}</h2>"]
    parts += _html_list(table.notes, "notes")
    parts.append(f'<table data-kind="{kind}">')
    header = "".join(f'<th scope="col">{html.escape(h)}</th>' for h in table.header)
    parts.append(f"<thead><tr>{header}</tr></thead>")
    parts.append("<tbody>")
    parts += [_html_row(row.data_kind, row.label, row.cells) for row in table.rows]
    parts += ["</tbody>", "</table>"]
    if table.references:
        parts.append("<p>Published references:</p>")
        parts += _html_list(table.references, "refs")
    return [*parts, "</section>"]


def render_html(df: pd.DataFrame) -> str:
    """A self-contained HTML page (inline CSS, no script, no external asset) with the same tables as Markdown."""
    tables = build_tables(df)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{TITLE}</title><style>{_CSS}</style></head>',
        "<body>",
        f"<h1>{TITLE}</h1>",
    ]
    if not tables:
        parts.append(f"<p>{html.escape(EMPTY)}</p>")
    for table in tables:
        parts += _html_table(table)
    caveats = _caveats(tables)
    if caveats:
        parts.append("<h2>Caveats on published numbers</h2>")
        parts += _html_list(caveats, "caveats")
    return "\n".join([*parts, "</body>", "</html>", ""])


def _atomic_write(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` through a temp file in the same folder, then ``os.replace`` it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_leaderboard(records: list[RunRecord], out_dir: Path) -> dict[str, Path]:
    """Write leaderboard.md, leaderboard.csv (the long table) and leaderboard.html into ``out_dir``, atomically.

    Returns the paths by format: ``{"md": ..., "csv": ..., "html": ...}``. Raises
    :class:`bench.errors.OutputError` when ``out_dir`` cannot be written.
    """
    df = summarize(records)
    texts = {
        "md": render_markdown(df),
        "csv": df.to_csv(index=False, lineterminator="\n"),
        "html": render_html(df),
    }
    paths = {fmt: Path(out_dir) / f"leaderboard.{fmt}" for fmt in texts}
    for fmt, text in texts.items():
        try:
            _atomic_write(paths[fmt], text)
        except OSError as err:
            raise OutputError(f"cannot write {paths[fmt]}: {err}") from err
    return paths

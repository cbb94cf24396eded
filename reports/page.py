"""The leaderboard as one self-contained HTML page: tables, figures, tuning, provenance.

Self-contained: inline CSS, figures as inline ``<svg>`` (:mod:`reports.plots`), no script, no external asset, and
no link out (only ``#`` anchors) except an MLflow run id whose record names a tracking server (:mod:`reports.
provenance`), so the file opens offline in a browser without a server. Per leaderboard table (suite x data kind x
profile): the table (:mod:`reports.tables`), the per-seed distribution, few-shot fold-mean bars where the suite
reports fold means, learning curves with a caption saying what they show (:mod:`reports.curves`), for generation
suites a grid of generated clouds beside references (the records' ``samples_file``; skipped when the files are
gone), and for records with ``details["scaling"]`` the log-log scaling law (:mod:`reports.scaling`). Then tuned
vs default (tuning summaries, :mod:`reports.tuning_page`; shown without any record too: a folder where only
``bench tune`` has run), the provenance of every row (:mod:`reports.provenance`) and the caveats on published
numbers. Every text is HTML-escaped.

Width: the page is at most 1320 px of content; every table sits in a ``div.scroll`` (its own horizontal scroll bar
if it ever is wider, so the page never is), the provenance tables have fixed column widths, long tokens wrap at
``/ = , .`` and commands at spaces (tests/reports/test_reports_layout_width.py checks it in headless Chromium).
"""

from __future__ import annotations

import html

import pandas as pd

from bench.records import RunRecord
from reports import plots
from reports.curves import learning_curves
from reports.provenance import provenance_section
from reports.scaling import scaling_plot
from reports.sources import TuningSummary
from reports.tables import Table, build_tables, caveats
from reports.tuning_page import tuning_section

__all__ = ["CSS", "EMPTY", "TITLE", "TUNING_ONLY", "html_table", "provenance_section", "render_page", "tuning_section"]

TITLE = "pointbench leaderboard"
EMPTY = "No run records: nothing to report."
TUNING_ONLY = ("No run records yet: only tuning studies, shown below. `bench run ... +overrides=<best_overrides.yaml>` "
               "runs a suite with a study's best values.")
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1320px; padding: 0 1.5em; color: #1b1b1b; }
h2 { margin-top: 2.2em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
h3 { margin: 1.4em 0 0.4em; font-size: 1.02em; color: #333; }
section.synthetic h2 { color: #8a3b00; background: #fff1d6; padding: 0.3em 0.5em; border-left: 6px solid #d98200; }
nav ul { columns: 2; font-size: 0.9em; }
div.scroll { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.4em 0; }
table.provenance { table-layout: fixed; width: 100%; }
th, td { border: 1px solid #c8c8c8; padding: 0.35em 0.6em; vertical-align: top; text-align: left;
         overflow-wrap: break-word; }
thead th { background: #f0f0f0; }
tbody tr:nth-child(even) { background: #fafafa; }
td span.honest { font-weight: 600; }
td span.published { color: #555; }
td.hash { word-break: break-all; font-family: ui-monospace, monospace; font-size: 0.92em; }
code { font-size: 1.05em; }
code.command { white-space: normal; word-break: normal; overflow-wrap: break-word; }
ul.notes, ul.refs, p.meta { font-size: 0.85em; color: #444; }
figure.plot { margin: 0.5em 0; overflow-x: auto; }
figure.plot svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #444; max-width: 75em; }
details { margin: 0.3em 0; }
summary { cursor: pointer; overflow-wrap: break-word; }
pre.config { background: #f6f6f6; padding: 0.6em; font-size: 0.85em; max-height: 28em; overflow: auto; }
"""


def esc(text: object) -> str:
    return html.escape(str(text))


def html_list(items: list[str], css_class: str) -> list[str]:
    if not items:
        return []
    return [f'<ul class="{css_class}">', *(f"<li>{esc(item)}</li>" for item in items), "</ul>"]


def _cell(lines: list[str]) -> str:
    spans = [f'<span class="{esc(line.split(" ")[0])}">{esc(line)}</span>' for line in lines]
    return "<td>" + "<br>".join(spans) + "</td>"


def _html_row(row_kind: str, label: list[str], cells: list[list[str]]) -> str:
    head = f'<th scope="row">{esc(label[0])}</th>' + "".join(f"<td>{esc(v)}</td>" for v in label[1:])
    return f'<tr data-kind="{esc(row_kind)}">{head}{"".join(_cell(c) for c in cells)}</tr>'


CAPTIONS = {
    "seeds": ("Per-seed distribution", "Each seed's last-epoch value (filled dots; the box spans them: the honest "
              "statistic), its best-epoch value (hollow dots: what the paper statistic selects from) and, for real "
              "data, the published number (black diamond)."),
    "folds": ("Few-shot fold means", "Bars: mean over folds of each fold's best test epoch; error bars: sample std "
              "over folds (the few-shot papers' statistic). Black diamonds with bars: published mean ± std."),
    "curves": ("Learning curves", "Test metric per epoch from the records' epoch rows, one panel per variant: each "
               "seed (fold) as a thin line, the mean over seeds as a thick line."),
    "samples": ("Generated samples", "Per category: reference clouds (grey), then the first clouds of each method's "
                "first sampling run (its first seed), in the frame the metrics compare them in (raw units, or "
                "box-normalised), from each record's samples file; a fixed oblique view, at most 256 points each."),
    "scaling": ("Scaling law", "Test loss against the parameters the generation stage trains, log-log: one point per "
                "size (mean over seeds; error bar: sample std with more than one seed) and the least-squares power "
                "law L = a·N^b fitted to log L against log N (dashed; exponent b and R² of the log fit in the "
                "legend)."),
}


def _figure(svg: str | None, kind: str, detail: str = "") -> list[str]:
    if svg is None:
        return []
    title, caption = CAPTIONS[kind]
    caption = f"{caption} {detail}" if detail else caption
    return [f"<h3>{esc(title)}</h3>", f'<figure class="plot" data-plot="{kind}">', svg,
            f"<figcaption>{esc(caption)}</figcaption>", "</figure>"]


def html_table(table: Table, anchor: str, records: list[RunRecord] | None) -> list[str]:
    """One leaderboard section: heading, notes, the table, references and (with records or rows) its figures."""
    kind = esc(table.data_kind)
    parts = [f'<section class="board {kind}" data-kind="{kind}" id="{anchor}">', f"<h2>{esc(table.heading)}</h2>"]
    parts += html_list(table.notes, "notes")
    parts.append(f'<div class="scroll"><table data-kind="{kind}" class="leaderboard">')
    parts.append("<thead><tr>" + "".join(f'<th scope="col">{esc(h)}</th>' for h in table.header) + "</tr></thead>")
    parts += ["<tbody>", *(_html_row(r.data_kind, r.label, r.cells) for r in table.rows), "</tbody>", "</table></div>"]
    if table.references:
        parts.append("<p>Published references:</p>")
        parts += html_list(table.references, "refs")
    if records is not None:
        parts += _figure(plots.seed_distribution(table), "seeds")
        parts += _figure(plots.fold_bars(table), "folds")
        if (curves := learning_curves(table, records)) is not None:
            parts += _figure(curves.svg, "curves", curves.caption)
        parts += _figure(plots.generated_samples(table, records), "samples")
        if (law := scaling_plot(table, records)) is not None:
            parts += _figure(law.svg, "scaling", law.caption)
    return [*parts, "</section>"]


def _nav(tables: list[Table], extra: list[tuple[str, str]]) -> list[str]:
    items = [(f"table-{i}", t.heading) for i, t in enumerate(tables)] + extra
    return ["<nav><ul>", *(f'<li><a href="#{a}">{esc(text)}</a></li>' for a, text in items), "</ul></nav>"]


def render_page(df: pd.DataFrame, records: list[RunRecord] | None = None,
                tuning: list[TuningSummary] | None = None) -> str:
    """The whole page for :func:`reports.leaderboard.summarize`'s ``df``; figures and provenance need ``records``."""
    tables = build_tables(df)
    tuning = tuning or []
    body: list[str] = []
    for i, table in enumerate(tables):
        body += html_table(table, f"table-{i}", records)
    body += tuning_section(tuning)
    body += provenance_section(records or [])
    notes = caveats(tables)
    if notes:
        body += ['<section id="caveats">', "<h2>Caveats on published numbers</h2>", *html_list(notes, "caveats"),
                 "</section>"]
    extra = [(a, t) for a, t, shown in (("tuning", "Tuned vs default", tuning), ("provenance", "Provenance", records),
                                         ("caveats", "Caveats on published numbers", notes)) if shown]
    head = [f"<h1>{esc(TITLE)}</h1>", *_meta(records)]
    if not tables:
        head.append(f"<p>{esc(TUNING_ONLY if tuning else EMPTY)}</p>")
    if tables or tuning:
        head += _nav(tables, extra)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{esc(TITLE)}</title><style>{CSS}</style></head>', "<body>",
        *head, *body, "</body>", "</html>", "",
    ])


def _meta(records: list[RunRecord] | None) -> list[str]:
    if not records:
        return []
    latest = max((r.created for r in records), default="")
    commits = sorted({str(r.env.get("git_commit")) for r in records if r.env.get("git_commit")})
    text = (f"{len(records)} run record(s); latest {latest or 'unknown'}; git commit(s) "
            f"{', '.join(c[:10] for c in commits) or 'unknown'}. Statistics are defined under each table.")
    return [f'<p class="meta">{esc(text)}</p>']

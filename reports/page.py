"""The leaderboard as one self-contained HTML page: tables, figures, tuning, provenance.

Self-contained: inline CSS, figures as inline ``<svg>`` (:mod:`reports.plots`), no script, no external asset and
no link out (only ``#`` anchors), so the file opens offline in a browser without a server. Per leaderboard table
(suite x data kind x profile): the table (:mod:`reports.tables`), the per-seed distribution, few-shot fold-mean
bars where the suite reports fold means, learning curves from the records' ``epochs`` rows, for generation
suites a grid of generated clouds beside references (the records' ``samples_file``; skipped when the files are
gone), and for records with ``details["scaling"]`` the log-log scaling law (:mod:`reports.scaling`). Then tuned
vs default (tuning summaries, :mod:`reports.sources`), the provenance of every row (each seed's job, commit,
command and the exact resolved config) and the caveats on published numbers. Every text is HTML-escaped.
"""

from __future__ import annotations

import html

import pandas as pd
import yaml

from bench.records import RunRecord
from bench.tracking import flatten
from reports import plots
from reports.leaderboard import KEY, row_records
from reports.scaling import scaling_plot
from reports.sources import TuningSummary
from reports.tables import Table, build_tables, caveats

TITLE = "pointbench leaderboard"
EMPTY = "No run records: nothing to report."
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1320px; padding: 0 1.5em; color: #1b1b1b; }
h2 { margin-top: 2.2em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
h3 { margin: 1.4em 0 0.4em; font-size: 1.02em; color: #333; }
section.synthetic h2 { color: #8a3b00; background: #fff1d6; padding: 0.3em 0.5em; border-left: 6px solid #d98200; }
nav ul { columns: 2; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.4em 0; }
th, td { border: 1px solid #c8c8c8; padding: 0.35em 0.6em; vertical-align: top; text-align: left; }
thead th { background: #f0f0f0; }
tbody tr:nth-child(even) { background: #fafafa; }
td span.honest { font-weight: 600; }
td span.published { color: #555; }
ul.notes, ul.refs, p.meta { font-size: 0.85em; color: #444; }
figure.plot { margin: 0.5em 0; overflow-x: auto; }
figure.plot svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.8em; color: #555; }
details { margin: 0.3em 0; }
summary { cursor: pointer; }
pre.config { background: #f6f6f6; padding: 0.6em; font-size: 0.85em; max-height: 28em; overflow: auto; }
td code { font-size: 1.05em; overflow-wrap: anywhere; }
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
    "curves": ("Learning curves", "Test metric per epoch from the records' epoch rows: each seed (fold) as a thin "
               "line, the mean over seeds as a thick line."),
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
    parts.append(f'<table data-kind="{kind}" class="leaderboard">')
    parts.append("<thead><tr>" + "".join(f'<th scope="col">{esc(h)}</th>' for h in table.header) + "</tr></thead>")
    parts += ["<tbody>", *(_html_row(r.data_kind, r.label, r.cells) for r in table.rows), "</tbody>", "</table>"]
    if table.references:
        parts.append("<p>Published references:</p>")
        parts += html_list(table.references, "refs")
    if records is not None:
        parts += _figure(plots.seed_distribution(table), "seeds")
        parts += _figure(plots.fold_bars(table), "folds")
        parts += _figure(plots.learning_curves(table, records), "curves")
        parts += _figure(plots.generated_samples(table, records), "samples")
        if (law := scaling_plot(table, records)) is not None:
            parts += _figure(law.svg, "scaling", law.caption)
    return [*parts, "</section>"]


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "—"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _tuning_study(summary: TuningSummary) -> list[str]:
    sign = 1 if summary.direction == "maximize" else -1
    both = summary.default_value is not None and summary.best_value is not None
    gain = f"{sign * (summary.best_value - summary.default_value):+.4g}" if both else "—"
    head = ["study", "suite", "method", "metric", "direction", "default", "tuned (best)", "gain", "best params"]
    values = [summary.study, "/".join(filter(None, (summary.suite, summary.variant))), summary.method,
              summary.metric, summary.direction, _score(summary.default_value), _score(summary.best_value), gain,
              _params(summary.best_params) + (" (the default)" if summary.best_is_default else "")]
    if summary.default_test is not None or summary.best_test is not None:
        head += ["test, default (report only)", "test, tuned (report only)"]
        values += [_score(summary.default_test), _score(summary.best_test)]
    parts = [f"<h3>{esc(summary.study)}</h3>", '<table class="tuning">',
             "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>",
             "<tbody><tr>" + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr></tbody>", "</table>"]
    svg = plots.tuning_history(summary.trials, summary.direction, summary.default_value, summary.study)
    if svg is not None:
        parts += ['<figure class="plot" data-plot="tuning">', svg, "</figure>"]
    rows = [[t["number"], t["state"], "—" if t.get("value") is None else f"{t['value']:.4g}", _params(t["params"])]
            for t in sorted(summary.trials, key=lambda t: t["number"])]
    parts += [f"<details><summary>{len(rows)} trial(s); {esc(summary.path)}</summary>", '<table class="trials">',
              "<thead><tr><th>trial</th><th>state</th><th>value</th><th>params</th></tr></thead><tbody>",
              *("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows),
              "</tbody></table></details>"]
    return parts


def tuning_section(summaries: list[TuningSummary]) -> list[str]:
    """Tuned vs default per study: the summary row, the optimisation history and the trial table."""
    if not summaries:
        return []
    parts = ['<section id="tuning">', "<h2>Tuned vs default</h2>",
             '<p class="meta">Validation scores of the default config and of the best trial; gain = tuned − '
             "default in the direction of improvement. Tuning selects on validation data, never on test.</p>"]
    for summary in summaries:
        parts += _tuning_study(summary)
    return [*parts, "</section>"]


def _varying(records: list[RunRecord]) -> list[str]:
    """Config keys (dotted) whose value differs between the row's records."""
    flat = [flatten(r.config) for r in records]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({f.get(k) for f in flat}) > 1]


def _device(env: dict) -> str:
    """``cpu``, or ``cuda:0 x 4 processes`` for a DDP run (records before ``world_size`` was stored: 1)."""
    processes = int(env.get("world_size") or 1)
    return str(env.get("device", "")) + (f" x {processes} processes" if processes > 1 else "")


def _provenance_row(key: tuple, records: list[RunRecord], is_open: bool = False) -> list[str]:
    where = dict(zip(KEY, key, strict=True))
    title = (f"{where['suite']} / {where['variant']} / {where['method']} — {where['data_kind']}, profile "
             f"{where['profile']}, recipe {where['recipe']}, suite v{where['suite_version']}, config "
             f"{where['config_hash']}")
    head = ["job", "seed", "created", "git commit", "ops backend", "device", "wall time (s)", "mlflow run", "command"]
    rows = [[r.job_id, r.seed, r.created, r.env.get("git_commit", ""), r.env.get("ops_backend", ""),
             _device(r.env), f"{r.wall_time_s:.1f}", r.mlflow_run_id or "—", r.command or "(not recorded)"]
            for r in records]
    varying = _varying(records)
    config = yaml.safe_dump(records[0].config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    note = (f"Config of seed {records[0].seed}; keys that differ between the seeds: {', '.join(varying)}."
            if varying else f"Config of seed {records[0].seed}; identical for every seed of this row.")
    return [f'<details class="provenance"{" open" if is_open else ""}><summary>{esc(title)}</summary>',
            '<table class="provenance">',
            "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>",
            *("<tr>" + "".join(f"<td><code>{esc(v)}</code></td>" if i == 8 else f"<td>{esc(v)}</td>"
                               for i, v in enumerate(r)) + "</tr>" for r in rows),
            "</tbody></table>", f'<p class="meta">{esc(note)}</p>', *_deviations(records),
            f'<pre class="config">{esc(config)}</pre>', "</details>"]


def _deviations(records: list[RunRecord]) -> list[str]:
    """The protocol's stated deviations from the reference (``details["deviations"]``, union over seeds)."""
    stated = dict.fromkeys(d for r in records for d in (getattr(r, "details", None) or {}).get("deviations", []))
    if not stated:
        return []
    return ['<p class="meta">Deviations from the reference implementation:</p>', '<ul class="deviations">',
            *(f"<li>{esc(d)}</li>" for d in stated), "</ul>"]


def provenance_section(records: list[RunRecord]) -> list[str]:
    """Per leaderboard row: every seed's job, commit, environment and command, and the exact resolved config."""
    if not records:
        return []
    parts = ['<section id="provenance">', "<h2>Provenance</h2>",
             '<p class="meta">One entry per leaderboard row; run the command again to reproduce a seed (a sweep '
             "skips the jobs whose records exist).</p>"]
    for i, (key, recs) in enumerate(row_records(records).items()):
        parts += _provenance_row(key, recs, is_open=i == 0)
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
    head += _nav(tables, extra) if tables else [f"<p>{esc(EMPTY)}</p>"]
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

"""The tuning studies in the report (HTML and Markdown): tuned vs default, the best trial, history, importance.

Per study (``tuning/<study>/summary.json``, :mod:`reports.sources`): one row comparing the default config's
validation score with the best trial's (gain = tuned − default in the direction of improvement; the last-epoch test
scores only as report-only columns, never selected on), the best trial (number, value, parameters and the
``bench run ... +overrides=<best_overrides.yaml>`` command that uses it), the optimisation history and the parameter
importances (inline SVG, :mod:`reports.plots`), and every trial. Works without any run record: a folder where only
``bench tune`` has run gets a report of its studies.
"""

from __future__ import annotations

import html

from reports.names import display_name
from reports.plots import param_importance, tuning_history
from reports.sources import TuningSummary

INTRO = ("Validation scores of the default config and of the best trial; gain = tuned − default in the direction of "
         "improvement. Tuning selects on validation data, never on test.")


def esc(text: object) -> str:
    return html.escape(str(text))


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "—"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def summary_row(summary: TuningSummary) -> tuple[list[str], list[str]]:
    """(header, values) of the study's tuned-vs-default row."""
    sign = 1 if summary.direction == "maximize" else -1
    both = summary.default_value is not None and summary.best_value is not None
    gain = f"{sign * (summary.best_value - summary.default_value):+.4g}" if both else "—"
    head = ["study", "suite", "method", "metric", "direction", "default", "tuned (best)", "gain", "best params"]
    values = [summary.study, "/".join(filter(None, (summary.suite, summary.variant))), display_name(summary.method),
              summary.metric, summary.direction, _score(summary.default_value), _score(summary.best_value), gain,
              _params(summary.best_params) + (" (the default)" if summary.best_is_default else "")]
    if summary.default_test is not None or summary.best_test is not None:
        head += ["test, default (report only)", "test, tuned (report only)"]
        values += [_score(summary.default_test), _score(summary.best_test)]
    return head, values


def best_trial_lines(summary: TuningSummary) -> list[str]:
    """The best trial in words, and the command that runs the suite with its values (when the override file is
    known); [] when no trial completed."""
    if summary.best_value is None:
        return []
    number = "" if summary.best_number is None else f" #{summary.best_number}"
    lines = [f"Best trial{number}: {summary.metric} {_score(summary.best_value)} with {_params(summary.best_params)}."]
    if summary.overrides_file:
        lines.append(f"bench run suite={summary.suite} method={summary.method} +overrides={summary.overrides_file}")
    return lines


def _trials_table(summary: TuningSummary) -> list[str]:
    rows = [[t["number"], t["state"], "—" if t.get("value") is None else f"{t['value']:.4g}", _params(t["params"])]
            for t in sorted(summary.trials, key=lambda t: t["number"])]
    return [f"<details><summary>{len(rows)} trial(s); {esc(summary.path)}</summary>",
            '<div class="scroll"><table class="trials">',
            "<thead><tr><th>trial</th><th>state</th><th>value</th><th>params</th></tr></thead><tbody>",
            *("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in rows),
            "</tbody></table></div></details>"]


def _figure(svg: str | None, kind: str, caption: str) -> list[str]:
    if svg is None:
        return []
    return [f'<figure class="plot" data-plot="{kind}">', svg, f"<figcaption>{esc(caption)}</figcaption>", "</figure>"]


def _study(summary: TuningSummary) -> list[str]:
    head, values = summary_row(summary)
    parts = [f"<h3>{esc(summary.study)}</h3>", '<div class="scroll"><table class="tuning">',
             "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>",
             "<tbody><tr>" + "".join(f"<td>{esc(v)}</td>" for v in values) + "</tr></tbody>", "</table></div>"]
    best = best_trial_lines(summary)
    if best:
        parts.append(f'<p class="meta best">{esc(best[0])}</p>')
        parts += [f'<p class="meta">Run the suite with it: <code class="command">{esc(line)}</code></p>'
                  for line in best[1:]]
    history = tuning_history(summary.trials, summary.direction, summary.default_value, summary.study)
    parts += _figure(history, "tuning", "Optimisation history: completed trials (filled), pruned trials' last "
                     "reported value (hollow), the best so far (step) and the default config (dashed).")
    parts += _figure(param_importance(summary.importance, summary.study), "importance",
                     "Parameter importance (Optuna's evaluator over the completed trials; sums to 1).")
    files = [f"{name}: {path}" for name, path in sorted(summary.plots.items())]
    if files:
        parts.append(f'<p class="meta">Image files written by bench tune: {esc("; ".join(files))}.</p>')
    return [*parts, *_trials_table(summary)]


def tuning_section(summaries: list[TuningSummary]) -> list[str]:
    """Tuned vs default per study: the summary row, the best trial, history, importance and the trial table."""
    if not summaries:
        return []
    parts = ['<section id="tuning">', "<h2>Tuned vs default</h2>", f'<p class="meta">{esc(INTRO)}</p>']
    for summary in summaries:
        parts += _study(summary)
    return [*parts, "</section>"]


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def tuning_markdown(summaries: list[TuningSummary]) -> list[str]:
    """The tuning section as Markdown: per study its tuned-vs-default row, best trial, command and importances."""
    if not summaries:
        return []
    lines = ["## Tuned vs default", "", INTRO, ""]
    for summary in summaries:
        head, values = summary_row(summary)
        lines += [f"### {_md(summary.study)}", "", "| " + " | ".join(map(_md, head)) + " |",
                  "|" + " --- |" * len(head), "| " + " | ".join(map(_md, values)) + " |", ""]
        best = best_trial_lines(summary)
        lines += [f"- {_md(best[0])}"] if best else []
        lines += [f"- run the suite with it: `{line}`" for line in best[1:]]
        if summary.importance:
            shown = ", ".join(f"{name} {value:.2f}" for name, value in summary.importance.items())
            lines.append(f"- parameter importance: {_md(shown)}")
        lines += [f"- {name}: {_md(path)}" for name, path in sorted(summary.plots.items())]
        lines.append("")
    return lines

"""The provenance section of the HTML report: per leaderboard row, every seed's job and how to reproduce it.

Per row (:data:`reports.leaderboard.KEY`): a table of each seed's job id, seed, creation time, git commit (12
characters shown, the whole hash as a tooltip), ops backend, device, wall time, MLflow run and command; the row's
fidelity options (:mod:`reports.fidelity`), the protocol's stated deviations and the exact resolved config.

Layout (so the table fits the page at 1400 px): fixed column widths (:data:`COLUMNS`), the command in a ``<code>``
that wraps at spaces, and long tokens (paths, dotted keys, comma lists) given break opportunities (``<wbr>``) after
``/ = , .`` so they wrap there rather than mid-word; hashes may break anywhere (CSS class ``hash``).

MLflow: the run id links to the run in the MLflow UI when the record's ``tracking.uri`` is a server (http or
https): ``<uri>/#/runs/<run id>``, the UI's direct run route, which opens the run in its experiment (records store
no experiment id; with one, :func:`mlflow_run_url` gives ``<uri>/#/experiments/<id>/runs/<run id>``). Credentials in
the URI are left out of the link. A SQLite or file store has no UI address: the id stays text.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote, urlsplit, urlunsplit

import yaml

from bench.records import RunRecord
from bench.tracking import flatten
from reports.fidelity import row_options
from reports.leaderboard import KEY, row_records
from reports.names import display_name

#: (header, width in percent of the table) per provenance column, in order
COLUMNS = (("job", 12), ("seed", 5), ("created", 10), ("git commit", 9), ("ops backend", 7), ("device", 9),
           ("wall time (s)", 6), ("mlflow run", 10), ("command", 32))
LONG_TOKEN = 16  # characters: longer space-free tokens get break opportunities
_BREAK_AFTER = re.compile(r"(?<=[/=,.])")


def esc(text: object) -> str:
    return html.escape(str(text))


def breakable(text: object) -> str:
    """``text`` HTML-escaped, with ``<wbr>`` after ``/ = , .`` inside tokens longer than :data:`LONG_TOKEN`."""
    words = str(text).split(" ")
    return " ".join("<wbr>".join(esc(part) for part in _BREAK_AFTER.split(word)) if len(word) > LONG_TOKEN
                    else esc(word) for word in words)


def mlflow_run_url(uri: str | None, run_id: str | None, experiment_id: str | None = None) -> str | None:
    """The run's page in the MLflow UI of the tracking server ``uri`` (http / https only, credentials dropped);
    None for other stores or without a run id."""
    if not uri or not run_id:
        return None
    parts = urlsplit(str(uri))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    route = f"runs/{quote(run_id)}" if not experiment_id else f"experiments/{quote(experiment_id)}/runs/{quote(run_id)}"
    return f"{base}/#/{route}"


def _tracking_uri(record: RunRecord) -> str | None:
    tracking = record.config.get("tracking") if isinstance(record.config, dict) else None
    return tracking.get("uri") if isinstance(tracking, dict) else None


def _run_cell(record: RunRecord) -> str:
    if not record.mlflow_run_id:
        return "<td>—</td>"
    url = mlflow_run_url(_tracking_uri(record), record.mlflow_run_id)
    text = esc(record.mlflow_run_id)
    link = text if url is None else f'<a href="{esc(url)}" title="the run in the MLflow UI">{text}</a>'
    return f'<td class="hash">{link}</td>'


def _device(env: dict) -> str:
    """``cpu``, or ``cuda:0 x 4 processes`` for a DDP run (records before ``world_size`` was stored: 1)."""
    processes = int(env.get("world_size") or 1)
    return str(env.get("device", "")) + (f" x {processes} processes" if processes > 1 else "")


def _row(record: RunRecord) -> str:
    commit = str(record.env.get("git_commit", "") or "")
    cells = [f"<td>{breakable(record.job_id)}</td>", f"<td>{esc(record.seed)}</td>", f"<td>{esc(record.created)}</td>",
             f'<td class="hash" title="{esc(commit)}">{esc(commit[:12])}</td>',
             f"<td>{esc(record.env.get('ops_backend', ''))}</td>", f"<td>{esc(_device(record.env))}</td>",
             f"<td>{record.wall_time_s:.1f}</td>", _run_cell(record),
             f'<td><code class="command">{breakable(record.command or "(not recorded)")}</code></td>']
    return "<tr>" + "".join(cells) + "</tr>"


def _varying(records: list[RunRecord]) -> list[str]:
    """Config keys (dotted) whose value differs between the row's records."""
    flat = [flatten(r.config) for r in records]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({f.get(k) for f in flat}) > 1]


def _title(key: tuple) -> str:
    where = dict(zip(KEY, key, strict=True))
    shown = display_name(str(where["method"]))
    method = shown if shown == where["method"] else f"{shown} ({where['method']})"
    return (f"{where['suite']} / {where['variant']} / {method} — {where['data_kind']}, profile {where['profile']}, "
            f"recipe {where['recipe']}, suite v{where['suite_version']}, config {where['config_hash']}")


def _provenance_row(key: tuple, records: list[RunRecord], is_open: bool = False) -> list[str]:
    config = yaml.safe_dump(records[0].config, sort_keys=False, allow_unicode=True, default_flow_style=False)
    varying = _varying(records)
    note = (f"Config of seed {records[0].seed}; keys that differ between the seeds: {', '.join(varying)}."
            if varying else f"Config of seed {records[0].seed}; identical for every seed of this row.")
    columns = "".join(f'<col style="width: {width}%">' for _, width in COLUMNS)
    return [f'<details class="provenance"{" open" if is_open else ""}><summary>{esc(_title(key))}</summary>',
            f'<div class="scroll"><table class="provenance"><colgroup>{columns}</colgroup>',
            "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h, _ in COLUMNS) + "</tr></thead><tbody>",
            *(_row(r) for r in records), "</tbody></table></div>", f'<p class="meta">{esc(note)}</p>',
            *_options(records), *_deviations(records), f'<pre class="config">{esc(config)}</pre>', "</details>"]


def _options(records: list[RunRecord]) -> list[str]:
    """The row's fidelity options (:mod:`reports.fidelity`: the listed config keys its records hold) as a table."""
    options = row_options(records)
    if not options:
        return []
    rows = "".join(f"<tr><td><code>{esc(k)}</code></td><td>{esc(v)}</td></tr>" for k, v in options.items())
    return ['<p class="meta">Fidelity options (how closely the run follows the authors\' code):</p>',
            '<div class="scroll"><table class="fidelity"><thead><tr><th>option</th><th>value</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>"]


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

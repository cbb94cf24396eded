"""Aggregate RunRecords over seeds into the leaderboard's long table.

One row per (suite, suite_version, data_kind, profile, recipe, method, config_hash, variant); records that
differ in any of these never share a row. Within a row every record is one seed (for few-shot suites, one
fold). Metrics are in percent.
With ``s`` ranging over the row's seeds and ``final`` the record's per-job summary (see :mod:`bench.records`):

Every per-seed value is a statistic of the record's typed result for the row's metric (:mod:`bench.results`),
found by its *role*, never by its name; "best over seeds" follows the metric's direction (max, min, or closest
to a target such as 50% for 1-NNA), which the result carries with its unit and display scale.

- ``paper`` = best_s of the ``paper`` statistic (e.g. the max over epochs of the test metric: the papers'
  selection). ``paper_seed`` is the seed attaining it (the smallest such seed on ties).
- ``honest_mean`` = mean_s of the ``honest`` statistic (e.g. the last epoch, no selection); ``honest_std`` = the
  sample standard deviation of the same values (ddof=1), NaN (blank in the CSV) with one seed.
- ``best_mean`` / ``best_std`` = mean and sample std (ddof=1) over seeds of the ``paper`` statistic: the few-shot
  papers' statistic (mean ± std over folds of each fold's best epoch).
- ``vote_mean`` / ``vote_std`` / ``vote_max`` = mean, sample std (ddof=1) and best over the seeds that have a
  ``vote`` statistic (one voting pass on the chosen checkpoint); ``vote_n`` = how many seeds have it.
- ``vote_best_of_r`` = best_s of the ``vote_repeated`` statistic (the best of R passes, the reference repos'
  ``--test`` practice); ``vote_repeats`` = the R of the seed attaining it.
- ``direction``, ``unit``, ``scale``: the metric's (``scale`` multiplies values for display only);
  ``paper_from`` / ``honest_from``: the protocol's names of the statistics behind paper and honest.
- Published columns (``data_kind == "real"`` only): the entry of ``reports/published.yaml`` for the row's metric.
  ``diff`` = ours - published, where ours is ``paper`` for max/unstated entries and ``best_mean`` for few-shot
  fold means (``diff_basis`` names which); ``vote_diff`` = ``vote_best_of_r`` (else ``vote_max``) - published vote.
- ``seeds``, ``last_values``, ``best_values``, ``git_commits``, ``ops_backends``, ``vote_times`` are JSON lists
  (strings), so the CSV round-trips exactly; per-seed values are listed in seed order.
- ``table_notes``: JSON list of the records' ``details["table_notes"]`` (lines the protocol asks to show under the
  table: the generation protocol's 1-NNA noise floor) and of the ``method.init`` of rows trained from random
  initialisation (:mod:`reports.random_init`), distinct.
- ``pretrain_flags``: JSON list of the :data:`PRETRAIN_FLAGS` that any record of the row carries in the provenance
  of its pre-training side data (``pretrain.details.side_data.<name>.<flag>`` is true, in any stage): e.g.
  ``uses_category_names`` (captions of category names: label information) and ``test_teachers`` (random test
  teachers computed the side data). Read from the records only, never from method names.
- ``random_init``: True when every record of the row trained from random initialisation (``pretrain.source`` is
  ``none``): the baseline of the tables' ``vs`` lines (:mod:`reports.baseline`).
- ``selection``: JSON object {"paper": rule, "honest": rule} of the records' own wording of how each per-seed
  value was chosen (e.g. the SVM protocol's paper statistic is the reference's fixed C, not a max over epochs);
  seeds whose wording differs are joined with " | ".
- ``vote_origin``: who votes on the suite, for rows with a vote statistic (NaN otherwise): ``reference`` (the
  authors' code votes: ModelNet40) or ``ours`` (it does not: ScanObjectNN, whose headline is then the un-voted
  ``paper`` and whose vote is an extra of ours), from ``reports/published.yaml`` ``suites.<suite>.vote``.
- ``options``: JSON object {dotted config key: value} of the row's fidelity options (:mod:`reports.fidelity`:
  the keys of :data:`reports.fidelity.FIDELITY_OPTIONS` its records' configs hold; values differing between seeds
  joined with " | ").

Table layout (``suite.report``, see :mod:`reports.layout`): a suite with ``columns: metrics`` gets one row per
metric of ``report.metrics`` that the records have (the headline first, ``headline`` True; no vote columns for
the others). ``report_columns``, ``report_metrics`` and
``paper_statistic`` carry the layout to the tables; ``commands`` lists the rows' ``bench`` command lines.

When the same seed appears twice in one row (a job run again in another sweep), the record with the latest
``created`` stamp is kept and ``dropped_duplicates`` counts the others.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from typing import Any

import pandas as pd

from bench.aggregate import NAN, metric_result, metric_values, seed_statistics, vote_statistics
from bench.errors import DataError
from bench.records import RunRecord
from bench.results import HONEST, PAPER
from reports.fidelity import row_options
from reports.layout import ReportSpec, report_spec, row_metrics
from reports.published import PRIMARY_STATISTICS, PublishedEntry, published_for, variant_rank, vote_practice
from reports.random_init import random_init_notes

__all__ = ["COLUMNS", "KEY", "PRETRAIN_FLAGS", "published_for", "row_records", "side_data_provenance", "summarize"]

KEY = ("suite", "suite_version", "data_kind", "profile", "recipe", "method", "config_hash", "variant")
DATA_KINDS = ("real", "synthetic")
_PUBLISHED_COLUMNS = (
    "published", "published_std", "published_statistic", "published_protocol", "published_source",
    "published_unverified", "published_note", "diff", "diff_basis",
    "published_vote", "published_vote_protocol", "published_vote_source", "published_vote_unverified",
    "vote_diff", "vote_diff_basis",
)
COLUMNS = (
    *KEY, "metric", "direction", "unit", "scale", "n_seeds", "seeds", "paper", "paper_seed", "honest_mean",
    "honest_std", "best_mean", "best_std", "last_values", "best_values",
    "vote_n", "vote_mean", "vote_std", "vote_max", "vote_best_of_r", "vote_repeats",
    *_PUBLISHED_COLUMNS, "git_commits", "ops_backends", "vote_times", "dropped_duplicates",
    "headline", "report_columns", "report_metrics", "paper_statistic", "commands", "selection",
    "paper_from", "honest_from", "table_notes", "pretrain_flags", "random_init", "vote_origin", "options",
)
#: provenance flags of pre-training side data that a row reports (``pretrain_flags``), in display order
PRETRAIN_FLAGS = ("uses_category_names", "test_teachers")


def _validate(record: RunRecord) -> None:
    if record.data_kind not in DATA_KINDS:
        raise DataError(f"record {record.job_id}: data_kind {record.data_kind!r} is not one of {DATA_KINDS}")
    metric_values(record, record.metric)  # the headline has finite honest and paper statistics


def _group(records: list[RunRecord]) -> dict[tuple, tuple[list[RunRecord], int]]:
    """Records by row key, one per seed (latest ``created`` wins), with the number of duplicates dropped."""
    by_key: dict[tuple, dict[int, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        _validate(record)
        by_key[tuple(getattr(record, name) for name in KEY)][record.seed].append(record)
    grouped: dict[tuple, tuple[list[RunRecord], int]] = {}
    for key, by_seed in by_key.items():
        kept = [max(recs, key=lambda r: (r.created, r.sweep_id, r.job_id)) for _, recs in sorted(by_seed.items())]
        dropped = sum(len(recs) - 1 for recs in by_seed.values())
        _check_uniform(kept)
        grouped[key] = (kept, dropped)
    return grouped


def row_records(records: list[RunRecord]) -> dict[tuple, list[RunRecord]]:
    """The records behind each leaderboard row key (:data:`KEY` values), one per seed in seed order."""
    return {key: kept for key, (kept, _) in _group(records).items()}


def _check_uniform(records: list[RunRecord]) -> None:
    """All seeds of one row must report the same headline metric with the same direction and unit."""
    kinds = {(r.metric, r.headline.direction, r.headline.unit) for r in records}
    if len(kinds) > 1:
        jobs = ", ".join(r.job_id for r in records)
        raise DataError(f"records {jobs} share a leaderboard row but disagree on metric / direction: {sorted(kinds)}")


def _blank_published() -> dict[str, Any]:
    """Every published column missing (NaN, also for text and flags, so the CSV reads back identically)."""
    return dict.fromkeys(_PUBLISHED_COLUMNS, NAN)


def _primary_columns(entry: PublishedEntry, row: dict[str, Any]) -> dict[str, Any]:
    basis = "best_mean" if entry.statistic == "fold_mean" else "paper"
    return {
        "published": entry.value,
        "published_std": NAN if entry.std is None else entry.std,
        "published_statistic": entry.statistic,
        "published_protocol": entry.protocol,
        "published_source": entry.source,
        "published_unverified": entry.unverified,
        "published_note": entry.note or NAN,
        "diff": row[basis] - entry.value,
        "diff_basis": basis,
    }


def _vote_columns(entry: PublishedEntry, row: dict[str, Any]) -> dict[str, Any]:
    basis = next((name for name in ("vote_best_of_r", "vote_max") if not math.isnan(row[name])), None)
    return {
        "published_vote": entry.value,
        "published_vote_protocol": entry.protocol,
        "published_vote_source": entry.source,
        "published_vote_unverified": entry.unverified,
        "vote_diff": NAN if basis is None else row[basis] - entry.value,
        "vote_diff_basis": NAN if basis is None else basis,
    }


def _published_columns(row: dict[str, Any]) -> dict[str, Any]:
    """Published number(s) for the row's metric and our differences to them; blank unless the data is real."""
    columns = _blank_published()
    if row["data_kind"] != "real":
        return columns
    entries = [e for e in published_for(row["method"], row["suite"], row["variant"]) if e.metric == row["metric"]]
    primary = next((e for e in entries if e.statistic in PRIMARY_STATISTICS), None)
    vote = next((e for e in entries if e.statistic == "vote"), None)
    if primary is not None:
        columns.update(_primary_columns(primary, row))
    if vote is not None:
        columns.update(_vote_columns(vote, row))
    return columns


def _vote_times(record: RunRecord) -> int | None:
    """Votes per pass from the record's resolved config (``suite.vote.times``), None when absent."""
    times = record.config.get("suite", {}).get("vote", {}).get("times")
    return int(times) if times is not None else None


def _env_list(records: list[RunRecord], name: str) -> str:
    values = sorted({str(r.env[name]) for r in records if r.env.get(name) not in (None, "")})
    return json.dumps(values)


def _selection(records: list[RunRecord], metric: str) -> dict[str, str]:
    """The records' selection wording per role (distinct wordings joined by " | ") as JSON {"paper", "honest"},
    and the protocol's names of those statistics (``paper_from``, ``honest_from``)."""
    found = {role: [metric_result(r, metric).role(role) for r in records] for role in (PAPER, HONEST)}
    rules = {role: " | ".join(dict.fromkeys(s[1].rule for s in stats if s and s[1].rule))
             for role, stats in found.items()}
    names = {role: " | ".join(dict.fromkeys(s[0] for s in stats if s)) for role, stats in found.items()}
    return {"selection": json.dumps(rules), "paper_from": names[PAPER], "honest_from": names[HONEST]}


def _table_notes(records: list[RunRecord]) -> str:
    """JSON list of the records' ``details["table_notes"]`` (lines a protocol asks to show under its table, e.g.
    the 1-NNA noise floor), then how rows trained from random initialisation were initialised
    (:func:`reports.random_init.random_init_notes`), distinct, in record order."""
    notes = [str(n) for r in records for n in (getattr(r, "details", None) or {}).get("table_notes", [])]
    return json.dumps(list(dict.fromkeys(notes + random_init_notes(records))))


def side_data_provenance(record: RunRecord) -> list[dict[str, Any]]:
    """The provenance of every side-data file the record's pre-training read (``pretrain.details.side_data``, and
    each stage's under ``details.stages``), in stage order; [] for imported or absent pre-training."""
    details = (getattr(record, "pretrain", None) or {}).get("details") or {}
    stages = [details, *(details.get("stages") or [])]
    return [info for stage in stages if isinstance(stage, dict)
            for info in (stage.get("side_data") or {}).values() if isinstance(info, dict)]  # fmt: skip


def _pretrain_flags(records: list[RunRecord]) -> str:
    """JSON list of the :data:`PRETRAIN_FLAGS` set (true) in any record's side-data provenance, in flag order."""
    found = {flag for r in records for info in side_data_provenance(r) for flag in PRETRAIN_FLAGS
             if info.get(flag) is True}  # fmt: skip
    return json.dumps([flag for flag in PRETRAIN_FLAGS if flag in found])


def _vote_origin(row: dict[str, Any]) -> Any:
    """``reference`` or ``ours`` (who votes on the row's suite) for a row with a vote statistic; NaN otherwise."""
    if row["vote_n"] == 0 and math.isnan(row["vote_best_of_r"]):
        return NAN
    return vote_practice(str(row["suite"])).origin


def _group_spec(records: list[RunRecord]) -> ReportSpec:
    """The row's ``suite.report`` (validated); its seeds must agree on it."""
    specs = {report_spec(r) for r in records}
    if len(specs) > 1:
        jobs = ", ".join(r.job_id for r in records)
        raise DataError(f"records {jobs} share a leaderboard row but disagree on suite.report: "
                        f"{sorted(map(str, specs))}")
    return specs.pop()


def _summarize_group(key: tuple, records: list[RunRecord], dropped: int) -> list[dict[str, Any]]:
    """The row(s) of one key: the headline metric, then (``columns: metrics``) every other report metric."""
    spec = _group_spec(records)
    rows = []
    for metric in row_metrics(records, spec):
        result = metric_result(records[0], metric)
        direction = result.order
        row: dict[str, Any] = dict(zip(KEY, key, strict=True))
        row.update(metric=metric, direction=str(direction), unit=result.unit, scale=result.scale)
        row.update(seed_statistics(records, direction, metric))
        headline = metric == records[0].metric
        row.update(vote_statistics(records if headline else [], direction, metric))
        row.update(_published_columns(row))
        row.update(
            git_commits=_env_list(records, "git_commit"),
            ops_backends=_env_list(records, "ops_backend"),
            vote_times=json.dumps(sorted({_vote_times(r) for r in records} - {None})),
            dropped_duplicates=dropped,
            headline=headline,
            report_columns=spec.columns,
            report_metrics=json.dumps(list(spec.metrics)),
            paper_statistic=spec.paper_statistic,
            commands=json.dumps(sorted({r.command for r in records if getattr(r, "command", "")})),
            table_notes=_table_notes(records),
            pretrain_flags=_pretrain_flags(records),
            random_init=all((getattr(r, "pretrain", None) or {}).get("source") == "none" for r in records),
            options=json.dumps(row_options(records)),
            **_selection(records, metric),
        )
        row["vote_origin"] = _vote_origin(row)
        rows.append(row)
    return rows


def _row_order(row: dict[str, Any]) -> tuple:
    """Suite, version, data kind, profile, recipe, then ``scratch`` first and methods by name, then variants."""
    method_rank = (row["method"] != "scratch", row["method"])
    head = (row["suite"], row["suite_version"], row["data_kind"], row["profile"], row["recipe"])
    return (*head, method_rank, variant_rank(row["suite"], row["variant"]), not row["headline"])


def summarize(records: list[RunRecord], headline_only: bool = False) -> pd.DataFrame:
    """The long leaderboard table: one row per :data:`KEY` (suite, version, data kind, profile, recipe, method,
    config hash, variant) and metric (only the headline unless the suite's ``report.columns`` is ``metrics``).

    Columns are :data:`COLUMNS`; every statistic is defined in this module's docstring. ``headline_only`` keeps
    exactly one row per key. Raises :class:`bench.errors.DataError` for a record with an unknown data kind or
    without finite honest and paper statistics of the headline (or of a report metric), and for seeds of
    one row that disagree on the headline metric or the layout; ConfigError for an invalid ``suite.report``.
    """
    grouped = _group(records).items()
    rows = [row for key, (recs, dropped) in grouped for row in _summarize_group(key, recs, dropped)]
    if headline_only:
        rows = [row for row in rows if row["headline"]]
    rows.sort(key=_row_order)
    return pd.DataFrame(rows, columns=list(COLUMNS))

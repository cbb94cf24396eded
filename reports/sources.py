"""Where a report's inputs come from: RunRecords (the records folder or an MLflow store) and tuning summaries.

MLflow: every job run (tag ``bench.stage = job``, written by :mod:`bench.runner`) carries its RunRecord as the
artifact ``run_record.json``; those artifacts are the records, so the report from MLflow equals the report from
the records folder.

Tuning summary (``<output>/tuning/<study>/summary.json``, written by the tuner), the schema this module accepts::

    {"study": str, "suite": str, "method": str, "direction": "maximize" | "minimize", "metric": str,
     "best_params": {name: value}, "best_value": float, "default_value": float | null,
     "trials": [{"number": int, "state": str, "value": float | null, "params": {name: value}}]}

``bench tune`` writes its own schema 1 (:mod:`bench.tuning`: ``"schema": 1``, ``"best"`` / ``"default"`` as
``{"number", "value", "params", "test_last"}`` or null); it is read into the same fields (``best_value`` null when
no trial completed), keeping the variant, the report-only last-epoch test scores, the best trial's number, the
override file, the plot files and the parameter importances (``"importance": {name: float}``,
:mod:`bench.tuning_report`; absent in summaries written before it). A missing tuning folder means no tuning
section; a malformed summary is a DataError naming the file and key.

A folder where only ``bench tune`` has run (no records, one or more ``tuning/<study>/summary.json``) still gets a
report: :func:`gather_records` returns no records there instead of stopping, and the report shows the studies.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError, DataError
from bench.records import RunRecord, load_records

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars per record download
RECORD_ARTIFACT = "run_record.json"
JOB_FILTER = "tags.`bench.stage` = 'job'"


@dataclass(frozen=True)
class TuningSummary:
    """One tuning study: the trials and the default vs tuned validation score (see the module docstring)."""

    study: str
    suite: str
    method: str
    direction: str
    metric: str
    best_params: dict[str, Any]
    best_value: float | None
    default_value: float | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""
    variant: str = ""
    default_test: float | None = None  # bench tune: last-epoch test score of the default (report only)
    best_test: float | None = None  # ... and of the best trial
    best_is_default: bool = False  # the best trial is the default config (bench tune's trial 0)
    best_number: int | None = None  # the best trial's number (bench tune)
    overrides_file: str = ""  # best_overrides.yaml (bench tune), for ``bench run ... +overrides=<file>``
    plots: dict[str, str] = field(default_factory=dict)  # name (history, importance) -> image file (bench tune)
    importance: dict[str, float] = field(default_factory=dict)  # parameter -> Optuna importance, largest first


def _from_bench_tune(raw: dict[str, Any]) -> dict[str, Any]:
    """``bench tune``'s schema 1 (nested ``best`` / ``default``) as the flat fields of the documented schema."""
    best, default = raw.get("best") or {}, raw.get("default") or {}
    return {**raw, "best_params": best.get("params", {}), "best_value": best.get("value"),
            "default_value": default.get("value"), "best_test": best.get("test_last"),
            "default_test": default.get("test_last"), "best_number": best.get("number"),
            "best_is_default": best.get("number") is not None and best.get("number") == default.get("number")}


def gather_records(output: Path, tracking_uri: str | None = None, experiment: str = "pointbench") -> list[RunRecord]:
    """The records under ``<output>/records``, or (``tracking_uri`` given) those of the MLflow store: at least one,
    or none when ``<output>/tuning`` holds a study summary (only ``bench tune`` has run: the report shows the
    studies). Raises BenchError when there is neither."""
    if tracking_uri:
        records = records_from_mlflow(tracking_uri, experiment)
        where = f"MLflow {tracking_uri} (experiment {experiment})"
    else:
        records = load_records(output / "records")
        where = str(output / "records")
    if not records and not any((output / "tuning").glob("*/summary.json")):
        raise BenchError(f"no run records under {where} and no tuning study under {output / 'tuning'}: run "
                         "`bench run ...` or `bench tune ...` first, or set output.dir / tracking.uri.")
    return records


def records_from_mlflow(uri: str, experiment: str = "pointbench") -> list[RunRecord]:
    """Every job run's ``run_record.json`` in ``experiment`` of the store at ``uri``, sorted by job id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ConfigError(f"tracking.uri={uri}: no MLflow experiment named {experiment!r} "
                              "(set tracking.experiment=...)")
        runs = client.search_runs([found.experiment_id], filter_string=JOB_FILTER, max_results=50000)
        texts = [(run.info.run_id, _artifact_text(client, run.info.run_id)) for run in runs]
    except MlflowException as err:
        raise ConfigError(f"cannot read the MLflow store at {uri}: {err.message}") from None
    records = []
    for run_id, text in texts:
        if text is None:
            continue  # a job that failed before its record was written
        try:
            records.append(RunRecord.from_dict(json.loads(text)))
        except (json.JSONDecodeError, TypeError) as err:
            raise DataError(f"MLflow run {run_id}: {RECORD_ARTIFACT} is not a run record ({err})") from None
    return sorted(records, key=lambda r: r.job_id)


def _artifact_text(client: Any, run_id: str) -> str | None:
    """The run's ``run_record.json`` as text, or None when the run has no such artifact."""
    import tempfile

    if not any(f.path == RECORD_ARTIFACT for f in client.list_artifacts(run_id)):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return Path(client.download_artifacts(run_id, RECORD_ARTIFACT, tmp)).read_text(encoding="utf-8")


def _check(raw: Any, key: str, kinds: tuple[type, ...], path: Path, optional: bool = False) -> Any:
    value = raw.get(key) if isinstance(raw, dict) else None
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise DataError(f"{path}: key {key!r} must be {names}{' or null' if optional else ''}, got {value!r}")
    return value


def read_tuning_summary(path: Path) -> TuningSummary:
    """Parse and validate one ``summary.json`` (schema in the module docstring)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read tuning summary {path}: {err}") from None
    if isinstance(raw, dict) and "schema" in raw and "best_value" not in raw:
        raw = _from_bench_tune(raw)
    number = (int, float)
    trials = _check(raw, "trials", (list,), path)
    for i, trial in enumerate(trials):
        where = path.with_name(f"{path.name}: trials[{i}]")
        _check(trial, "number", (int,), where)
        _check(trial, "state", (str,), where)
        _check(trial, "value", number, where, optional=True)
        _check(trial, "params", (dict,), where)
    direction = _check(raw, "direction", (str,), path)
    if direction not in ("maximize", "minimize"):
        raise DataError(f"{path}: key 'direction' must be 'maximize' or 'minimize', got {direction!r}")
    default = _check(raw, "default_value", number, path, optional=True)
    best = _check(raw, "best_value", number, path, optional="schema" in raw)
    tests = [_check(raw, k, number, path, optional=True) for k in ("default_test", "best_test")]
    return TuningSummary(**_tune_extras(raw, path),
        study=_check(raw, "study", (str,), path), suite=_check(raw, "suite", (str,), path),
        method=_check(raw, "method", (str,), path), direction=direction, metric=_check(raw, "metric", (str,), path),
        best_params=_check(raw, "best_params", (dict,), path),
        best_value=None if best is None else float(best), default_value=None if default is None else float(default),
        trials=list(trials), path=str(path), variant=str(raw.get("variant") or ""),
        default_test=tests[0], best_test=tests[1], best_is_default=bool(raw.get("best_is_default", False)),
    )


def _tune_extras(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """``bench tune``'s best trial number, override file, plot files and importances (all optional)."""
    number = _check(raw, "best_number", (int,), path, optional=True)
    importance = _check(raw, "importance", (dict,), path, optional=True) or {}
    where = path.with_name(f"{path.name}: importance")
    for name in importance:
        _check(importance, name, (int, float), where)
    plots = _check(raw, "plots", (dict,), path, optional=True) or {}
    return {"best_number": number, "overrides_file": str(raw.get("overrides_file") or ""),
            "plots": {str(k): str(v) for k, v in plots.items() if v},
            "importance": dict(sorted(((str(k), float(v)) for k, v in importance.items()), key=lambda kv: -kv[1]))}


def load_tuning(tuning_dir: Path | None) -> list[TuningSummary]:
    """Every ``<tuning_dir>/<study>/summary.json``, sorted by study name; [] when the folder is absent."""
    if tuning_dir is None or not Path(tuning_dir).is_dir():
        return []
    summaries = [read_tuning_summary(p) for p in sorted(Path(tuning_dir).glob("*/summary.json"))]
    return sorted(summaries, key=lambda s: s.study)

"""The outputs of ``bench tune`` (schema in :mod:`bench.tuning`): summary.json, best_overrides.yaml and plots.

Beyond the schema-1 keys listed in :mod:`bench.tuning`, summary.json holds ``"importance"``: {parameter: Optuna's
importance (``optuna.importance.get_param_importances``, its default evaluator), largest first} with >= 2 completed
trials, else null, so that ``bench report`` can draw it without the study's storage.
"""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import yaml

from bench.io import atomic_write_text
from bench.tuning_space import as_nested

SUMMARY_SCHEMA = 1
STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """One row of the trial table."""
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    attrs = trial.user_attrs
    return {
        "number": trial.number, "state": trial.state.name, "value": trial.value, "params": dict(trial.params),
        "default": bool(attrs.get("bench.default")), "epochs_run": attrs.get("epochs_run"),
        "test_last": attrs.get("test_last"), "duration_s": duration, "mlflow_run_id": attrs.get("mlflow_run_id"),
    }


def _pick(trial: optuna.trial.FrozenTrial | None) -> dict[str, Any] | None:
    if trial is None:
        return None
    return {"number": trial.number, "value": trial.value, "params": dict(trial.params),
            "test_last": trial.user_attrs.get("test_last")}


def summarize_study(study, optuna_study: optuna.Study) -> dict[str, Any]:
    """The machine-readable summary (schema 1) of the whole study as stored now."""
    from bench.tuning import hide_password

    trials = optuna_study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = optuna_study.best_trial if complete else None
    default = next((t for t in complete if t.user_attrs.get("bench.default")), None)
    tune = study.base.tune
    return {
        "schema": SUMMARY_SCHEMA, "study": study.name, "storage": hide_password(study.storage_url),
        "suite": study.suite, "method": study.method, "variant": study.variant, "profile": study.profile,
        "data_kind": study.data.kind, "metric": tune.metric, "direction": study.optuna_direction,
        "objective": tune.objective,
        "val_fraction": float(tune.val_fraction), "seeds": [int(s) for s in tune.seeds],
        "trials_requested": int(tune.trials), "space": {p.path: p.to_dict() for p in study.space},
        "counts": {s: sum(t.state.name == s for t in trials) for s in STATES},
        "trials": [trial_row(t) for t in trials],
        "default": _pick(default), "best": _pick(best),
        "improvement": best.value - default.value if best is not None and default is not None else None,
        "notes": list(study.notes),
    }


def param_importances(optuna_study: optuna.Study) -> dict[str, float] | None:
    """{parameter: importance}, largest first, with >= 2 completed trials; None when Optuna cannot compute them."""
    complete = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            found = optuna.importance.get_param_importances(optuna_study)
        except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. every trial has the same parameters
            return None
    return {str(name): float(value) for name, value in found.items()}


def write_plots(optuna_study: optuna.Study, folder: Path) -> dict[str, str | None]:
    """history.png always (when a trial completed); importance.png with >= 2 completed trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    complete = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    plots: dict[str, str | None] = {"history": None, "importance": None}
    jobs = [("history", ovm.plot_optimization_history, 1), ("importance", ovm.plot_param_importances, 2)]
    for name, plot, needed in jobs:
        if len(complete) < needed:
            continue
        # optuna's plots call plt.style.use("ggplot"), which changes the process's rcParams: keep it in here
        with warnings.catch_warnings(), matplotlib.rc_context():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)  # PED-ANOVA: "importances will be equal" on flat studies
            try:
                axes = plot(optuna_study)
            except (RuntimeError, ValueError, ZeroDivisionError):  # e.g. every trial has the same parameters
                continue
            path = folder / f"{name}.png"
            axes.figure.savefig(path, dpi=120, bbox_inches="tight")
            plt.close(axes.figure)
        plots[name] = str(path)
    return plots


def write_overrides(summary: dict[str, Any], folder: Path) -> Path | None:
    """best_overrides.yaml: the best trial's values, nested, for ``bench run ... +overrides=<file>``."""
    best = summary["best"]
    if best is None:
        return None
    path = folder / "best_overrides.yaml"
    header = (f"# bench tune study {summary['study']}: best of {summary['counts']['COMPLETE']} completed trial(s), "
              f"trial {best['number']}, {summary['metric']} {best['value']:.4f} (validation split)\n"
              f"# use: bench run suite={summary['suite']} method={summary['method']} +overrides={path}\n")
    atomic_write_text(path, header + yaml.safe_dump(as_nested(best["params"]), sort_keys=True))
    return path


def write_outputs(study, optuna_study: optuna.Study, ran: int):
    """Write summary.json, best_overrides.yaml and the plots into the study folder; log them to the study run."""
    from bench.tuning import TuneOutcome

    summary = summarize_study(study, optuna_study)
    overrides = write_overrides(summary, study.folder)
    summary["overrides_file"] = str(overrides) if overrides else None
    summary["plots"] = write_plots(optuna_study, study.folder)
    summary["importance"] = param_importances(optuna_study)
    summary["written"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = study.folder / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=2, default=str))
    for item in [path, overrides, *summary["plots"].values()]:
        if item:
            study.tracker.log_artifact_file(study.mlflow_run, Path(item))
    if summary["best"] is not None:
        study.tracker.log_metrics(study.mlflow_run, {"best_value": summary["best"]["value"]})
    return TuneOutcome(path, summary, ran)


def trial_table(summary: dict[str, Any]) -> str:
    """Plain-text trial table (number, state, value, params) for the console."""
    lines = [f"{'#':>3}  {'state':<8} {'value':>8}  params"]
    for row in summary["trials"]:
        value = f"{row['value']:.2f}" if row["value"] is not None else "-"
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(row["params"].items()))
        mark = " (default)" if row["default"] else ""
        lines.append(f"{row['number']:>3}  {row['state']:<8} {value:>8}  {params}{mark}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""``bench tune suite=<s> method=<m> tune.trials=N``: an Optuna study of one (suite, method, variant).

Objective: the validation metric ``tune.metric`` (default ``val_acc``) on a stratified hold-out of the *train*
split (``suite.validation`` = ``tune.val_fraction``, split seed 0; the test split is never used for selection).
A trial's score is the mean over ``tune.seeds`` of each seed's ``tune.objective`` value (best epoch or last epoch).
Each seed runs through the normal runner path (:func:`bench.runner.run_job`), the protocol's ``on_epoch_end``
hook calls ``trial.report(value, step)`` (step = epochs this trial has trained so far, across its seeds) and
``should_prune()``; a pruned trial raises ``optuna.TrialPruned``.

Sampler: TPE, re-seeded before every trial with ``tune.sampler_seed + <number of trials in the study>`` (plus a
term from the process id while other workers' trials are RUNNING), so one worker is reproducible, a resumed study does
not replay its start-up samples and concurrent workers draw different points.
Pruner: ``median`` (MedianPruner: startup ``pruner_startup_trials``, warm-up ``pruner_warmup_epochs``), ``halving``
(SuccessiveHalvingPruner, min_resource ``pruner_warmup_epochs``), ``threshold`` (ThresholdPruner: prune once the
metric is worse than ``tune.threshold`` after the warm-up) or ``none``.
Trial 0 of a new study is the *default* config (the current values of the space's keys, enqueued, never pruned),
so the summary can compare tuned with default on the same validation split.

Storage and resume: Optuna's RDBStorage on ``tune.storage`` (default ``sqlite:///<output.dir>/tuning/optuna.db``; a
``postgresql://`` URL lets processes on several machines share one study). Running ``bench tune`` again with the same
study name and storage loads the study and runs trials until ``tune.trials`` trials are COMPLETE or PRUNED
(finished ones are never redone; trials RUNNING in other live workers count as in flight). A worker that dies leaves
its trial RUNNING; heartbeats (``tune.heartbeat_s``) let the next worker mark it FAIL once silent for
more than 2 x ``heartbeat_s`` (SQLite stamps whole seconds, so up to one second more there) and enqueue a retry
with the same parameters (``tune.retries``). A trial interrupted by Ctrl-C is marked FAIL at once and not retried.
Two workers may overshoot ``tune.trials`` by one when they check at the same instant.

MLflow: the study is one run (``bench.stage=study``); each trial a run nested under it (params = the trial's
values; closed KILLED with tag ``optuna.state=PRUNED`` when pruned); each seed a job run under its trial (KILLED too
when pruned). History/importance plots, the override file and the summary are study-run artifacts.

Outputs in ``<output.dir>/tuning/<study>/`` (written by every worker when it ends, from the whole study):
- ``best_overrides.yaml``: the best trial's values as nested config keys, for ``bench run ... +overrides=<file>``;
- ``history.png`` (optimization history), ``importance.png`` (parameter importances; skipped with < 2 completed
  trials or when Optuna cannot compute them);
- ``summary.json``, schema 1::

    {"schema": 1, "study": str, "storage": str (password hidden), "suite": str, "method": str, "variant": str,
     "profile": str, "data_kind": "real"|"synthetic", "metric": str, "direction": "maximize"|"minimize" (Optuna's),
     "objective": "best"|"last", "val_fraction": float, "seeds": [int], "trials_requested": int,
     "space": {key: {"type": "float"|"int", "low", "high", "log", "step"?} | {"type": "categorical", "choices"}},
     "counts": {"COMPLETE": int, "PRUNED": int, "FAIL": int, "RUNNING": int, "WAITING": int},
     "trials": [{"number": int, "state": str, "value": float|null (COMPLETE: the score; PRUNED: the last reported
                 epoch value), "params": {key: value}, "default": bool,
                 "epochs_run": int|null, "test_last": float|null (mean over seeds, report only, never selected on),
                 "duration_s": float|null, "mlflow_run_id": str|null}],
     "default": {"number", "value", "params", "test_last"} | null,   # trial 0 when it completed
     "best": {"number", "value", "params", "test_last"} | null,
     "improvement": best.value - default.value | null,
     "notes": [str], "overrides_file": str|null, "plots": {"history": str|null, "importance": str|null},
     "written": ISO time}
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from bench.config import CliRequest, resolve
from bench.errors import ConfigError, JobStopped
from bench.io import check_output_links
from bench.leases import Lease, acquire
from bench.metrics.base import Direction
from bench.plan import job_spec, plan_suite
from bench.pretraining import encoder_source
from bench.progress import Progress
from bench.registry import METHODS, METRICS, did_you_mean
from bench.results import HONEST
from bench.runner import ensure_writable, run_job
from bench.sources import DataSource
from bench.tracking import make_tracker
from bench.trainer import is_evaluated
from bench.tuning_space import Param, as_overrides, parse_space

DONE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
PRUNERS = ("median", "halving", "threshold", "none")
DEFAULT_ATTR = "bench.default"
MAX_FAILED_IN_A_ROW = 3  # a worker stops after this many failed trials in a row (e.g. non-finite losses)


@dataclass
class Study:
    """Everything fixed for one study: the request, the base config, data, tracking, space, paths."""

    request: CliRequest
    suite: str
    method: str
    profile: str
    variant: str
    base: DictConfig
    data: DataSource
    output_dir: Path
    folder: Path
    name: str
    storage_url: str
    space: list[Param]
    tracker: Any
    direction: Direction = Direction("max")  # of tune.metric (objective_direction)
    mlflow_run: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def optuna_direction(self) -> str:
        return self.direction.optuna


@dataclass
class TuneOutcome:
    summary_path: Path
    summary: dict[str, Any]
    ran: int


def setup_study(request: CliRequest, progress: Progress) -> Study:
    """Plan the (single) suite x method on the tuned variant (:mod:`bench.plan`: the same data, profile and
    compatibility rules as ``bench run``), the space and the storage; open the MLflow study run."""
    methods = request.methods or []
    if len(request.suites) != 1 or len(methods) != 1:
        raise ConfigError(f"bench tune takes one suite and one method, got suite={','.join(request.suites)} "
                          f"method={','.join(methods) or 'all'}.")
    suite, method = request.suites[0], methods[0]
    probe = resolve(suite, method, profile=request.profile or "paper", recipe=request.recipe,
                    overrides=request.overrides)
    variant = probe.tune.variant or probe.suite.variants[0]
    if variant not in probe.suite.variants:
        raise ConfigError(f'tune.variant "{variant}" is not a variant of suite {suite}.'
                          f"{did_you_mean(variant, list(probe.suite.variants))} Known: {list(probe.suite.variants)}.")
    plan = plan_suite(suite, request, progress.message, variants=[variant])
    profile, data, base = plan.profile, plan.data[variant], plan.configs[method]
    check_tune(base.tune)
    if "validation" not in base.suite:
        raise ConfigError(f"bench tune scores trials on a held-out part of train, but the {base.suite.protocol} "
                          f"protocol of suite {suite} has no suite.validation setting.")
    space = parse_space(base.tune.space, base)
    output_dir = ensure_writable(Path(base.output.dir).expanduser().resolve())
    check_output_links(output_dir, base.output.allow_links)
    name = base.tune.study or f"{suite}-{method}-{profile}-{variant}"
    folder = ensure_writable(output_dir / "tuning" / study_folder_name(name))
    storage_url = base.tune.storage or f"sqlite:///{output_dir / 'tuning' / 'optuna.db'}"
    tracker = make_tracker(base.tracking.enabled, base.tracking.uri, base.tracking.experiment, output_dir)
    study = Study(request, suite, method, profile, variant, base, data, output_dir, folder, name, storage_url,
                  space, tracker, objective_direction(base.tune))
    study.mlflow_run = tracker.open_run(
        f"tune/{name}", f"study {name}",
        params={"suite": suite, "method": method, "variant": variant, "profile": profile, "data_kind": data.kind,
                "tune": OmegaConf.to_container(base.tune, resolve=True)},
        tags={"bench.stage": "study", "optuna.study": name},
    )
    return study


def check_tune(tune: DictConfig) -> None:
    """The tune section's own values (the space is checked by :func:`parse_space`)."""
    if tune.trials < 1:
        raise ConfigError(f"tune.trials={tune.trials}: run at least one trial.")
    if tune.direction not in ("auto", "maximize", "minimize"):
        raise ConfigError(f'tune.direction must be "auto", "maximize" or "minimize", not "{tune.direction}".')
    if tune.objective not in ("best", "last"):
        raise ConfigError(f'tune.objective must be "best" or "last", not "{tune.objective}".')
    if tune.pruner not in PRUNERS:
        raise ConfigError(f'tune.pruner "{tune.pruner}" is unknown.{did_you_mean(tune.pruner, PRUNERS)} '
                          f"Choose from {', '.join(PRUNERS)}.")
    if not 0.0 < tune.val_fraction < 1.0:
        raise ConfigError(f"tune.val_fraction={tune.val_fraction}: the held-out part of train must lie in (0, 1).")
    if not tune.seeds:
        raise ConfigError("tune.seeds is empty: give at least one seed, e.g. tune.seeds=[0].")


def objective_direction(tune: DictConfig) -> Direction:
    """``tune.direction``, or with ``auto`` the direction of the registered metric behind ``tune.metric`` (an
    epoch-row name: ``val_acc`` -> ``acc``). Optuna maximises a target direction's score (minus the distance)."""
    if tune.direction != "auto":
        return Direction("max" if tune.direction == "maximize" else "min")
    name = tune.metric.split("_", 1)[1] if tune.metric.startswith(("val_", "test_")) else tune.metric
    if name not in METRICS:
        raise ConfigError(f'tune.direction=auto: tune.metric "{tune.metric}" names no registered metric '
                          f"({', '.join(METRICS.names())}); set tune.direction=maximize or minimize.")
    return METRICS.get(name).direction


def make_storage(url: str, heartbeat_s: int, retries: int) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with heartbeats and retry of trials whose worker died.

    Workers started together on a new database race to create its tables; the loser retries (3 tries, 1 s apart).
    """
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    url = _with_driver(url)
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries),
                )
        except Exception as err:  # noqa: BLE001 - SQLAlchemy/driver errors of many kinds
            if attempt == 2:
                raise ConfigError(f"tune.storage: cannot open the Optuna storage {hide_password(url)}: "
                                  f"{str(err).splitlines()[0]}") from None
            time.sleep(1.0)
    raise AssertionError("unreachable")


def _with_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; use psycopg2 (the test extra) when only it is installed."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def make_pruner(tune: DictConfig, direction: str) -> optuna.pruners.BasePruner:
    """The pruner of ``tune.pruner``; ``direction`` is the study's (maximize | minimize)."""
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials,
                                           n_warmup_steps=tune.pruner_warmup_epochs)
    if tune.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, tune.pruner_warmup_epochs))
    if tune.pruner == "threshold":
        bound = {"lower" if direction == "maximize" else "upper": tune.threshold}
        return optuna.pruners.ThresholdPruner(**bound, n_warmup_steps=tune.pruner_warmup_epochs)
    return optuna.pruners.NopPruner()


def hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL: show as given
        return url


def study_folder_name(name: str) -> str:
    """The study's folder under ``<output.dir>/tuning``: ``name`` with every run of other characters than letters,
    digits, ``_ . -`` replaced by ``_``. A name of dots alone (``..``) would leave that folder: a ConfigError."""
    folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    if not folder.strip("."):
        raise ConfigError(f"tune.study={name!r}: a study name needs a letter, digit, _ or - (it names the folder "
                          "<output.dir>/tuning/<study>; a name of dots alone would point outside it).")
    return folder


def opening_lock(output_dir: Path) -> Lease:
    """An exclusive lease (:mod:`bench.leases`, waited for) on ``<output.dir>/tuning/.open_study.lock`` around
    creating a study and enqueueing its default trial: two workers started together on one machine would otherwise
    both see an empty study and both enqueue the default config. Workers on other machines (a shared postgresql://
    storage) are not serialised by it."""
    return acquire(output_dir / "tuning" / ".open_study.lock")


def open_study(study: Study) -> optuna.Study:
    """Create or load the study; enqueue the default config as the first trial of a new study (under
    :func:`opening_lock`)."""
    with opening_lock(study.output_dir):
        return _open_study(study)


def _open_study(study: Study) -> optuna.Study:
    tune = study.base.tune
    storage = make_storage(study.storage_url, tune.heartbeat_s, tune.retries)
    optuna_study = optuna.create_study(
        study_name=study.name, storage=storage, load_if_exists=True, direction=study.optuna_direction,
        sampler=optuna.samplers.TPESampler(seed=tune.sampler_seed), pruner=make_pruner(tune, study.optuna_direction),
    )
    if optuna_study.direction.name.lower() != study.optuna_direction:
        raise ConfigError(f'study "{study.name}" in {hide_password(study.storage_url)} was created to '
                          f"{optuna_study.direction.name.lower()}, not {study.optuna_direction}: pick another "
                          "tune.study.")
    if not optuna_study.get_trials(deepcopy=False):
        defaults = {p.path: OmegaConf.select(study.base, p.path) for p in study.space}
        outside = [p.path for p in study.space if not p.contains(defaults[p.path])]
        if outside:
            study.notes.append(f"default config not enqueued: {', '.join(outside)} outside the space")
        else:
            optuna_study.enqueue_trial(defaults, user_attrs={DEFAULT_ATTR: True}, skip_if_exists=True)
    return optuna_study


def tune(request: CliRequest, progress: Progress) -> TuneOutcome:
    """Run trials until ``tune.trials`` are finished (COMPLETE or PRUNED) in the study; write the outputs."""
    from bench.tuning_report import write_outputs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = setup_study(request, progress)
    optuna_study = open_study(study)
    ran, failed_in_a_row = 0, 0
    try:
        while failed_in_a_row < MAX_FAILED_IN_A_ROW:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(optuna_study)  # dead workers' trials -> FAIL (+ retry)
            trials = optuna_study.get_trials(deepcopy=False)
            done = sum(t.state in DONE for t in trials)
            running = sum(t.state == optuna.trial.TrialState.RUNNING for t in trials)
            if done + running >= study.base.tune.trials:
                break
            seed = study.base.tune.sampler_seed + len(trials) + (os.getpid() * 7919 if running else 0)
            optuna_study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32,
                                                              n_startup_trials=study.base.tune.startup_trials)
            states: list[optuna.trial.TrialState] = []
            optuna_study.optimize(lambda t: run_trial(study, t, progress), n_trials=1, catch=(FloatingPointError,),
                                  callbacks=[lambda _, frozen, seen=states: seen.append(frozen.state)])
            ran += 1
            failed_in_a_row = failed_in_a_row + 1 if states == [optuna.trial.TrialState.FAIL] else 0
        if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
            study.notes.append(f"stopped after {failed_in_a_row} failed trials in a row (non-finite loss?)")
    finally:
        outcome = write_outputs(study, optuna_study, ran)
        study.tracker.close_run(study.mlflow_run)
    return outcome


class Pruned(JobStopped, optuna.TrialPruned):
    """Optuna's pruning signal that also tells the runner to close the seed's MLflow run KILLED (not FAILED)."""


def run_trial(study: Study, trial: optuna.Trial, progress: Progress) -> float:
    """One trial: resolve its config, run every ``tune.seeds`` job, return the mean objective over seeds."""
    tune = study.base.tune
    params = {p.path: p.suggest(trial) for p in study.space}
    overrides = [*study.request.overrides, f"suite.validation={tune.val_fraction}", *as_overrides(params)]
    cfg = resolve(study.suite, study.method, profile=study.profile, recipe=study.request.recipe, overrides=overrides)
    is_default = bool(trial.user_attrs.get(DEFAULT_ATTR))
    trial_run = study.tracker.open_run(
        f"tune/{study.name}/trial{trial.number}", f"trial {trial.number}{' (default)' if is_default else ''}",
        parent=study.mlflow_run, params={"trial": trial.number, **params},
        tags={"bench.stage": "trial", "optuna.study": study.name, "optuna.trial": str(trial.number)},
    )
    trial.set_user_attr("mlflow_run_id", trial_run)
    trial.set_user_attr("epochs_run", 0)  # a retried trial inherits its dead predecessor's user attributes
    progress.message(f"trial {trial.number}: {params}{' (default config)' if is_default else ''}")
    workdir = study.folder / f"work-trial{trial.number}"  # no shared parent: removing it never races a worker
    try:
        scores, tests = [], []
        for seed in tune.seeds:
            value, test_last = run_seed(study, cfg, trial, seed, trial_run, workdir, progress, is_default)
            scores.append(value)
            tests.append(test_last)
    except optuna.TrialPruned:
        study.tracker.close_run(trial_run, status="KILLED")
        raise
    except BaseException:
        study.tracker.close_run(trial_run, status="FAILED")
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    score = sum(scores) / len(scores)
    trial.set_user_attr("test_last", sum(tests) / len(tests))
    study.tracker.log_metrics(trial_run, {"value": score, "test_last": trial.user_attrs["test_last"]})
    study.tracker.close_run(trial_run)
    progress.message(f"trial {trial.number}: {tune.metric} {score:.2f}")
    return score


def run_seed(study: Study, cfg: DictConfig, trial: optuna.Trial, seed: int, trial_run: str | None, workdir: Path,
             progress: Progress, is_default: bool) -> tuple[float, float]:
    """One job through :func:`run_job`, reporting ``tune.metric`` per epoch; (objective value, last test acc)."""
    tune = study.base.tune
    method_cls = METHODS.get(study.method)
    encoder = encoder_source(cfg, method_cls, study.output_dir, study.tracker, study.mlflow_run, progress,
                             progress.message)
    offset = int(trial.user_attrs.get("epochs_run", 0))
    trainer_cfg = OmegaConf.to_object(cfg.trainer)

    def report(epoch: int, row: dict[str, float]) -> None:
        if tune.metric not in row and not is_evaluated(epoch, trainer_cfg):
            return  # the reference runner's epoch 0: trained at the warm-up's first lr, never evaluated
        if tune.metric not in row:
            raise ConfigError(f'tune.metric "{tune.metric}" is not among the epoch metrics of suite '
                              f"{study.suite} ({', '.join(sorted(row))}).")
        trial.set_user_attr("epochs_run", offset + epoch + 1)
        trial.report(optuna_value(study.direction, float(row[tune.metric])), offset + epoch)
        if not is_default and trial.should_prune():
            raise Pruned(f"pruned at epoch {epoch} ({tune.metric} {row[tune.metric]:.2f})")

    job = job_spec(cfg, study.variant, seed, study.data, encoder, workdir, f"tune/{study.name}/trial{trial.number}")
    record = run_job(job, study.tracker, trial_run, progress, epoch_hook=report)
    curve = [optuna_value(study.direction, row[tune.metric]) for row in record.epochs if tune.metric in row]
    pick = min if study.optuna_direction == "minimize" else max
    return (pick(curve) if tune.objective == "best" else curve[-1]), float(record.headline.value(HONEST))


def optuna_value(direction: Direction, value: float) -> float:
    """What Optuna sees: the value itself (max / min), or the target direction's score (minus the distance)."""
    return value if direction.kind != "target" else direction.score(value)

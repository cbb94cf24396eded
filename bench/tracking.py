"""MLflow tracking: the sweep as nested runs (sweep > method x variant > seed; pre-training under the sweep).

Every run carries a ``bench.key`` tag (a stable identity such as ``sweep/<hash>/point_mae/objbg/seed0``); opening a
run whose key already exists in the experiment reuses it, so a sweep that is run again after a crash creates no
duplicate runs. The client API (not the fluent one) is used, so no global "active run" state leaks between jobs.

Default store: ``sqlite:///<output.dir>/mlflow.db`` with artifacts in ``<output.dir>/mlartifacts`` (no server);
``tracking.uri`` or ``MLFLOW_TRACKING_URI`` points elsewhere, e.g. ``http://host:5000``: an ``mlflow server`` run with
``--serve-artifacts --artifacts-destination <folder|s3://...>`` (artifacts are uploaded through the server).

Several processes (``executor.workers``, Slurm array tasks) write to one store: each builds its own tracker
(:func:`tracker_for`, one per process) and attaches its job run to the group run id it is given. SQLite allows one
writer at a time and answers "database is locked" to the others, so every store call is retried with
jittered back-off (up to ``LOCK_RETRY_S`` seconds) on that error.

Names and tags, for filtering: runs are named ``point_mae · scanobjectnn/objbg · seed 0`` (job), ``point_mae ·
scanobjectnn/objbg`` (method x variant), ``point_mae · pretrain`` (pre-training; ``· stage <name>`` per declared
stage), parts joined by :data:`NAME_SEP`. Tags: ``bench.stage`` (the run's kind: sweep | group | job | pretrain |
pretrain_stage), ``bench.suite``, ``bench.method``, ``bench.variant``, ``bench.seed``, ``bench.data_kind``; a
pre-training run also ``bench.pretrain_stage`` (its stage name(s)), ``bench.pretrain_hash`` and, once trained, its
checkpoint as tags (``bench.checkpoint`` path, ``bench.checkpoint_sha256``, ``bench.checkpoint_bytes``; the ``.pth``
itself is not uploaded: it can be hundreds of MB). In the UI: ``tags.bench.seed = '0' and tags.bench.variant =
'objbg'``. The leaderboard files are artifacts ``leaderboard/leaderboard.<fmt>`` of each sweep run
(:func:`log_files`, called once the CLI has written them).

Several processes on one output folder (two ``bench run`` or ``bench tune`` started together): on a ``sqlite:``
store, creating the store (MLflow's schema migration), finding-or-creating a run by its key and logging a group's
statistics happen under an exclusive ``fcntl.flock`` on ``<db file>.lock`` beside the database
(:mod:`bench.leases`), so the migration runs once and no key gets two runs. A server store (``http://``) is not
serialised by it: start it before the processes that share it.

Re-runs: reopening a run that had FINISHED keeps it FINISHED with its first end time, so its Duration stays the
work it recorded (running a finished sweep again does no new work), and tags the visit ``bench.resumed_at`` (UTC, ISO
8601); closing it FINISHED again changes nothing. A run reopened in any other state (a crash, a kill) is RUNNING
again, is tagged the same way, and ends when it is closed.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.leases import acquire

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
MAX_PARAM_LENGTH = 6000
PARENT_TAG = "mlflow.parentRunId"
KEY_TAG = "bench.key"
RESUMED_TAG = "bench.resumed_at"
NAME_SEP = " · "
LOCK_RETRY_S = 120.0
_TRACKERS: dict[tuple[str, str], MlflowTracker] = {}


def default_uri(output_dir: Path, configured: str | None) -> str:
    """``tracking.uri`` if set, else ``MLFLOW_TRACKING_URI``, else the SQLite file in the output folder."""
    if configured:
        return configured
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dict -> {"a.b.c": "value"} with values as strings (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


class NullTracker:
    """Tracking disabled (``tracking.enabled=false``): same interface, records only."""

    uri = None

    def open_run(self, key: str, name: str, parent: str | None = None, params: dict | None = None,
                 tags: dict | None = None) -> str | None:
        return None

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact_text(self, run_id: str | None, text: str, artifact_file: str) -> None:
        pass

    def log_artifact_file(self, run_id: str | None, path: Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        pass

    def tag_checkpoint(self, run_id: str | None, path: Path) -> None:
        pass

    def close_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        pass

    def close_if_running(self, key: str, checkpoint: Path | None = None) -> str | None:
        return None

    def log_changed_metrics(self, run_id: str | None, metrics: dict[str, float]) -> dict[str, float]:
        return {}


class MlflowTracker:
    """Thin, resumable wrapper over :class:`mlflow.MlflowClient`."""

    def __init__(self, uri: str, experiment: str, artifact_root: Path | None = None) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException

        self.uri = uri
        self.experiment = experiment
        try:
            with store_lock(uri):  # MLflow migrates a fresh SQLite store on first use: once, not once per process
                self._client = _retry(lambda: mlflow.MlflowClient(tracking_uri=uri))
                found = _retry(lambda: self._client.get_experiment_by_name(experiment))
                if found is None:
                    location = artifact_root.resolve().as_uri() if artifact_root and uri.startswith("sqlite") else None
                    self.experiment_id = _retry(lambda: self._client.create_experiment(experiment, location))
                else:
                    self.experiment_id = found.experiment_id
        except MlflowException as err:
            raise ConfigError(f"cannot open the MLflow store at {uri}: {err.message}") from None

    def open_run(self, key: str, name: str, parent: str | None = None, params: dict | None = None,
                 tags: dict | None = None) -> str:
        """Return the run with tag ``bench.key == key`` (reopened), or create it with params and tags (the search
        and the creation under :func:`store_lock`, so two processes opening one key get one run)."""
        with store_lock(self.uri):
            existing = self._find(key)
            if existing is not None:
                self._reopen(existing, name, tags or {})
                return existing.info.run_id
            all_tags = {KEY_TAG: key, **(tags or {})}
            if parent:
                all_tags[PARENT_TAG] = parent
            run = _retry(lambda: self._client.create_run(self.experiment_id, run_name=name, tags=all_tags))
        if params:
            self._log_params(run.info.run_id, flatten(params))
        return run.info.run_id

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        if run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if _is_number(v)]
        for chunk in _chunks(batch, 900):
            _retry(lambda chunk=chunk: self._client.log_batch(run_id, metrics=chunk))

    def log_artifact_text(self, run_id: str | None, text: str, artifact_file: str) -> None:
        if run_id is not None:
            _retry(lambda: self._client.log_text(run_id, text, artifact_file))

    def log_artifact_file(self, run_id: str | None, path: Path, artifact_path: str | None = None) -> None:
        if run_id is not None:
            _retry(lambda: self._client.log_artifact(run_id, str(path), artifact_path))

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if run_id is not None and tags:
            items = [RunTag(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in tags.items()]
            _retry(lambda: self._client.log_batch(run_id, tags=items))

    def tag_checkpoint(self, run_id: str | None, path: Path) -> None:
        """The checkpoint ``path`` as tags of ``run_id``: absolute path, sha256 and size (:func:`checkpoint_tags`)."""
        if run_id is not None:
            self.set_tags(run_id, checkpoint_tags(path))

    def close_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        """End the run with ``status``; a run that is FINISHED already (reopened by a re-run) keeps its end time."""
        if run_id is None:
            return
        if status == "FINISHED" and _retry(lambda: self._client.get_run(run_id)).info.status == "FINISHED":
            return
        _retry(lambda: self._client.set_terminated(run_id, status=status))

    def close_if_running(self, key: str, checkpoint: Path | None = None) -> str | None:
        """Close FINISHED the run with tag ``bench.key == key`` if it is RUNNING (its process was killed after its
        work was saved), tagged with ``checkpoint`` (:meth:`tag_checkpoint`) when given; its id, or None when
        there is no such run or it is not RUNNING."""
        run = self._find(key)
        if run is None or run.info.status != "RUNNING":
            return None
        if checkpoint is not None:
            self.tag_checkpoint(run.info.run_id, checkpoint)
        self.close_run(run.info.run_id)
        return run.info.run_id

    def log_changed_metrics(self, run_id: str | None, metrics: dict[str, float]) -> dict[str, float]:
        """Log (step 0) only those of ``metrics`` whose latest value in the run differs or is absent, and return
        them: a re-run that computes the same values, or a second process doing so, adds no duplicate history."""
        if run_id is None:
            return {}
        with store_lock(self.uri):
            latest = _retry(lambda: self._client.get_run(run_id)).data.metrics
            changed = {k: v for k, v in metrics.items() if _is_number(v) and latest.get(k) != float(v)}
            self.log_metrics(run_id, changed)
        return changed

    def _find(self, key: str):
        """The run with tag ``bench.key == key`` in this experiment, or None."""
        found = _retry(lambda: self._client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'", max_results=1
        ))
        return found[0] if found else None

    def _reopen(self, run, name: str, tags: dict) -> None:
        """A FINISHED run stays FINISHED (first end time kept); any other is RUNNING again. Both get today's name
        and tags and ``bench.resumed_at`` (runs from older versions gain the names and tags they lacked)."""
        run_id = run.info.run_id
        status = None if run.info.status == "FINISHED" else "RUNNING"
        _retry(lambda: self._client.update_run(run_id, status=status, name=name))
        self.set_tags(run_id, {**tags, RESUMED_TAG: datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(params.items())]
        for chunk in _chunks(items, 90):
            _retry(lambda chunk=chunk: self._client.log_batch(run_id, params=chunk))


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///<path>`` URI (relative paths as SQLite reads them, from the current
    folder; any ``?query`` dropped); None for another scheme or an in-memory database."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """An exclusive ``fcntl.flock`` on ``<db file>.lock`` beside a SQLite store for the body (waiting for it);
    nothing for other stores."""
    db = sqlite_file(uri)
    with acquire(db.with_name(db.name + ".lock")) if db is not None else nullcontext():
        yield


def _retry(call: Callable[[], Any], budget_s: float | None = None) -> Any:
    """``call()``, retried with jittered exponential back-off while SQLite answers "database is locked"."""
    deadline = time.monotonic() + (LOCK_RETRY_S if budget_s is None else budget_s)
    delay = 0.05
    while True:
        try:
            return call()
        except Exception as err:
            if "database is locked" not in str(err) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


def run_name(*parts: str) -> str:
    """A run's display name: its parts joined by :data:`NAME_SEP` (``point_mae · scanobjectnn/objbg · seed 0``)."""
    return NAME_SEP.join(parts)


def checkpoint_tags(path: Path) -> dict[str, str]:
    """``bench.checkpoint`` (absolute path), ``bench.checkpoint_sha256`` and ``bench.checkpoint_bytes`` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bench.checkpoint": str(Path(path).resolve()), "bench.checkpoint_sha256": digest.hexdigest(),
            "bench.checkpoint_bytes": str(Path(path).stat().st_size)}


def log_files(uri: str | None, experiment: str, run_ids: Iterable[str | None], paths: dict[str, Path],
              artifact_path: str) -> None:
    """Every existing file of ``paths`` (e.g. the leaderboard by format) as an artifact ``<artifact_path>/<name>``
    of each run of ``run_ids``, through this process's tracker; ``uri`` None (tracking disabled): nothing."""
    tracker = tracker_for(uri, experiment)
    files = [Path(p) for p in paths.values() if Path(p).is_file()]
    for run_id in run_ids:
        for path in files:
            tracker.log_artifact_file(run_id, path, artifact_path)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and value == value  # drops NaN


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def make_tracker(enabled: bool, uri: str | None, experiment: str, output_dir: Path):
    """An MlflowTracker on the resolved URI, or a NullTracker when tracking is disabled."""
    if not enabled:
        return NullTracker()
    tracker = MlflowTracker(default_uri(output_dir, uri), experiment, artifact_root=output_dir / "mlartifacts")
    _TRACKERS[(tracker.uri, experiment)] = tracker
    return tracker


def tracker_for(uri: str | None, experiment: str) -> MlflowTracker | NullTracker:
    """This process's tracker on an already resolved ``uri`` (None: tracking disabled); a worker process
    running many jobs connects once. The experiment exists already (the sweep's process created it)."""
    if uri is None:
        return NullTracker()
    if (uri, experiment) not in _TRACKERS:
        _TRACKERS[(uri, experiment)] = MlflowTracker(uri, experiment)
    return _TRACKERS[(uri, experiment)]

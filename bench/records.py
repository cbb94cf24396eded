"""RunRecord: one JSON file per finished job, the ledger that reports and resume read.

Records are the source of truth: the leaderboard is generated from them (or from MLflow, which receives the same
content), a sweep that is run again skips every job whose record exists, and nothing is typed by hand.

Statistic conventions (per job; aggregated over seeds by :mod:`reports`):
- ``best``: the maximum over epochs of the per-epoch test metric (the papers' selection, on the test split);
- ``last``: the metric at the last epoch (no selection);
- ``vote``: one ``vote.times``-vote pass (logits averaged) on the ``vote.checkpoint`` model;
- ``vote_best_of_r``: the best of ``vote.repeats`` such passes (the reference repos' ``--test`` practice).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import DataError

SCHEMA_VERSION = 1


@dataclass
class RunRecord:
    """Everything needed to interpret and reproduce one job's numbers."""

    job_id: str  # "<suite>/<variant>/<method>/seed<seed>"
    sweep_id: str
    method: str
    suite: str
    suite_version: int
    variant: str
    seed: int
    protocol: str
    data_kind: str  # "real" | "synthetic"
    profile: str
    recipe: str  # "method" (the method's own published recipe) | "shared"
    metric: str  # name of the headline metric, e.g. "acc"
    higher_is_better: bool
    epochs: list[dict[str, float]]  # one row per epoch: {"epoch", "train_loss", "lr", "test_<metric>", ...}
    final: dict[str, float]  # {"last", "best", "best_epoch", "vote", "vote_best_of_r", "vote_repeats", ...}
    selection: dict[str, str]  # human-readable rule behind each statistic
    config: dict[str, Any]  # the fully resolved config
    env: dict[str, Any]  # git commit, torch / CUDA versions, ops backend, device, host
    wall_time_s: float
    config_hash: str = ""  # identity of the fine-tuning config (seed and variant excluded)
    pretrain: dict[str, Any] = field(default_factory=dict)  # {"source": "import|cache|pretrained|none", ...}
    mlflow_run_id: str | None = None
    created: str = ""
    command: str = ""  # the `bench ...` command line that ran the job ("" in records written before it existed)
    # the protocol's further facts (JobResult.extra minus the checkpoint report, which is in ``pretrain``): e.g.
    # ``deviations`` from the reference, ``resumed_from_epoch``, the SVM's ``reference_c_source``
    details: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


_COMMAND = {"line": ""}


def set_command(line: str) -> None:
    """Remember the current ``bench`` command line (set by :func:`bench.cli.main`); new RunRecords carry it."""
    _COMMAND["line"] = line


def current_command() -> str:
    """The command line given to :func:`set_command` ("" when the runner is used without the CLI)."""
    return _COMMAND["line"]


def record_path(records_dir: Path, job_id: str) -> Path:
    """Where the record of ``job_id`` lives: ``<records_dir>/<job_id with / -> __>.json``."""
    return records_dir / (job_id.replace("/", "__") + ".json")


def write_record(records_dir: Path, record: RunRecord) -> Path:
    """Write atomically (temp file + rename), so a killed process never leaves half a record."""
    path = record_path(records_dir, record.job_id)
    atomic_write_text(path, record.to_json())
    return path


def read_record(path: Path) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise DataError(f"cannot read run record {path}: {err}") from err


def load_records(records_dir: Path) -> list[RunRecord]:
    """Every record below ``records_dir`` (recursively), sorted by job id."""
    if not records_dir.exists():
        return []
    records = [read_record(p) for p in sorted(records_dir.rglob("*.json"))]
    return sorted(records, key=lambda r: r.job_id)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

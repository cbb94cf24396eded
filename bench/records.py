"""RunRecord: one JSON file per finished job, the ledger that reports and resume read.

Records are the source of truth: the leaderboard is generated from them (or from MLflow, which receives the same
content), a sweep that is run again skips every job whose record exists, and nothing is typed by hand.

Schema 2 (``schema_version: 2``): ``results`` is a list of typed metric results (:mod:`bench.results`: name,
registered metric, direction, unit, display scale and named statistics with their selection rule and role), the
headline first; ``epochs`` is the optional per-epoch history (empty for evaluation-only jobs).

Schema 1 (``schema: 1``, written before the core refactor) had ``final`` (a flat dict of statistics),
``selection`` (rules by statistic name), ``metric`` and ``higher_is_better``. Such records still load: the
headline's ``last`` was its honest statistic, ``best`` its paper one, ``vote`` one voting pass and
``vote_best_of_r`` the best of R passes; every other report metric ``m`` of ``suite.report.metrics`` had
``m_last`` / ``m_best``. They are read into schema-2 results with exactly those roles, so they report as before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import DataError
from bench.io import atomic_write_text
from bench.results import HONEST, INFO, PAPER, VOTE, VOTE_REPEATED, MetricResult, Statistic

SCHEMA_VERSION = 2
#: schema-1 statistic names of the headline and their roles (only for reading old records)
_V1_ROLES = {"last": HONEST, "best": PAPER, "vote": VOTE, "vote_best_of_r": VOTE_REPEATED}


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
    metric: str  # name of the headline metric (results[0].name), e.g. "acc"
    results: list[MetricResult]  # headline first
    epochs: list[dict[str, float]]  # one row per epoch: {"epoch", "train_loss", "lr", "test_<metric>", ...}; may be []
    config: dict[str, Any]  # the fully resolved config
    env: dict[str, Any]  # git commit, torch / CUDA versions, ops backend, device, host, deterministic
    wall_time_s: float
    config_hash: str = ""  # identity of the fine-tuning config (seed and variant excluded)
    pretrain: dict[str, Any] = field(default_factory=dict)  # {"source": "import|cache|pretrained|none", ...}
    mlflow_run_id: str | None = None
    created: str = ""
    command: str = ""  # the `bench ...` command line that ran the job
    # the protocol's further facts (JobResult.extra minus the checkpoint report, which is in ``pretrain``)
    details: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def result(self, name: str) -> MetricResult | None:
        """The metric result called ``name``, or None."""
        return next((r for r in self.results if r.name == name), None)

    @property
    def headline(self) -> MetricResult:
        return self.results[0]

    def flat(self) -> dict[str, float]:
        """Every statistic as one flat mapping, for scripts: the headline's by statistic name (``best``) and every
        result's as ``<metric>_<statistic>`` (``acc_best``, ``room_miou_last``), as schema 1 named them."""
        out = {}
        for i, result in enumerate(self.results):
            for name, stat in result.statistics.items():
                out[f"{result.name}_{name}"] = stat.value
                if i == 0:
                    out[name] = stat.value
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        version = data.get("schema_version", data.get("schema", 1))
        if version == 1:
            data = upgrade_v1(data)
        elif version != SCHEMA_VERSION:
            raise TypeError(f"unknown record schema version {version!r} (this harness reads 1 and 2)")
        known = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in data.items() if k in known}
        fields["results"] = [r if isinstance(r, MetricResult) else MetricResult.from_dict(r) for r in data["results"]]
        return cls(**fields)


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record's fields as schema 2 (see the module docstring); the numbers are not touched."""
    final, rules = dict(data.get("final") or {}), dict(data.get("selection") or {})
    headline = data["metric"]
    direction = "max" if data.get("higher_is_better", True) else "min"
    suite = (data.get("config") or {}).get("suite") or {}
    report = suite.get("report") or {}
    others = [m for m in (report.get("metrics") or []) if m != headline]

    def stat(key: str, role: str) -> Statistic:
        return Statistic(final[key], rules.get(key, ""), role)

    results = []
    for name in others:
        stats = {s: stat(f"{name}_{s}", {"last": HONEST, "best": PAPER}[s]) for s in ("last", "best")
                 if f"{name}_{s}" in final}
        if stats:
            results.append(MetricResult(name, name, direction, "%", 1.0, stats))
    taken = {f"{r.name}_{s}" for r in results for s in r.statistics}
    head = {key: stat(key, _V1_ROLES.get(key, INFO)) for key in final if key not in taken}
    if "vote_best_of_r" in head and "vote_repeats" in final:
        head["vote_best_of_r"].repeats = int(final["vote_repeats"])
    upgraded = {k: v for k, v in data.items() if k not in ("final", "selection", "higher_is_better", "schema")}
    upgraded["results"] = [MetricResult(headline, headline, direction, "%", 1.0, head), *results]
    upgraded["schema_version"] = SCHEMA_VERSION
    return upgraded


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
    """Write atomically (:mod:`bench.io`), so a killed process never leaves half a record."""
    path = record_path(records_dir, record.job_id)
    atomic_write_text(path, record.to_json())
    return path


def read_record(path: Path) -> RunRecord:
    try:
        return RunRecord.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError, KeyError, ValueError) as err:
        raise DataError(f"cannot read run record {path}: {err}") from err


def load_records(records_dir: Path) -> list[RunRecord]:
    """Every record below ``records_dir`` (recursively), sorted by job id."""
    if not records_dir.exists():
        return []
    records = [read_record(p) for p in sorted(records_dir.rglob("*.json"))]
    return sorted(records, key=lambda r: r.job_id)

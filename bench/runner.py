"""The sweep runner: the only place that loops over jobs.

    plan (suite x methods x variants x seeds) -> encoder weights per method (import | cache | pre-train)
    -> each job through its suite's protocol -> RunRecord (the ledger) + MLflow -> leaderboard

Resume: a job whose RunRecord exists is skipped; an interrupted job continues from its ``last.pt``; MLflow runs
are found again by their ``bench.key`` tag. Data kind: a job is "synthetic" when its fine-tuning data or the
pre-training data behind its encoder is the stand-in; such rows never share a table with real ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig

from bench.api import JobContext
from bench.config import (
    CliRequest,
    config_hash,
    dataset_variant,
    dump_yaml,
    finetune_hash,
    resolve,
    to_plain,
    variant_config,
)
from bench.env import environment
from bench.errors import OutputError
from bench.pretraining import EncoderSource, encoder_source
from bench.progress import Progress
from bench.records import RunRecord, load_records, read_record, record_path, write_record
from bench.registry import METHODS, PROTOCOLS
from bench.sources import REAL, SYNTHETIC, DataSource, locate
from bench.tracking import make_tracker
from bench.trainer import resolve_device


@dataclass
class SweepOutcome:
    output_dir: Path
    records: list[RunRecord] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    leaderboard: dict[str, Path] = field(default_factory=dict)
    tracking_uri: str | None = None


def ensure_writable(folder: Path) -> Path:
    """Create ``folder`` and prove it is writable, or raise OutputError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".bench-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise OutputError(
            f"cannot write to the output folder {folder}: {err.strerror or err}. Set output.dir=<writable folder>."
        ) from None
    return folder


def run(request: CliRequest, progress: Progress) -> SweepOutcome:
    """Run every suite of ``request``; write records, MLflow runs and the leaderboard."""
    outcome: SweepOutcome | None = None
    for suite in request.suites:
        outcome = run_suite(suite, request, progress, outcome)
    assert outcome is not None
    from reports.render import write_leaderboard

    outcome.leaderboard = write_leaderboard(load_records(outcome.output_dir / "records"),
                                            outcome.output_dir / "leaderboard")
    return outcome


def run_suite(suite: str, request: CliRequest, progress: Progress, outcome: SweepOutcome | None) -> SweepOutcome:
    probe = resolve(suite, request.methods[0], profile=request.profile or "paper", recipe=request.recipe,
                    overrides=request.overrides)
    variants = [dataset_variant(probe, v) for v in probe.suite.variants]
    data = locate(probe.suite.dataset, variants, probe.data.root, probe.data.source, probe.data.standin_size)
    if data.note:
        progress.message(data.note)
    profile = request.profile or ("paper" if data.kind == REAL else "demo")
    configs = {m: resolve(suite, m, profile=profile, recipe=request.recipe, overrides=request.overrides)
               for m in request.methods}
    output_dir = ensure_writable(Path(probe.output.dir).expanduser().resolve())
    outcome = outcome or SweepOutcome(output_dir)
    tracker = make_tracker(probe.tracking.enabled, probe.tracking.uri, probe.tracking.experiment, output_dir)
    outcome.tracking_uri = tracker.uri
    sweep_key = config_hash([suite, request.methods, profile, request.recipe, request.overrides, data.kind])
    sweep_run = tracker.open_run(
        f"sweep/{sweep_key}", f"{suite} sweep ({profile}, {data.kind})",
        params={"suite": suite, "methods": ",".join(request.methods), "profile": profile, "recipe": request.recipe,
                "overrides": " ".join(request.overrides), "data_kind": data.kind},
        tags={"bench.stage": "sweep", "bench.suite": suite},
    )
    first = configs[request.methods[0]]
    progress.message(f"{suite}: {len(request.methods)} method(s) x {len(first.suite.variants)} variant(s) x "
                     f"{len(first.seeds)} seed(s), profile {profile}, {data.kind} data")
    for method in request.methods:
        cfg = configs[method]
        encoder = encoder_source(cfg, METHODS.get(method), output_dir, tracker, sweep_run, progress, progress.message)
        run_method(cfg, data, encoder, output_dir, tracker, sweep_run, sweep_key, progress, outcome)
    tracker.close_run(sweep_run)
    return outcome


def run_method(cfg: DictConfig, data: DataSource, encoder: EncoderSource, output_dir: Path, tracker, sweep_run,
               sweep_key: str, progress: Progress, outcome: SweepOutcome) -> None:
    """Every variant x seed of one method; aggregates per variant go to the method x variant MLflow run."""
    method = cfg.method.name
    fhash = finetune_hash(cfg)
    kind = SYNTHETIC if SYNTHETIC in (data.kind, encoder.data_kind) else REAL
    records_dir = output_dir / "records" / cfg.suite.name / f"{method}-{fhash}"
    for variant in cfg.suite.variants:
        vcfg = variant_config(cfg, variant)
        group_run = tracker.open_run(
            f"{sweep_key}/{method}/{variant}/{fhash}", f"{method} / {variant}", parent=sweep_run,
            params=to_plain(vcfg), tags={"bench.stage": "group", "bench.method": method, "bench.variant": variant},
        )
        records = []
        for seed in cfg.seeds:
            job_id = f"{cfg.suite.name}/{variant}/{method}/seed{seed}"
            path = record_path(records_dir, job_id)
            if path.exists():
                records.append(read_record(path))
                outcome.skipped += 1
                continue
            workdir = output_dir / "work" / cfg.suite.name / f"{method}-{fhash}" / variant / f"seed{seed}"
            job = JobSpec(vcfg, variant, seed, job_id, fhash, sweep_key, kind, data, encoder, workdir)
            record = run_job(job, tracker, group_run, progress)
            write_record(records_dir, record)
            records.append(record)
            outcome.ran += 1
            progress.message(_job_line(record))
        tracker.log_metrics(group_run, aggregate(records))
        tracker.close_run(group_run)
        outcome.records.extend(records)


@dataclass
class JobSpec:
    cfg: DictConfig
    variant: str
    seed: int
    job_id: str
    fhash: str
    sweep_key: str
    kind: str
    data: DataSource
    encoder: EncoderSource
    workdir: Path


def run_job(job: JobSpec, tracker, group_run: str | None, progress: Progress) -> RunRecord:
    """One fine-tuning job through its protocol, tracked as a seed run; returns its RunRecord."""
    cfg = job.cfg
    plain = to_plain(cfg)
    run_id = tracker.open_run(
        f"{job.sweep_key}/{job.job_id}/{job.fhash}", f"seed {job.seed}", parent=group_run, params=plain,
        tags={"bench.stage": "job", "bench.job_id": job.job_id, "bench.data_kind": job.kind},
    )
    method_cls = METHODS.get(cfg.method.name)
    ctx = JobContext(
        cfg=cfg, method_cls=method_cls, variant=job.variant, seed=job.seed, data_root=job.data.root,
        workdir=job.workdir, encoder_ckpt=job.encoder.ckpt, progress=progress,
        on_epoch_end=lambda epoch, row: tracker.log_metrics(run_id, row, step=epoch),
    )
    tic = time.perf_counter()
    try:
        result = PROTOCOLS.get(cfg.suite.protocol)().run(ctx)
    except BaseException:
        tracker.close_run(run_id, status="FAILED")
        raise
    record = RunRecord(
        job_id=job.job_id, sweep_id=job.sweep_key, method=method_cls.name, suite=cfg.suite.name,
        suite_version=cfg.suite.version, variant=job.variant, seed=job.seed, protocol=cfg.suite.protocol,
        data_kind=job.kind, profile=cfg.profile, recipe=cfg.recipe, metric=result.metric,
        higher_is_better=result.higher_is_better, epochs=result.epochs, final=result.final,
        selection=result.selection, config=plain, env=environment(resolve_device(cfg.trainer.device)),
        wall_time_s=time.perf_counter() - tic, config_hash=job.fhash,
        pretrain={**job.encoder.to_dict(), "load_report": result.extra.get("checkpoint_load")},
        mlflow_run_id=run_id, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    tracker.log_metrics(run_id, {f"final_{k}": v for k, v in result.final.items()})
    tracker.log_artifact_text(run_id, record.to_json(), "run_record.json")
    tracker.log_artifact_text(run_id, dump_yaml(cfg), "config.yaml")
    tracker.close_run(run_id)
    (job.workdir / "last.pt").unlink(missing_ok=True)
    return record


def aggregate(records: list[RunRecord]) -> dict[str, float]:
    """Per method x variant, the leaderboard's statistics (paper, honest mean/std, vote) for the MLflow group run."""
    from reports.leaderboard import summarize

    if not records:
        return {}
    (row,) = summarize(records).to_dict("records")  # one method x variant x config: exactly one row
    keys = ("paper", "honest_mean", "honest_std", "n_seeds", "vote_mean", "vote_std", "vote_best_of_r")
    return {k: float(row[k]) for k in keys if row.get(k) is not None and row[k] == row[k]}


def _job_line(record: RunRecord) -> str:
    f = record.final
    vote = f"  vote {f['vote']:.2f}" if "vote" in f else ""
    return (f"  {record.job_id}: last {f['last']:.2f}  best {f['best']:.2f} (epoch {int(f['best_epoch'])})"
            f"{vote}  [{record.wall_time_s:.0f} s]")

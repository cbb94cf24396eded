"""The sweep runner: the only place that loops over jobs.

    plan (suite x methods x variants x seeds) -> encoder weights per method (import | cache | pre-train)
    -> each job through its suite's protocol -> RunRecord (the ledger) + MLflow -> leaderboard

Resume: a job whose RunRecord exists is skipped; an interrupted job continues from its ``last.pt``; MLflow runs
are found again by their ``bench.key`` tag. Data kind: a job is "synthetic" when its fine-tuning data or the
pre-training data behind its encoder is the stand-in; such rows never share a table with real ones.

Where jobs run is the executor's business (``executor.*``, :mod:`bench.executors`: in-process, a process pool or
one Slurm array per sweep); every method is pre-trained before the jobs are dispatched, and the group statistics
are computed from the records afterwards. Under ``torchrun`` every rank plans the same jobs and trains each one
together; rank 0 alone tracks, writes records and the leaderboard.
"""

from __future__ import annotations

import tempfile
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
from bench.errors import JobStopped, OutputError
from bench.executors import make_executor
from bench.pretraining import EncoderSource, encoder_source
from bench.progress import NullProgress, Progress
from bench.records import (
    RunRecord,
    current_command,
    load_records,
    read_record,
    record_path,
    set_command,
    write_record,
)
from bench.registry import METHODS, PROTOCOLS, load_plugins
from bench.sources import REAL, SYNTHETIC, DataSource, locate, variant_source
from bench.tracking import NullTracker, make_tracker, tracker_for
from bench.trainer import barrier, init_distributed, is_main_process, resolve_device, seed_everything, world_size


@dataclass
class SweepOutcome:
    output_dir: Path
    records: list[RunRecord] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    leaderboard: dict[str, Path] = field(default_factory=dict)
    tracking_uri: str | None = None


def ensure_writable(folder: Path) -> Path:
    """Create ``folder`` and prove it is writable, or raise OutputError naming it. The probe file is unique to the
    call, so processes checking one folder at once (two ``bench tune`` workers) never delete each other's."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bench-write-test-"):
            pass
    except OSError as err:
        raise OutputError(
            f"cannot write to the output folder {folder}: {err.strerror or err}. Set output.dir=<writable folder>."
        ) from None
    return folder


def run(request: CliRequest, progress: Progress) -> SweepOutcome:
    """Run every suite of ``request``; write records, MLflow runs and the leaderboard."""
    outcome: SweepOutcome | None = None
    if init_distributed() and not is_main_process():
        progress = NullProgress()
    for suite in request.suites:
        outcome = run_suite(suite, request, progress, outcome)
    assert outcome is not None
    from reports.render import write_leaderboard

    if is_main_process():
        outcome.leaderboard = write_leaderboard(load_records(outcome.output_dir / "records"),
                                                outcome.output_dir / "leaderboard", outcome.output_dir / "tuning")
    barrier()
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
    first = configs[request.methods[0]]  # resolved with the chosen profile (the demo profile sets executor.*)
    executor = make_executor(first.executor, output_dir, distributed=world_size() > 1)  # bad settings fail early
    tracker = make_tracker(probe.tracking.enabled, probe.tracking.uri, probe.tracking.experiment, output_dir) \
        if is_main_process() else NullTracker()
    outcome.tracking_uri = tracker.uri
    same_sweep = [o for o in request.overrides if not o.startswith("executor.")]  # where jobs run is not identity
    sweep_key = config_hash([suite, request.methods, profile, request.recipe, same_sweep, data.kind])
    sweep_run = tracker.open_run(
        f"sweep/{sweep_key}", f"{suite} sweep ({profile}, {data.kind})",
        params={"suite": suite, "methods": ",".join(request.methods), "profile": profile, "recipe": request.recipe,
                "overrides": " ".join(request.overrides), "data_kind": data.kind},
        tags={"bench.stage": "sweep", "bench.suite": suite},
    )
    progress.message(f"{suite}: {len(request.methods)} method(s) x {len(first.suite.variants)} variant(s) x "
                     f"{len(first.seeds)} seed(s), profile {profile}, {data.kind} data")
    groups: list[GroupPlan] = []
    for method in request.methods:  # pre-training (or import / cache) of every method, before any job is dispatched
        cfg = configs[method]
        encoder = encoder_source(cfg, METHODS.get(method), output_dir, tracker, sweep_run, progress, progress.message)
        groups.extend(plan_method(cfg, data, encoder, output_dir, tracker, sweep_run, sweep_key))
    barrier()  # under torchrun every rank has planned from the same records before rank 0 writes new ones
    pending = [job for group in groups for job in group.pending]
    outcome.skipped += sum(len(group.job_ids) for group in groups) - len(pending)

    def report(job: JobSpec) -> None:  # the job's line, from its record (rank 0 alone writes records)
        if is_main_process():
            progress.message(_job_line(read_record(job.path)))

    executor.run(execute_job, pending, progress, report)
    outcome.ran += len(pending)
    if is_main_process():
        for group in groups:
            collect_group(group, tracker, outcome)
    tracker.close_run(sweep_run)
    return outcome


@dataclass
class GroupPlan:
    """One method x variant: its MLflow group run, every seed's job id and the jobs still to run."""

    run_id: str | None
    records_dir: Path
    job_ids: list[str]
    pending: list[JobSpec]


def plan_method(cfg: DictConfig, data: DataSource, encoder: EncoderSource, output_dir: Path, tracker, sweep_run,
                sweep_key: str) -> list[GroupPlan]:
    """Every variant x seed of one method; a job whose record exists is not planned again (resume)."""
    method = cfg.method.name
    fhash = finetune_hash(cfg)
    records_dir = output_dir / "records" / cfg.suite.name / f"{method}-{fhash}"
    groups = []
    for variant in cfg.suite.variants:
        vcfg = variant_config(cfg, variant)
        vdata = variant_source(vcfg, variant, data)  # a variant may name its own data set (suite svm)
        kind = SYNTHETIC if SYNTHETIC in (vdata.kind, encoder.data_kind) else REAL
        group_run = tracker.open_run(
            f"{sweep_key}/{method}/{variant}/{fhash}", f"{method} / {variant}", parent=sweep_run,
            params=to_plain(vcfg), tags={"bench.stage": "group", "bench.method": method, "bench.variant": variant},
        )
        group = GroupPlan(group_run, records_dir, [], [])
        for seed in cfg.seeds:
            job_id = f"{cfg.suite.name}/{variant}/{method}/seed{seed}"
            group.job_ids.append(job_id)
            if record_path(records_dir, job_id).exists():
                continue
            workdir = output_dir / "work" / cfg.suite.name / f"{method}-{fhash}" / variant / f"seed{seed}"
            group.pending.append(JobSpec(vcfg, variant, seed, job_id, fhash, sweep_key, kind, vdata, encoder, workdir,
                                         group_run, records_dir, tracker.uri, cfg.tracking.experiment))
        groups.append(group)
    return groups


def collect_group(group: GroupPlan, tracker, outcome: SweepOutcome) -> None:
    """Read the group's records back (the source of truth, whoever ran the jobs); aggregates to its MLflow run."""
    missing = [j for j in group.job_ids if not record_path(group.records_dir, j).exists()]
    if missing:
        raise OutputError(f"no run record for {', '.join(missing)} under {group.records_dir}: the job ended "
                          "without writing one. Run the same command again to retry it.")
    records = [read_record(record_path(group.records_dir, j)) for j in group.job_ids]
    tracker.log_metrics(group.run_id, aggregate(records))
    tracker.close_run(group.run_id)
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
    # for executors (another process may run the job): where its run and record go
    group_run: str | None = None
    records_dir: Path | None = None
    tracking_uri: str | None = None  # resolved; None: tracking disabled
    experiment: str = "pointbench"
    command: str = field(default_factory=current_command)  # the bench command line, for records written elsewhere

    @property
    def path(self) -> Path:
        assert self.records_dir is not None
        return record_path(self.records_dir, self.job_id)


def execute_job(job: JobSpec, progress: Progress | None = None) -> str:
    """What an executor runs, in whichever process: the job, then its record (rank 0 only under torchrun).

    The job's MLflow run attaches to ``job.group_run`` through this process's own tracker."""
    load_plugins()  # a fresh worker process has not imported the methods and protocols yet
    set_command(job.command)
    main = is_main_process()
    tracker = tracker_for(job.tracking_uri if main else None, job.experiment)
    record = run_job(job, tracker, job.group_run, progress or NullProgress())
    if main:
        write_record(job.records_dir, record)
    return str(job.path)


def run_job(job: JobSpec, tracker, group_run: str | None, progress: Progress, epoch_hook=None) -> RunRecord:
    """One fine-tuning job through its protocol, tracked as a seed run; returns its RunRecord.

    ``epoch_hook(epoch, row)`` also sees every epoch's metrics (``bench tune`` reports them to Optuna)."""
    cfg = job.cfg
    plain = to_plain(cfg)
    run_id = tracker.open_run(
        f"{job.sweep_key}/{job.job_id}/{job.fhash}", f"seed {job.seed}", parent=group_run, params=plain,
        tags={"bench.stage": "job", "bench.job_id": job.job_id, "bench.data_kind": job.kind},
    )

    def on_epoch_end(epoch: int, row: dict[str, float]) -> None:
        tracker.log_metrics(run_id, row, step=epoch)
        if epoch_hook is not None:
            epoch_hook(epoch, row)

    method_cls = METHODS.get(cfg.method.name)
    ctx = JobContext(
        cfg=cfg, method_cls=method_cls, variant=job.variant, seed=job.seed, data_root=job.data.root,
        workdir=job.workdir, encoder_ckpt=job.encoder.ckpt, progress=progress, on_epoch_end=on_epoch_end,
    )
    tic = time.perf_counter()
    seed_everything(job.seed)  # model init depends on the job alone, not on what ran before in this process
    try:
        result = PROTOCOLS.get(cfg.suite.protocol)().run(ctx)
    except (JobStopped, KeyboardInterrupt):
        tracker.close_run(run_id, status="KILLED")
        raise
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
        command=current_command(), details={k: v for k, v in result.extra.items() if k != "checkpoint_load"},
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
    (row,) = summarize(records, headline_only=True).to_dict("records")  # one method x variant x config
    keys = ("paper", "honest_mean", "honest_std", "n_seeds", "vote_mean", "vote_std", "vote_best_of_r")
    return {k: float(row[k]) for k in keys if row.get(k) is not None and row[k] == row[k]}


def _job_line(record: RunRecord) -> str:
    f = record.final
    vote = f"  vote {f['vote']:.2f}" if "vote" in f else ""
    return (f"  {record.job_id}: last {f['last']:.2f}  best {f['best']:.2f} (epoch {int(f['best_epoch'])})"
            f"{vote}  [{record.wall_time_s:.0f} s]")

"""The sweep runner: the only place that loops over jobs.

    plan (bench.plan: methods per suite x variants x seeds) -> weights per method (import | cache | pre-train
    its stages) -> each job through its suite's protocol -> RunRecord (the ledger) + MLflow

The runner stops at records: the CLI renders the leaderboard from them (``bench run`` and ``bench report``).

Resume: a job whose RunRecord exists is skipped; an interrupted job continues from its ``last.pt``; MLflow runs
are found again by their ``bench.key`` tag. Data kind: a job is "synthetic" when its fine-tuning data or the
pre-training data behind its encoder is the stand-in; such rows never share a table with real ones.

Where jobs run is the executor's business (``executor.*``, :mod:`bench.executors`: in-process, a process pool or
one Slurm array per sweep); every method is pre-trained before the jobs are dispatched, and the group statistics
are computed from the records afterwards. Under ``torchrun`` every rank plans the same jobs and trains each one
together; rank 0 alone tracks and writes records.

Several processes on one output folder (two ``bench run`` started together, or one started beside a running one)
divide the jobs: each job runs under a lease (:mod:`bench.leases`, :func:`lease_path`), a job another process holds
is waited for, and one whose process died (its lease freed with no record) is taken over, from its ``last.pt``.
A pre-training another process runs is waited for (:func:`bench.pretraining.encoder_source`), and the MLflow
store is created once (:mod:`bench.tracking`). A sweep that fails, or is interrupted, closes its sweep and group
runs FAILED or KILLED on the way out (:func:`close_after_failure`).
"""

from __future__ import annotations

import tempfile
import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig

from bench.aggregate import group_statistics
from bench.api import JobContext
from bench.config import CliRequest, dump_yaml, to_plain
from bench.env import environment
from bench.errors import JobStopped, OutputError
from bench.executors import make_executor
from bench.identity import config_hash
from bench.io import check_output_links
from bench.leases import LEASES_DIR, is_free, try_acquire
from bench.plan import JobSpec, SuitePlan, job_spec, plan_suite
from bench.pretraining import EncoderSource, encoder_source
from bench.progress import NullProgress, Progress, once
from bench.records import RunRecord, current_command, read_record, record_path, set_command, write_record
from bench.registry import METHODS, PROTOCOLS, load_plugins
from bench.results import statistics_line
from bench.tracking import NullTracker, log_files, make_tracker, run_name, tracker_for
from bench.trainer import barrier, init_distributed, is_main_process, resolve_device, seed_everything, world_size

__all__ = ["JobSpec", "SweepOutcome", "dispatch", "ensure_writable", "execute_job", "lease_path", "run", "run_job"]


@dataclass
class SweepOutcome:
    """What a sweep did: its output folder, the records of every planned job, how many ran here, were done already
    or were finished by another process meanwhile, where MLflow is (its store, experiment and one sweep run per
    suite)."""

    output_dir: Path
    records: list[RunRecord] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    by_others: int = 0  # jobs another process on the same folder finished while this one waited
    tracking_uri: str | None = None
    experiment: str = "pointbench"
    sweep_runs: list[str] = field(default_factory=list)

    def log_leaderboard(self, paths: dict[str, Path]) -> None:
        """The leaderboard files as written (format -> path) as artifacts ``leaderboard/<file>`` of every sweep run
        of this invocation (nothing when tracking is disabled)."""
        log_files(self.tracking_uri, self.experiment, self.sweep_runs, paths, "leaderboard")


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
    """Run every suite of ``request``; write records and MLflow runs (the CLI renders the reports from them).

    Every suite is planned first, so an incompatible method or a bad setting in any suite fails before any work.
    Each distinct notice (no data here, the stand-in used, a cached pre-training) is shown once per call."""
    if init_distributed() and not is_main_process():
        progress = NullProgress()
    note = once(progress.message)
    plans = [plan_suite(suite, request, note) for suite in request.suites]
    outcome: SweepOutcome | None = None
    for plan in plans:
        outcome = run_suite(plan, request, progress, outcome, note)
    assert outcome is not None
    barrier()
    return outcome


def run_suite(plan: SuitePlan, request: CliRequest, progress: Progress, outcome: SweepOutcome | None,
              note=None) -> SweepOutcome:  # fmt: skip
    """Pre-train (or reuse) every method, then hand the jobs without a record to the executor and wait for those
    another process runs (:func:`dispatch`); ``note``: where notices go (default ``progress.message``).

    Any exception (Ctrl-C included) closes the runs this call opened (:func:`close_after_failure`), then is
    re-raised."""
    note = note or progress.message
    first = plan.configs[plan.methods[0]]  # resolved with the chosen profile (the demo profile sets executor.*)
    output_dir = ensure_writable(Path(first.output.dir).expanduser().resolve())
    check_output_links(output_dir, first.output.allow_links)  # no sub-folder links out of it (unless allowed)
    outcome = outcome or SweepOutcome(output_dir)
    executor = make_executor(first.executor, output_dir, distributed=world_size() > 1)  # bad settings fail early
    tracker = make_tracker(first.tracking.enabled, first.tracking.uri, first.tracking.experiment, output_dir) \
        if is_main_process() else NullTracker()
    outcome.tracking_uri, outcome.experiment = tracker.uri, first.tracking.experiment
    sweep_key, sweep_run = open_sweep_run(plan, request, tracker)
    if sweep_run is not None:
        outcome.sweep_runs.append(sweep_run)
    progress.message(f"{plan.suite}: {len(plan.methods)} method(s) x {len(plan.variants)} variant(s) x "
                     f"{len(first.seeds)} seed(s), profile {plan.profile}, {plan.data_kind} data")
    groups: list[GroupPlan] = []
    try:
        for method in plan.methods:  # pre-training (or import / cache) of every method, before any job is dispatched
            cfg = plan.configs[method]
            encoder = encoder_source(cfg, METHODS.get(method), output_dir, tracker, sweep_run, progress, note)
            groups.extend(plan_method(cfg, plan, encoder, output_dir, tracker, sweep_run, sweep_key))
        barrier()  # under torchrun every rank has planned from the same records before rank 0 writes new ones
        pending = [job for group in groups for job in group.pending]
        outcome.skipped += sum(len(group.job_ids) for group in groups) - len(pending)

        def report(job: JobSpec) -> None:  # the job's line as it finishes, from its record (rank 0 alone writes)
            if is_main_process() and job.path.exists():
                progress.job_done(_job_line(read_record(job.path)))

        if pending:
            progress.sweep_start(f"{plan.suite} sweep", len(pending))
        try:
            by_others = dispatch(executor, pending, progress, report, note)
        finally:
            progress.sweep_finish()
        outcome.ran += len(pending) - by_others
        outcome.by_others += by_others
        if is_main_process():
            for group in groups:
                collect_group(group, tracker, outcome)
    except BaseException as err:
        close_after_failure(err, tracker, sweep_run, groups, outcome)
        raise
    tracker.close_run(sweep_run)
    return outcome


def open_sweep_run(plan: SuitePlan, request: CliRequest, tracker) -> tuple[str, str | None]:
    """The sweep's key (a hash of what it runs; where jobs run is not part of it) and its MLflow run."""
    same_sweep = [o for o in request.overrides if not o.startswith("executor.")]
    kind = plan.data_kind
    sweep_key = config_hash([plan.suite, plan.methods, plan.profile, request.recipe, same_sweep, kind])
    sweep_run = tracker.open_run(
        f"sweep/{sweep_key}", run_name(plan.suite, f"sweep ({plan.profile}, {kind})"),
        params={"suite": plan.suite, "methods": ",".join(plan.methods), "profile": plan.profile,
                "recipe": request.recipe, "overrides": " ".join(request.overrides), "data_kind": kind},
        tags={"bench.stage": "sweep", "bench.suite": plan.suite, "bench.profile": plan.profile,
              "bench.data_kind": kind},
    )
    return sweep_key, sweep_run


#: seconds between looks at the jobs another process holds: their records, and whether their lease is free
LEASE_POLL_S = 1.0


def dispatch(executor, pending: list[JobSpec], progress: Progress, report, note) -> int:
    """Run ``pending`` through ``executor``, then wait until every one has a record; ``report(job)`` as each one
    gets it. Returns how many of them another process finished (the others count as run here: a job another
    process finished a moment before this one took its lease among them).

    :func:`execute_job` skips a job whose lease another process holds: one still without a record when the
    executor is done with it is held elsewhere. Those are noted once, then looked at every :data:`LEASE_POLL_S`;
    one whose lease is free but still has no record lost its process (killed): it is dispatched again and resumes
    from the dead one's ``last.pt``. Under torchrun there are no leases and nothing to wait for."""
    held: list[JobSpec] = []

    def on_done(job: JobSpec) -> None:
        if job.path.exists() or world_size() > 1:
            report(job)
        else:
            held.append(job)

    executor.run(execute_job, pending, progress, on_done)
    if held:
        note(f"waiting for {len(held)} job(s) another process is running: {', '.join(job.job_id for job in held)}")
    by_others = 0
    while held:
        finished = [job for job in held if job.path.exists()]
        for job in finished:
            report(job)
        by_others += len(finished)
        waiting = [job for job in held if all(job is not done for done in finished)]
        # a holder writes the record, then releases its lease: a free lease and still no record is a dead holder
        orphans = [job for job in waiting if is_free(lease_path(job)) and not job.path.exists()]
        held[:] = [job for job in waiting if all(job is not orphan for orphan in orphans)]
        if orphans:
            note(f"taking over {len(orphans)} job(s) whose process ended before finishing them: "
                 f"{', '.join(job.job_id for job in orphans)}")
            executor.run(execute_job, orphans, progress, on_done)  # one taken by a third process meanwhile: held
        elif held:
            time.sleep(LEASE_POLL_S)
    return by_others


def close_after_failure(error: BaseException, tracker, sweep_run: str | None, groups: list[GroupPlan],
                        outcome: SweepOutcome) -> None:  # fmt: skip
    """A sweep that raises leaves no run RUNNING: a group whose every record exists is collected (FINISHED, as it
    would have been); every other group this call opened, and the sweep run, close KILLED (Ctrl-C, a stopped job)
    or FAILED (anything else). Job and pre-training runs close themselves (:func:`run_job`,
    :func:`bench.pretraining.encoder_source`)."""
    status = "KILLED" if isinstance(error, (KeyboardInterrupt, JobStopped)) else "FAILED"
    for group in groups:
        if group.collected:
            continue
        with suppress(Exception):  # best effort: a store that fails too (a full disk) must not hide ``error``
            if is_main_process() and all(record_path(group.records_dir, j).exists() for j in group.job_ids):
                collect_group(group, tracker, outcome)
            else:
                tracker.close_run(group.run_id, status=status)
    with suppress(Exception):
        tracker.close_run(sweep_run, status=status)


@dataclass
class GroupPlan:
    """One method x variant: its MLflow group run, every seed's job id, the jobs still to run, and whether its
    records were collected (statistics logged, run closed) by this call."""

    run_id: str | None
    records_dir: Path
    job_ids: list[str]
    pending: list[JobSpec]
    collected: bool = False


def plan_method(cfg: DictConfig, plan: SuitePlan, encoder: EncoderSource, output_dir: Path, tracker, sweep_run,
                sweep_key: str) -> list[GroupPlan]:
    """Every variant x seed of one method; a job whose record exists is not planned again (resume)."""
    method = cfg.method.name
    groups = []
    for variant in plan.variants:
        jobs = [job_spec(cfg, variant, seed, plan.data[variant], encoder, output_dir / "work", sweep_key,
                         output_dir / "records", tracking_uri=tracker.uri, experiment=cfg.tracking.experiment)
                for seed in cfg.seeds]
        group_run = tracker.open_run(
            f"{sweep_key}/{method}/{variant}/{jobs[0].fhash}", run_name(method, f"{plan.suite}/{variant}"),
            parent=sweep_run, params=to_plain(jobs[0].cfg),
            tags={"bench.stage": "group", "bench.method": method, "bench.suite": plan.suite, "bench.variant": variant,
                  "bench.data_kind": jobs[0].kind},
        )
        for job in jobs:
            job.group_run = group_run
        pending = [job for job in jobs if not job.path.exists()]
        groups.append(GroupPlan(group_run, jobs[0].records_dir, [job.job_id for job in jobs], pending))
    return groups


def collect_group(group: GroupPlan, tracker, outcome: SweepOutcome) -> None:
    """Read the group's records back (the source of truth, whoever ran the jobs); aggregates to its MLflow run.

    Only statistics that differ from the run's latest values are logged (:meth:`MlflowTracker.log_changed_metrics`):
    running a finished sweep again, or a second process collecting the same group, adds no history."""
    missing = [j for j in group.job_ids if not record_path(group.records_dir, j).exists()]
    if missing:
        raise OutputError(f"no run record for {', '.join(missing)} under {group.records_dir}: the job ended "
                          "without writing one. Run the same command again to retry it.")
    records = [read_record(record_path(group.records_dir, j)) for j in group.job_ids]
    tracker.log_changed_metrics(group.run_id, group_statistics(records))
    tracker.close_run(group.run_id)
    group.collected = True
    outcome.records.extend(records)


def lease_path(job: JobSpec) -> Path:
    """The job's lease file (:mod:`bench.leases`): ``<output.dir>/leases/<suite>/<method>-<hash>/<record
    name>.lock``, one per run record (a job id alone is shared by two configs of one method)."""
    records_root = job.records_dir.parent.parent  # <output.dir>/records (bench.plan.job_spec's layout)
    return records_root.parent / LEASES_DIR / job.path.relative_to(records_root).with_suffix(".lock")


def execute_job(job: JobSpec, progress: Progress | None = None) -> str:
    """What an executor runs, in whichever process: the job, then its record (rank 0 only under torchrun).

    The job's MLflow run attaches to ``job.group_run`` through this process's own tracker. The job runs under its
    lease (:func:`lease_path`, taken without waiting): when another process holds it, or the record exists once it
    is held (another process just finished the job), nothing is run or touched (no record, no MLflow run) and the
    runner waits for it (:func:`dispatch`). Under torchrun every rank trains the same job: no lease."""
    load_plugins()  # a fresh worker process has not imported the methods and protocols yet
    set_command(job.command)
    lease = try_acquire(lease_path(job)) if world_size() == 1 else nullcontext()
    if lease is None:
        return str(job.path)
    with lease:
        if world_size() == 1 and job.path.exists():
            return str(job.path)
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
        f"{job.sweep_key}/{job.job_id}/{job.fhash}",
        run_name(cfg.method.name, f"{cfg.suite.name}/{job.variant}", f"seed {job.seed}"), parent=group_run,
        params=plain, tags={"bench.stage": "job", "bench.job_id": job.job_id, "bench.data_kind": job.kind,
                            "bench.method": cfg.method.name, "bench.suite": cfg.suite.name,
                            "bench.variant": job.variant, "bench.seed": str(job.seed)},
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
    env = {**environment(resolve_device(cfg.trainer.device)), "deterministic": bool(cfg.trainer.deterministic)}
    record = RunRecord(
        job_id=job.job_id, sweep_id=job.sweep_key, method=method_cls.name, suite=cfg.suite.name,
        suite_version=cfg.suite.version, variant=job.variant, seed=job.seed, protocol=cfg.suite.protocol,
        data_kind=job.kind, profile=cfg.profile, recipe=cfg.recipe, metric=result.headline.name,
        results=result.metrics, epochs=result.epochs, config=plain, env=env,
        wall_time_s=time.perf_counter() - tic, config_hash=job.fhash,
        pretrain={**job.encoder.to_dict(), "load_report": result.extra.get("checkpoint_load")},
        mlflow_run_id=run_id, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        command=current_command(), details={k: v for k, v in result.extra.items() if k != "checkpoint_load"},
    )
    tracker.log_metrics(run_id, final_metrics(result.metrics))
    tracker.log_artifact_text(run_id, record.to_json(), "run_record.json")
    tracker.log_artifact_text(run_id, dump_yaml(cfg), "config.yaml")
    tracker.close_run(run_id)
    (job.workdir / "last.pt").unlink(missing_ok=True)
    return record


def final_metrics(results) -> dict[str, float]:
    """MLflow names of a job's statistics: ``final_<statistic>`` for the headline (as always), else
    ``final_<metric>_<statistic>``."""
    out = {f"final_{k}": s.value for k, s in results[0].statistics.items()}
    out.update({f"final_{m.name}_{k}": s.value for m in results[1:] for k, s in m.statistics.items()})
    return out


def _job_line(record: RunRecord) -> str:
    return f"{record.job_id}: {statistics_line(record.headline)}  [{record.wall_time_s:.0f} s]"

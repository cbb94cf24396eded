"""The one planner: a request (``bench run`` / ``bench tune`` / ``bench show``) -> the methods each suite can run,
the profile, the resolved configs, the located data per variant, and the jobs.

Rules, the same for every command:
- ``method=all`` is every registered method whose capabilities (and condition kinds) satisfy the suite's protocol
  (:meth:`bench.api.Protocol.requirements`); naming an incompatible method is one ConfigError before any work.
- Data is located per variant, with that variant's own config (a variant may name another data set: suite svm);
  the profile is ``paper`` when every planned variant's data is real, else ``demo`` (unless ``profile=`` is given).
- Each protocol's :meth:`~bench.api.Protocol.check` validates every variant's ``suite`` section up front.
- A job is one method x variant x seed; its identity (job id, fine-tuning hash, work folder, record path) comes
  from :func:`job_spec` alone, so the runner and the tuner name jobs the same way.
- ``bench run ... --dry-run`` (:func:`dry_run`) plans the same way with ``write=False`` and reads what is on disk
  (records, pre-training caches, data): nothing is run or written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.api import incompatibility
from bench.config import CliRequest, dataset_variant, resolve, variant_config
from bench.errors import CheckpointError, ConfigError
from bench.executors import make_executor
from bench.identity import finetune_hash, pretrain_hash, stage_hash
from bench.pretraining import CHECKPOINT_NAME, IMPLICIT, EncoderSource, side_digests, stages_of
from bench.progress import duration
from bench.records import current_command, load_records, record_path
from bench.registry import METHODS, PROTOCOLS, load_plugins
from bench.sources import REAL, SYNTHETIC, DataSource, locate, missing_files

Note = Callable[[str], None]


@dataclass
class SuitePlan:
    """One suite of a request: its methods, profile, configs (per method) and data (per variant)."""

    suite: str
    profile: str
    methods: list[str]
    variants: list[str]
    configs: dict[str, DictConfig]
    data: dict[str, DataSource]

    @property
    def data_kind(self) -> str:
        return REAL if all(d.kind == REAL for d in self.data.values()) else SYNTHETIC


def select_methods(suite: str, request: CliRequest) -> list[str]:
    """The request's methods for ``suite``: all compatible ones for ``method=all``, else the named ones, each of
    which must be compatible (ConfigError with the reason otherwise)."""
    load_plugins()
    names = request.methods or METHODS.names()
    probe = resolve(suite, names[0], profile=request.profile or "paper", recipe=request.recipe,
                    overrides=request.overrides)
    protocol = PROTOCOLS.get(probe.suite.protocol)
    needs = protocol.requirements(probe.suite)
    reasons = {m: incompatibility(METHODS.get(m), needs, suite) or
               protocol.method_incompatibility(probe.suite, METHODS.get(m)) for m in names}
    if request.methods is not None:
        refused = [why for why in reasons.values() if why]
        if refused:
            raise ConfigError("; ".join(refused) + ".")
        return list(request.methods)
    chosen = [m for m in names if reasons[m] is None]
    if not chosen:
        raise ConfigError(f"no registered method can run suite={suite}: it needs "
                          f"{', '.join(sorted(needs.capabilities))} ({'; '.join(r for r in reasons.values() if r)}).")
    return chosen


def runnable_suites() -> dict[str, list[str]]:
    """Method name -> the suites whose protocol it satisfies (``bench ls``), from each suite yaml's protocol."""
    from bench.config import SUITES_DIR, read_yaml, suite_names

    load_plugins()
    out: dict[str, list[str]] = {m: [] for m in METHODS.names()}
    for suite in suite_names():
        section = read_yaml(SUITES_DIR / f"{suite}.yaml").get("suite") or {}
        protocol = PROTOCOLS.get(section.get("protocol", "finetune"))
        settings = OmegaConf.create({"name": suite, **section})
        for method in out:
            cls = METHODS.get(method)
            if incompatibility(cls, protocol.requires, suite) is None and \
                    protocol.method_incompatibility(settings, cls) is None:
                out[method].append(suite)
    return out


def locate_variants(cfg: DictConfig, variants: list[str], note: Note, write: bool = True) -> dict[str, DataSource]:
    """Each variant's data, located with that variant's config: the variants reading one data set are located
    together (real only when all of them are present), with one note per stand-in used (``write=False``: the
    stand-in is not written, for commands that only show)."""
    by_dataset: dict[str, dict[str, str]] = {}
    for variant in variants:
        vcfg = variant_config(cfg, variant)
        by_dataset.setdefault(vcfg.suite.dataset, {})[variant] = dataset_variant(vcfg, variant)
    out = {}
    for dataset, own in by_dataset.items():
        source = locate(dataset, list(dict.fromkeys(own.values())), cfg.data.root, cfg.data.source,
                        cfg.data.standin_size, write)
        if source.note:
            note(source.note)
        out.update(dict.fromkeys(own, source))
    return {variant: out[variant] for variant in variants}


def plan_suite(suite: str, request: CliRequest, note: Note, variants: list[str] | None = None,
               write: bool = True) -> SuitePlan:
    """Methods, data, profile and configs of one suite (``variants``: a subset, e.g. the one ``bench tune`` scores;
    ``write=False``: write no stand-in, as ``bench show``)."""
    methods = select_methods(suite, request)
    probe = resolve(suite, methods[0], profile=request.profile or "paper", recipe=request.recipe,
                    overrides=request.overrides)
    chosen = list(variants or probe.suite.variants)
    data = locate_variants(probe, chosen, note, write)
    real = all(d.kind == REAL for d in data.values())
    profile = request.profile or ("paper" if real else "demo")
    configs = {m: resolve(suite, m, profile=profile, recipe=request.recipe, overrides=request.overrides)
               for m in methods}
    for cfg in configs.values():
        for variant in chosen:
            PROTOCOLS.get(cfg.suite.protocol).check(variant_config(cfg, variant).suite)
    return SuitePlan(suite, profile, methods, chosen, configs, data)


@dataclass
class JobSpec:
    """One job: its config, data, encoder weights, identity and where its outputs go (another process may run it)."""

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
    group_run: str | None = None
    records_dir: Path | None = None
    tracking_uri: str | None = None  # resolved; None: tracking disabled
    experiment: str = "pointbench"
    command: str = field(default_factory=current_command)  # the bench command line, for records written elsewhere

    @property
    def path(self) -> Path:
        assert self.records_dir is not None
        return record_path(self.records_dir, self.job_id)


def job_spec(cfg: DictConfig, variant: str, seed: int, data: DataSource, encoder: EncoderSource, work_root: Path,
             sweep_key: str, records_root: Path | None = None, **where) -> JobSpec:  # fmt: skip
    """The job of ``cfg``'s method on ``variant`` with ``seed``: id ``<suite>/<variant>/<method>/seed<seed>``, work
    folder ``<work_root>/<suite>/<method>-<hash>/<variant>/seed<seed>``, records in
    ``<records_root>/<suite>/<method>-<hash>``. Synthetic when its data or its encoder's pre-training data is."""
    method, fhash = cfg.method.name, finetune_hash(cfg)
    folder = Path(cfg.suite.name) / f"{method}-{fhash}"
    kind = SYNTHETIC if SYNTHETIC in (data.kind, encoder.data_kind) else REAL
    return JobSpec(variant_config(cfg, variant), variant, seed, f"{cfg.suite.name}/{variant}/{method}/seed{seed}",
                   fhash, sweep_key, kind, data, encoder, work_root / folder / variant / f"seed{seed}",
                   records_dir=None if records_root is None else records_root / folder, **where)


# --- the dry run (``bench run ... --dry-run``): the plan, read from disk, with nothing run or written -------------
#: a data source's state in a dry run: the real files, the stand-in already written, or the stand-in still to write
DATA_REAL, DATA_STANDIN, DATA_MISSING = "real", "stand-in", "missing"


@dataclass
class PlannedJob:
    """One job of a dry run: done when its record exists; ``estimate_s`` from earlier records (None: no history)."""

    job_id: str
    done: bool
    estimate_s: float | None = None


@dataclass
class PlannedPretraining:
    """A method's weights in a dry run. ``state``: cached (every stage's ``pretrain.pth`` exists), to run (``stages``
    lists those that would train), imported (``method.ckpt``) or none; ``estimate_s`` from earlier pre-trainings of
    the method (their ``pretrain.json``)."""

    method: str
    state: str
    path: str | None = None
    data_kind: str | None = None
    stages: list[str] = field(default_factory=list)
    estimate_s: float | None = None


@dataclass
class DryRun:
    """What ``bench run`` would do for one suite."""

    suite: str
    profile: str
    data_kind: str
    output_dir: Path
    workers: int  # jobs at once (1 for Slurm: its array runs elsewhere)
    data: dict[str, tuple[str, Path]]  # variant -> (DATA_REAL | DATA_STANDIN | DATA_MISSING, folder)
    pretrainings: list[PlannedPretraining]
    jobs: list[PlannedJob]
    notes: list[str] = field(default_factory=list)


def dry_run(request: CliRequest) -> list[DryRun]:
    """The plan of every suite of ``request`` as ``bench run`` would make it, from what is on disk: records (done
    jobs, wall times), pre-training caches (the hashes of :func:`bench.pretraining.encoder_source`) and the data.
    Writes nothing: no stand-in, no side data, no output folder, no MLflow run."""
    out = []
    for suite in request.suites:
        notes: list[str] = []
        plan = plan_suite(suite, request, notes.append, write=False)
        first = plan.configs[plan.methods[0]]
        output_dir = Path(first.output.dir).expanduser().resolve()
        history = load_records(output_dir / "records")
        pretrainings, jobs = [], []
        for method in plan.methods:
            cfg = plan.configs[method]
            planned = planned_pretraining(cfg, METHODS.get(method), output_dir, notes.append)
            pretrainings.append(planned)
            encoder = EncoderSource(planned.state, planned.path, planned.data_kind)
            for variant in plan.variants:
                for seed in cfg.seeds:
                    spec = job_spec(cfg, variant, seed, plan.data[variant], encoder, output_dir / "work", "",
                                    output_dir / "records")
                    done = spec.path.exists()
                    jobs.append(PlannedJob(spec.job_id, done, None if done else _job_estimate(spec, history)))
        make_executor(first.executor, output_dir)  # bad executor.* settings fail as in the run (nothing is made)
        workers = first.executor.workers if first.executor.kind == "local" else 1
        data = {v: _data_state(variant_config(first, v), v, plan.data[v]) for v in plan.variants}
        out.append(DryRun(suite, plan.profile, plan.data_kind, output_dir, workers, data, pretrainings, jobs,
                          list(dict.fromkeys(notes))))
    return out


def planned_pretraining(cfg: DictConfig, method_cls, output_dir: Path, note: Note) -> PlannedPretraining:
    """The dry-run twin of :func:`bench.pretraining.encoder_source`: the same stage hashes and cache folders, with
    the data located without writing (a side-data file still to write hashes as absent: its stage is to run)."""
    name = method_cls.name
    if cfg.method.ckpt:
        path = Path(cfg.method.ckpt).expanduser()
        if not path.is_file():  # the error the run would stop with
            raise CheckpointError(f"method.ckpt: checkpoint file not found: {path}")
        return PlannedPretraining(name, "imported", str(path.resolve()))
    if not method_cls.pretrains():
        return PlannedPretraining(name, "none")
    stages = stages_of(cfg)
    located = [locate(s.dataset, [s.variant], cfg.data.root, cfg.data.source, cfg.data.standin_size, write=False)
               for s in stages]
    for data in located:
        if data.note:
            note(data.note)
    kinds = [d.kind for d in located]
    digests = [side_digests(stage, data) for stage, data in zip(stages, located, strict=True)]
    keys = [pretrain_hash(cfg, kinds[0])] if not cfg.pretrain.stages else \
        [stage_hash(cfg, i, kinds, digests) for i in range(len(stages))]
    files = [output_dir / "pretrain" / f"{name}-{key}" / CHECKPOINT_NAME for key in keys]
    kind = SYNTHETIC if SYNTHETIC in kinds else REAL
    to_run = [stage.name for stage, file in zip(stages, files, strict=True) if not file.exists()]
    if not to_run:
        return PlannedPretraining(name, "cached", str(files[-1]), kind)
    earlier = [_pretrain_seconds(output_dir / "pretrain", name, stage) for stage in to_run]
    estimate = sum(earlier) if all(s is not None for s in earlier) else None
    return PlannedPretraining(name, "to run", str(files[-1]), kind, to_run, estimate)


def _pretrain_seconds(folder: Path, method: str, stage: str) -> float | None:
    """Mean wall time of the earlier pre-trainings of ``method``'s ``stage`` under ``folder`` (any config)."""
    times = []
    for info in sorted(folder.glob(f"{method}-*/pretrain.json")):
        details = json.loads(info.read_text())
        if details.get("stage", IMPLICIT) == stage and details.get("wall_time_s") is not None:
            times.append(float(details["wall_time_s"]))
    return sum(times) / len(times) if times else None


def _job_estimate(spec: JobSpec, history: list) -> float | None:
    """Mean wall time of the earlier records of the job's config and variant, else of its suite, method and variant
    under any config; None without such records."""
    suite, variant, method = spec.job_id.split("/")[:3]
    same = [r.wall_time_s for r in history if r.config_hash == spec.fhash and r.variant == variant]
    similar = [r.wall_time_s for r in history if (r.suite, r.method, r.variant) == (suite, method, variant)]
    times = same or similar
    return sum(times) / len(times) if times else None


def _data_state(cfg: DictConfig, variant: str, source: DataSource) -> tuple[str, Path]:
    if source.kind == REAL:
        return DATA_REAL, source.root
    absent = missing_files(source.dataset, source.root, [dataset_variant(cfg, variant)])
    return (DATA_MISSING if absent else DATA_STANDIN), source.root


def dry_run_lines(runs: list[DryRun]) -> list[str]:
    """The printed dry run: per suite its notices, data, pre-trainings, jobs (done / to run, with estimates) and
    the expected time (the jobs' estimates over the workers, plus the pre-trainings to run, one after another)."""
    lines = ["dry run: nothing is run or written."]
    for run in runs:
        lines.append(f"{run.suite}: profile {run.profile}, {run.data_kind} data, output {run.output_dir}")
        lines += [f"  notice: {text}" for text in run.notes]
        lines.append("  data:")
        lines += [f"    {variant:<12} {state:<9} {folder}" for variant, (state, folder) in run.data.items()]
        lines.append("  pre-training:")
        for pre in run.pretrainings:
            where = {"cached": pre.path, "imported": pre.path, "none": "(no pre-training)"}.get(pre.state, "")
            if pre.state == "to run":
                where = ("stages " + ", ".join(pre.stages) if pre.stages != [IMPLICIT] else "") + \
                    (f" (~{duration(pre.estimate_s)} as before)" if pre.estimate_s is not None else "")
            lines.append(f"    {pre.method:<12} {pre.state:<9} {where.strip()}".rstrip())
        pending = [job for job in run.jobs if not job.done]
        lines.append(f"  jobs: {len(run.jobs)} ({len(run.jobs) - len(pending)} done, {len(pending)} to run)")
        width = max((len(job.job_id) for job in run.jobs), default=0) + 2
        for job in run.jobs:
            guess = f"  ~{duration(job.estimate_s)}" if job.estimate_s is not None else ""
            lines.append(f"    {job.job_id:<{width}}{'done' if job.done else 'to run'}{guess}")
        lines.append(f"  time: {_time_line(run, pending)}")
    return lines


def _time_line(run: DryRun, pending: list[PlannedJob]) -> str:
    pretraining = [p for p in run.pretrainings if p.state == "to run"]
    if not pending and not pretraining:
        return "nothing to run"
    known = [job.estimate_s for job in pending if job.estimate_s is not None]
    parts = []
    if pending:
        jobs_s = max(sum(known) / max(run.workers, 1), max(known, default=0.0))  # a job is not split over workers
        share = f"{len(known)} of {len(pending)} job(s) estimated from earlier records"
        spread = f" over {run.workers} workers" if run.workers > 1 else ""
        parts.append(f"~{duration(jobs_s)} of jobs{spread} ({share})" if known else
                     f"no earlier record of these jobs: no estimate for {len(pending)} job(s)")
    if pretraining:
        timed = [p.estimate_s for p in pretraining if p.estimate_s is not None]
        parts.append(f"{len(pretraining)} pre-training(s) to run" +
                     (f", ~{duration(sum(timed))} for {len(timed)} of them" if timed else ", no estimate"))
    return "; ".join(parts)

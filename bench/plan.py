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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.api import incompatibility
from bench.config import CliRequest, dataset_variant, finetune_hash, resolve, variant_config
from bench.errors import ConfigError
from bench.pretraining import EncoderSource
from bench.records import current_command, record_path
from bench.registry import METHODS, PROTOCOLS, load_plugins
from bench.sources import REAL, SYNTHETIC, DataSource, locate

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

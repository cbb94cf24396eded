"""Protocol ``scaling``: a method's generation stage trained from scratch at several model sizes, scored by its
held-out pretext loss, so a report can fit a power law L = a N^b to the test loss against trained parameters N
(G3PT's scaling-law claim; wave2.md 2.2 items 5 and 7; the figure: :mod:`reports.scaling`).

Per job (one method x size x seed; the sizes are the suite's variants):

- size: ``suite.sizes[<variant>]``, a mapping of method-config overrides (g3pt: ``{car: {width: 96, depth: 3,
  heads: 4}}``) merged over the ``method`` section strictly: a key the method's ``config_class`` lacks is a
  ConfigError naming ``suite.sizes.<size>.<key>``, raised before any data is read (``name`` / ``ckpt`` are not
  size keys). The method is built at that size with its initial weights drawn from the job seed;
- weights: from the pre-training checkpoint (``ctx.encoder_ckpt``) only the tensors of the modules that the
  generation stage freezes (under its ``freeze`` prefixes, or outside its ``train`` prefixes when it lists any:
  g3pt's tokenizer, point_mge's tokenizer and field decoder) are loaded, their shapes checked (a size must not change
  a frozen module); every other tensor keeps its fresh initialisation. The report goes to the record's
  ``pretrain.load_report``;
- training: the generation stage (:func:`suites.protocols.generation.generation_stage`, with its ``train`` /
  ``freeze`` and ``on_stage_start``) trained by the one Trainer for ``suite.epochs`` epochs (the ``trainer``
  section, the job seed, the job's work folder: it resumes) on the train split of ``suite.dataset`` (its variant
  ``suite.data_variant``; empty: the suite variant's own, :func:`bench.config.dataset_variant`) through
  ``transforms.train`` + ``transforms.augment``. An empty ``train`` chain means the stage's own pre-training chain,
  the preprocessing its frozen modules were trained with;
- test loss: ``pretrain_step(batch)[suite.loss_key]`` on ``suite.eval_split`` through ``transforms.test`` (empty:
  the stage's chain) seeded with ``suite.eval_seed``, in order, ``eval_batch_size`` clouds a batch, the first
  ``suite.eval_batches`` batches (0: all), in eval mode without gradients, with torch's global generator seeded with
  ``eval_seed`` for the pass and restored afterwards (a pretext that draws masks or condition dropout draws the
  same ones for every size and seed): deterministic. The value is the sample-weighted mean of the batch losses
  (:class:`bench.metrics.loss.HeldOutLoss`);
- parameters: ``params_trained``, the parameters the stage trains (``requires_grad`` after its train / freeze): the
  N of the scaling law; ``params_total``, all of the method's.

Results: ``test_loss`` (min, nats) with ``last`` (honest: after the last epoch, no selection) and ``final`` (paper:
the same value, as G3PT fits each size's final test loss). ``details["scaling"]`` (:class:`ScalingDetails`):
size, overrides, params_trained, params_total, epochs, per-epoch train loss, loss key, stage, the eval split.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import DataLoader

from bench.api import GENERATION, JobContext, Method, MethodConfig, Protocol, Requirements
from bench.checkpoints import read_state_dict
from bench.config import dataset_variant
from bench.data.base import TransformedDataset, build_dataset
from bench.data.transforms import build_transform
from bench.errors import CheckpointError, ConfigError, DataError
from bench.metrics.loss import HeldOutLoss
from bench.pretraining import Stage
from bench.registry import DATASETS, PROTOCOLS
from bench.results import HONEST, PAPER, JobResult, MetricResult, Statistic
from bench.schema import SuiteConfig
from bench.trainer import resolve_device, seed_everything
from suites.protocols.generation import generation_stage
from suites.protocols.toolkit import chain, dataset_options, enter_stage, eval_batch_size, eval_mode, fit_stage

SCALING_METRICS = ("test_loss",)
RESERVED = ("name", "ckpt")  # method keys that name or import a model: never a size


@dataclass
class ScalingSuite(SuiteConfig):
    """The scaling protocol's settings (see the module docstring)."""

    metric: str = "test_loss"
    sizes: dict[str, Any] = field(default_factory=dict)  # size (= variant) -> method overrides
    epochs: int = 10  # epochs of the generation stage per size, from scratch
    eval_split: str = "test"
    eval_batches: int = 0  # 0: the whole split
    eval_seed: int = 0  # the eval chain's seed and torch's generator during the pass
    loss_key: str = "loss"  # the pretrain_step entry scored (g3pt: its cross-entropy)
    data_variant: str = ""  # the data set variant every size reads; "": the suite variant's own


@dataclass(frozen=True)
class PartialLoad:
    """What :func:`load_frozen` took from a checkpoint: the tensors of the frozen modules, nothing else."""

    path: str | None
    frozen_modules: list[str]  # top-level module names holding frozen tensors
    loaded: int  # tensors copied from the checkpoint
    fresh: int  # tensors left at their initialisation

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "frozen modules of the generation stage", **asdict(self)}


@dataclass(frozen=True)
class EvalLoss:
    """The test loss and what it was computed over."""

    value: float
    split: str
    samples: int
    batches: int
    seed: int


@dataclass(frozen=True)
class ScalingDetails:
    """``details["scaling"]`` of a record (what :mod:`reports.scaling` reads)."""

    size: str
    overrides: dict[str, Any]
    params_trained: int
    params_total: int
    epochs: int
    train_loss: list[float]
    loss_key: str
    stage: str
    eval: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- sizes -------------------------------------------------------------------------------------------------------
def _unknown_keys(node: DictConfig, overrides: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of ``overrides`` that ``node`` (a structured method config) does not have."""
    out = []
    for key, value in overrides.items():
        if key not in node or (not prefix and key in RESERVED):
            out.append(prefix + str(key))
        elif isinstance(value, Mapping) and isinstance(node[key], DictConfig):
            out += _unknown_keys(node[key], value, f"{prefix}{key}.")
    return out


def size_overrides(suite: Any, size: str) -> dict[str, Any]:
    """``suite.sizes[size]`` as a plain mapping; ConfigError when the size is not declared."""
    if size not in suite.sizes:
        raise ConfigError(f"suite {suite.name}: variant {size!r} is not a size of suite.sizes "
                          f"({', '.join(suite.sizes) or 'none'}); every variant names one.")
    return OmegaConf.to_container(suite.sizes[size], resolve=True)


def sized_config(cfg: DictConfig, method_cls: type[Method], size: str) -> MethodConfig:
    """``cfg.method`` with ``suite.sizes[size]`` merged over it (strict), as the method's config object."""
    overrides = size_overrides(cfg.suite, size)
    base = copy.deepcopy(cfg.method)
    OmegaConf.set_readonly(base, False)
    unknown = _unknown_keys(base, overrides)
    if unknown:
        known = ", ".join(k for k in base if k not in RESERVED)
        raise ConfigError(f"suite.sizes.{size}: {', '.join(unknown)} is not a key of {method_cls.name}'s config "
                          f"({method_cls.config_class.__name__}); its keys are {known}. The sizes are per method: give "
                          "this one a suite yaml of its own (suites/scaling.yaml holds g3pt's).")
    try:
        return OmegaConf.to_object(OmegaConf.merge(base, overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"suite.sizes.{size}: {str(err).splitlines()[0]}") from None


# --- weights -----------------------------------------------------------------------------------------------------
def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_frozen(name: str, stage: Stage) -> bool:
    """A state-dict key the stage does not train (the complement of :func:`bench.pretraining.set_trainable`)."""
    return (bool(stage.train) and not _under(name, stage.train)) or _under(name, stage.freeze)


def load_frozen(method: Method, stage: Stage, path: str | Path | None) -> PartialLoad:
    """Copy the frozen modules' tensors (parameters and buffers) of a whole-method checkpoint into ``method``;
    CheckpointError naming the file when one is missing or has another shape."""
    own = method.state_dict()
    frozen = [k for k in own if is_frozen(k, stage)]
    modules = sorted({k.split(".")[0] for k in frozen})
    if path is None or not frozen:
        return PartialLoad(None if path is None else str(path), modules, 0, len(own))
    state = read_state_dict(path)
    missing = [k for k in frozen if k not in state]
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in frozen
             if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        raise CheckpointError(f"checkpoint {path} does not fit the frozen modules ({', '.join(modules)}) of stage "
                              f"{stage.name}: missing {', '.join(missing[:6]) or 'none'}; shape mismatches "
                              f"{', '.join(wrong[:4]) or 'none'}. Does a size of suite.sizes change a frozen module?")
    method.load_state_dict({k: state[k] for k in frozen}, strict=False)
    return PartialLoad(str(path), modules, len(frozen), len(own) - len(frozen))


def parameter_counts(method: Method) -> tuple[int, int]:
    """(parameters that train, all parameters) of ``method`` as its stage left them."""
    params = list(method.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


# --- data and evaluation -----------------------------------------------------------------------------------------
def split_dataset(ctx: JobContext, split: str, specs: list, seed: int) -> TransformedDataset:
    """``split`` of the suite's data set (variant ``suite.data_variant`` or the variant's own) through ``specs``."""
    suite = ctx.cfg.suite
    variant = str(suite.data_variant) or dataset_variant(ctx.cfg, ctx.variant)
    base = build_dataset(suite.dataset, Path(ctx.data_root), split, variant, **dataset_options(ctx))
    return TransformedDataset(base, build_transform(specs), seed=seed)


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def held_out_loss(method: Method, dataset: TransformedDataset, suite: Any, batch_size: int,
                  device: torch.device) -> EvalLoss:  # fmt: skip
    """The sample-weighted mean of ``pretrain_step(batch)[suite.loss_key]`` (see the module docstring)."""
    key, limit, seed = str(suite.loss_key), int(suite.eval_batches), int(suite.eval_seed)
    metric, batches, samples = HeldOutLoss(), 0, 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with eval_mode(method), torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        for batch in loader:
            if limit and batches >= limit:
                break
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out = method(batch)
            if key not in out:
                raise ConfigError(f"suite.loss_key={key!r}: {method.name}.pretrain_step returns "
                                  f"{', '.join(sorted(out))} in its {method.stage} stage.")
            metric.update(out[key].detach().float(), torch.tensor(float(len(batch["xyz"]))))
            batches, samples = batches + 1, samples + len(batch["xyz"])
    value = metric.compute()
    if not math.isfinite(value):
        raise DataError(f"{method.name}: the {suite.eval_split} loss ({key}) is {value} over {batches} batch(es): "
                        "the split is empty or the model diverged.")
    return EvalLoss(value, str(suite.eval_split), samples, batches, seed)


@PROTOCOLS.register("scaling")
class Scaling(Protocol):
    name = "scaling"
    requires = Requirements(frozenset({GENERATION}))
    suite_class = ScalingSuite

    @classmethod
    def check(cls, suite) -> None:
        where = f"suite {suite.name}"
        if str(suite.metric) not in SCALING_METRICS:
            raise ConfigError(f"{where}: suite.metric={suite.metric!r}; the scaling protocol scores "
                              f"{', '.join(SCALING_METRICS)}.")
        if not suite.sizes:
            raise ConfigError(f"{where}: suite.sizes is empty; map each size (variant) to its method overrides.")
        for size, overrides in suite.sizes.items():
            if not isinstance(overrides, DictConfig):
                raise ConfigError(f"{where}: suite.sizes.{size} must be a mapping of method overrides, got "
                                  f"{overrides!r}.")
        for variant in suite.variants:
            size_overrides(suite, variant)
        if int(suite.epochs) < 1:
            raise ConfigError(f"{where}: suite.epochs={suite.epochs} must be at least 1 (the stage trains from "
                              "scratch).")
        if int(suite.eval_batches) < 0:
            raise ConfigError(f"{where}: suite.eval_batches={suite.eval_batches} must be 0 (all) or more.")
        if not str(suite.loss_key):
            raise ConfigError(f"{where}: suite.loss_key is empty; name the pretrain_step entry to score.")
        cls._check_data(suite, where)

    @classmethod
    def method_incompatibility(cls, suite: Any, method_cls: type[Method]) -> str | None:
        """The sizes name keys of one method's config: a method without them cannot run this suite."""
        known = {f.name for f in dataclasses.fields(method_cls.config_class)}
        missing = sorted({str(key) for overrides in suite.sizes.values() for key in overrides} - known)
        if missing:
            return (f"{method_cls.name} cannot run suite={suite.name}: its suite.sizes set {', '.join(missing)}, "
                    f"which {method_cls.config_class.__name__} does not have (the sizes are per method)")
        return None

    @staticmethod
    def _check_data(suite, where: str) -> None:
        if suite.dataset not in DATASETS:
            return  # resolve() has named an unknown data set already
        spec = DATASETS.get(suite.dataset)
        if suite.eval_split not in spec.splits:
            raise ConfigError(f"{where}: suite.eval_split={suite.eval_split!r} is not a split of {suite.dataset} "
                              f"({', '.join(spec.splits)}).")
        if suite.data_variant and suite.data_variant not in spec.variants:
            raise ConfigError(f"{where}: suite.data_variant={suite.data_variant!r} is not a variant of "
                              f"{suite.dataset} ({', '.join(spec.variants)}).")

    def run(self, ctx: JobContext) -> JobResult:
        cfg, suite = ctx.cfg, ctx.cfg.suite
        self.check(suite)
        stage = generation_stage(cfg, ctx.method_cls)
        if stage.side_data:
            raise ConfigError(f"{ctx.method_cls.name}'s generation stage {stage.name} reads side data "
                              f"({', '.join(stage.side_data)}); the scaling protocol reads the suite's data set only.")
        sized = sized_config(cfg, ctx.method_cls, ctx.variant)  # bad size keys fail before any data is read
        seed_everything(ctx.seed)  # the sized model's initial weights depend on the job seed alone
        method = ctx.method_cls(sized)
        enter_stage(method, stage)
        loaded = load_frozen(method, stage, ctx.encoder_ckpt)
        trained, total = parameter_counts(method)
        train_specs = chain(suite.transforms.train) or list(stage.transforms)
        train = split_dataset(ctx, "train", [*train_specs, *chain(suite.transforms.augment)], ctx.seed)
        history = fit_stage(ctx, method, train, int(suite.epochs), stage.name).history
        test = split_dataset(ctx, str(suite.eval_split), chain(suite.transforms.test) or list(stage.transforms),
                             int(suite.eval_seed))
        device = resolve_device(cfg.trainer.device)
        method.to(device)
        loss = held_out_loss(method, test, suite, eval_batch_size(cfg.trainer), device)
        details = ScalingDetails(
            size=ctx.variant, overrides=size_overrides(suite, ctx.variant), params_trained=trained,
            params_total=total, epochs=int(suite.epochs), train_loss=[row.get("train_loss") for row in history],
            loss_key=str(suite.loss_key), stage=stage.name, eval=asdict(loss))
        note = (f"{ctx.method_cls.name} {ctx.variant}: {trained:,} trained of {total:,} parameters "
                f"({dotted(details.overrides) or 'the method config as it is'}).")
        return JobResult([loss_result(loss)], history, {"scaling": details.as_dict(), "table_notes": [note],
                                                        "checkpoint_load": loaded.as_dict()})


def dotted(overrides: Mapping[str, Any], prefix: str = "") -> str:
    """``{car: {width: 48, depth: 2}}`` -> ``car.width=48, car.depth=2``."""
    parts = [dotted(v, f"{prefix}{k}.") if isinstance(v, Mapping) else f"{prefix}{k}={v}" for k, v in overrides.items()]
    return ", ".join(p for p in parts if p)


def loss_result(loss: EvalLoss) -> MetricResult:
    """The ``test_loss`` result: ``last`` (honest) and ``final`` (paper), one value."""
    where = f"mean {loss.split} loss over {loss.samples} samples after the last epoch"
    return MetricResult.of(HeldOutLoss.spec(), {
        "last": Statistic(loss.value, f"{where} (no selection)", HONEST),
        "final": Statistic(loss.value, f"{where}, the value G3PT's power law is fitted to", PAPER),
    })

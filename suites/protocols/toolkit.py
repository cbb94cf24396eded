"""What every protocol does the same way, as free functions: the job's data pipeline, its encoder, its Trainer,
evaluation in eval mode, and per-epoch statistics. No protocol calls another protocol's methods.

Conventions:
- :func:`job_dataset` builds the suite's data set (``suite.dataset_options`` plus the job seed under the data set's
  declared ``seed_option``) through a transform chain, seeded by the job seed.
- :func:`prepared` runs a split through a chain once (the epoch-0 randomness of seed 0) and caches the samples in
  memory for the process, shared by every job asking for the same data and chain.
- :func:`predict` evaluates in eval mode without gradients, in order, ``eval_batch_size`` clouds at a time
  (``trainer.eval_batch_size``; 0 means twice ``batch_size``, as the references validate with 2 x total_bs).
- :func:`curve_statistics`: ``last`` (honest: the last epoch), ``best`` (paper: the best epoch on the test split
  in the metric's direction) and ``best_epoch`` of one per-epoch curve.
- :func:`enter_stage` / :func:`fit_stage`: a method's pre-training stage trained again by a protocol (generation,
  scaling): the stage's ``train`` / ``freeze`` and ``on_stage_start``, then the one Trainer with the job's
  ``trainer`` section for a given number of epochs (job seed, job work folder: it resumes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bench.api import Encoder, JobContext, Method
from bench.checkpoints import load_encoder_checkpoint
from bench.config import dataset_variant
from bench.data.base import TransformedDataset, build_dataset
from bench.data.transforms import build_transform
from bench.errors import ConfigError
from bench.metrics.base import Direction
from bench.pretraining import Stage, set_trainable
from bench.registry import DATASETS, METRICS
from bench.results import HONEST, INFO, PAPER, MetricResult, Statistic
from bench.trainer import SCHEDULE_CONVENTIONS, Trainer, TrainResult


class CachedSamples(Dataset):
    """Prepared samples held in memory (numpy arrays, and the ``id`` string)."""

    def __init__(self, samples: list[dict[str, Any]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, Any]:
        return self.samples[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {k: v if isinstance(v, str) else torch.as_tensor(v) for k, v in self.samples[index].items()}

    def labels(self) -> Tensor:
        return torch.as_tensor(np.stack([s["label"] for s in self.samples])).long()


_PREPARED: dict[str, CachedSamples] = {}


def as_numpy(sample: dict[str, Any]) -> dict[str, Any]:
    """A loaded sample's tensors as numpy arrays; other values (the sample ``id``) as they are."""
    return {k: v.numpy() if isinstance(v, Tensor) else v for k, v in sample.items()}


def chain(specs: Any) -> list:
    """Plain list of transform specs from a (possibly interpolated) config node."""
    return OmegaConf.to_container(specs, resolve=True) if not isinstance(specs, list) else specs


class IndexSubset:
    """The samples ``indices`` of a data set (``load``/``len``, what :class:`TransformedDataset` reads)."""

    def __init__(self, dataset: Any, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, i: int) -> dict[str, np.ndarray]:
        return self.dataset.load(int(self.indices[i]))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices: per class (ascending label), ``round(fraction * n_c)`` samples drawn by
    one ``numpy.random.default_rng(seed)`` permutation each, at most ``n_c - 1`` so every class keeps one."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"suite.validation={fraction}: the held-out fraction of train must lie in (0, 1).")
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held.append(members[: min(int(round(fraction * len(members))), len(members) - 1)])
    held_out = np.sort(np.concatenate(held))
    if held_out.size == 0:
        raise ConfigError(f"suite.validation={fraction} holds out no sample of {len(labels)}: raise it.")
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


def check_point_budget(suite: Any) -> None:
    """A cloud must hold at least ``num_group`` centres and ``group_size`` neighbours."""
    if suite.npoints < max(suite.num_group, suite.group_size):
        raise ConfigError(
            f"suite.npoints={suite.npoints} is fewer than suite.num_group={suite.num_group} or "
            f"suite.group_size={suite.group_size}: each cloud must hold at least that many points."
        )


# --- data --------------------------------------------------------------------------------------------------------
def dataset_options(ctx: JobContext) -> dict[str, Any]:
    """``suite.dataset_options``, plus the job's seed under the data set's ``seed_option`` when it declares one
    (few-shot: ``fold``, so seed k trains and tests on fold k)."""
    options = OmegaConf.to_container(ctx.cfg.suite.dataset_options, resolve=True)
    seed_option = DATASETS.get(ctx.cfg.suite.dataset).seed_option
    return {**options, seed_option: ctx.seed} if seed_option else options


def job_dataset(ctx: JobContext, split: str, specs: list) -> TransformedDataset:
    """The suite's data set (this variant, this split) through the transform chain ``specs``, seeded by the job."""
    suite = ctx.cfg.suite
    variant = dataset_variant(ctx.cfg, ctx.variant)
    base = build_dataset(suite.dataset, Path(ctx.data_root), split, variant, **dataset_options(ctx))
    return TransformedDataset(base, build_transform(specs), seed=ctx.seed)


def _cache(key: str, source: Dataset) -> CachedSamples:
    if key not in _PREPARED:
        _PREPARED[key] = CachedSamples([as_numpy(source[i]) for i in range(len(source))])
    return _PREPARED[key]


def prepared(ctx: JobContext, split: str, specs: list) -> CachedSamples:
    """``split`` through ``specs`` once (epoch-0 randomness of seed 0), cached in memory for the process."""
    suite = ctx.cfg.suite
    key = repr((suite.dataset, str(ctx.data_root), split, ctx.variant, specs, dataset_options(ctx)))
    if key in _PREPARED:
        return _PREPARED[key]
    source = job_dataset(ctx, split, specs)
    source.seed = 0
    return _cache(key, source)


def hold_out(ctx: JobContext, train_set: TransformedDataset, fraction: float,
             ) -> tuple[TransformedDataset, CachedSamples]:  # fmt: skip
    """(train without the hold-out, hold-out through the test chain): :func:`stratified_split` with split seed 0,
    so the hold-out is the same for every seed and trial."""
    suite = ctx.cfg.suite
    base = train_set.dataset
    labels = np.array([int(base.load(i)["label"]) for i in range(len(base))])
    fit_idx, val_idx = stratified_split(labels, fraction, seed=0)
    specs = chain(suite.transforms.test)
    key = repr(("validation", suite.dataset, str(ctx.data_root), ctx.variant, specs, fraction, dataset_options(ctx)))
    held = _cache(key, TransformedDataset(IndexSubset(base, val_idx), build_transform(specs), seed=0))
    return TransformedDataset(IndexSubset(base, fit_idx), train_set.transform, seed=train_set.seed), held


# --- model and training ------------------------------------------------------------------------------------------
def job_backbone(ctx: JobContext, drop_path: float | None = None) -> Encoder:
    """The method's downstream encoder with the suite's ``num_group`` / ``group_size``; stochastic depth from
    ``trainer.drop_path`` unless ``drop_path`` is given (0 for frozen encoders)."""
    cfg = ctx.cfg
    backbone = ctx.method_cls.build_backbone(
        OmegaConf.to_object(cfg.method), num_group=cfg.suite.num_group, group_size=cfg.suite.group_size,
        drop_path=cfg.trainer.drop_path if drop_path is None else drop_path,
    )
    if not isinstance(backbone, Encoder):
        raise TypeError(f"{ctx.method_cls.name}.build_backbone returned a {type(backbone).__name__}, not a "
                        "bench.api.Encoder")
    return backbone


def load_pretrained(backbone: nn.Module, ctx: JobContext) -> dict[str, Any] | None:
    """Load ``ctx.encoder_ckpt`` under the method's checkpoint prefix; None (random init) when there is none.

    Returns the load report stored in the record: the checkpoint path and the missing / unexpected keys."""
    if ctx.encoder_ckpt is None:
        return None
    loaded = load_encoder_checkpoint(backbone, ctx.encoder_ckpt, prefix=ctx.method_cls.checkpoint_prefix)
    return {"path": str(ctx.encoder_ckpt), "missing": list(loaded.missing), "unexpected": list(loaded.unexpected)}


def make_trainer(ctx: JobContext) -> Trainer:
    """The job's Trainer: ``trainer`` section, job seed, the job's work folder (resume), its progress line."""
    desc = f"{ctx.cfg.suite.name}/{ctx.variant} {ctx.method_cls.name} seed {ctx.seed}"
    return Trainer(ctx.cfg.trainer, seed=ctx.seed, workdir=Path(ctx.workdir), progress=ctx.progress, desc=desc)


def enter_stage(method: Method, stage: Stage) -> None:
    """Make ``stage`` the method's current one: its ``train`` / ``freeze`` prefixes applied, then ``on_stage_start``."""
    set_trainable(method, stage.train, stage.freeze)
    method.on_stage_start(stage.config)


def fit_stage(ctx: JobContext, method: Method, dataset: Dataset, epochs: int, stage: str) -> TrainResult:
    """Train ``method``'s pretext (``method(batch)``, its current stage) on ``dataset`` for ``epochs`` epochs with
    the job's ``trainer`` section, seed and work folder (it resumes from ``last.pt``); ``stage`` names the progress
    line. Call :func:`enter_stage` first."""
    trainer_cfg = replace(OmegaConf.to_object(ctx.cfg.trainer), epochs=epochs)
    desc = f"{ctx.cfg.suite.name}/{ctx.variant} {ctx.method_cls.name} seed {ctx.seed} ({stage})"
    trainer = Trainer(trainer_cfg, seed=ctx.seed, workdir=Path(ctx.workdir), progress=ctx.progress, desc=desc)
    return trainer.fit(method, dataset, lambda model, batch: model(batch), on_epoch_end=ctx.on_epoch_end)


def eval_batch_size(trainer_cfg: Any) -> int:
    """``trainer.eval_batch_size``, or twice ``trainer.batch_size`` when it is 0."""
    return int(trainer_cfg.eval_batch_size or 2 * trainer_cfg.batch_size)


def double_step_deviation(trainer_cfg: Any, script: str) -> list[str]:
    """The record's deviation (``details["deviations"]``) when a reference ``script`` (file and lines) steps twice
    per batch and ``trainer.reference_double_step`` is off; [] when it is on."""
    if trainer_cfg.reference_double_step:
        return []
    return [f"one optimizer step per batch; the reference steps twice per batch ({script}: step, clip, step; "
            "trainer.reference_double_step=true reproduces it)"]


def schedule_deviation(trainer_cfg: Any, reference: str, script: str) -> list[str]:
    """The record's deviation when ``trainer.schedule_convention`` is not ``reference``, the convention of the
    reference ``script`` (file and lines; :data:`bench.trainer.SCHEDULE_CONVENTIONS`); [] when it is."""
    used = trainer_cfg.schedule_convention
    if used == reference:
        return []
    return [f"trainer.schedule_convention={used} ({SCHEDULE_CONVENTIONS[used]}); the reference loop ({script}) "
            f"runs {SCHEDULE_CONVENTIONS[reference]} (trainer.schedule_convention={reference} reproduces it)"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode without gradients; its training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


Forward = Callable[[nn.Module, dict[str, Tensor]], Tensor]


def predict(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int,
            forward: Forward | None = None) -> Tensor:  # fmt: skip
    """Outputs (float32, on the CPU) for every item of ``dataset``, in order, in eval mode; ``forward(model,
    batch)`` defaults to ``model(batch["xyz"])``."""
    run = forward or (lambda m, batch: m(batch["xyz"].to(device)))
    with eval_mode(model):
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        return torch.cat([run(model, batch).float().cpu() for batch in loader])


# --- metrics and statistics --------------------------------------------------------------------------------------
def scores(names: list[str], preds: Tensor, target: Tensor, *args: Any) -> dict[str, float]:
    """Each registered metric of ``names`` (constructed with ``*args``) on one (preds, target) pair."""
    out = {}
    for name in names:
        metric = METRICS.get(name)(*args)
        metric.update(preds, target)
        out[name] = metric.compute()
    return out


def spec_of(metric: str):
    """The registered metric's declaration (direction, unit, scale)."""
    return METRICS.get(metric).spec()


def curve_statistics(history: list[dict[str, float]], key: str, direction: Direction, best_epoch: int | None,
                     rules: dict[str, str]) -> dict[str, Statistic]:  # fmt: skip
    """``last`` (honest), ``best`` (paper: best epoch in ``direction``) and ``best_epoch`` of ``history[key]``;
    ``best_epoch`` is the Trainer's selection when given, else the first best epoch (its index in ``history``).
    Rows without ``key`` (an epoch the schedule convention does not evaluate, e.g. ``reference_runner``'s 0) are
    skipped."""
    scored = [(i, row[key]) for i, row in enumerate(history) if key in row]
    values = [value for _, value in scored]
    best = direction.best(values)
    epoch = best_epoch if best_epoch is not None else scored[values.index(best)][0]
    return {
        "last": Statistic(values[-1], rules.get("last", ""), HONEST),
        "best": Statistic(best, rules.get("best", ""), PAPER),
        "best_epoch": Statistic(float(epoch), "epoch of the best test value", INFO),
    }


def curve_result(name: str, metric: str, history: list[dict[str, float]], best_epoch: int | None,
                 rules: dict[str, str], key: str | None = None) -> MetricResult:  # fmt: skip
    """A :class:`MetricResult` called ``name`` from the per-epoch ``key`` (default ``test_<name>``)."""
    spec = spec_of(metric)
    stats = curve_statistics(history, key or f"test_{name}", spec.direction, best_epoch, rules)
    return MetricResult.of(spec, stats, name=name)

"""Protocol ``finetune``: supervised classification fine-tuning of a method's encoder (ScanObjectNN, ModelNet40).

Per job (one method x variant x seed):
- model: the method's backbone (cls token) + the reference head (concat(cls, max over tokens) -> MLP), encoder
  weights from the pre-training checkpoint when there is one;
- loss: cross-entropy; accuracy in percent on the test split after every epoch (the papers' selection set);
- ``final``: ``last`` (last epoch), ``best`` (max over epochs, "paper" selection), ``best_epoch``, ``macc_last``;
  with voting: ``vote_last`` / ``vote_best`` (one ``vote.times``-vote pass, logits averaged, on the last / best
  model), ``vote`` (= ``vote_best``, what the papers report) and, when ``vote.repeats`` > 1, ``vote_best_of_r``
  (max over R passes on the best model, the reference's ``--test`` practice).
- ``suite.validation`` > 0 (``bench tune``): that fraction of the train split, stratified with split seed 0, is held
  out (never trained on, never the test split) and scored each epoch as ``val_acc`` / ``val_macc``; at 0 (default)
  nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bench.api import JobContext, JobResult, Protocol
from bench.config import dataset_variant
from bench.data.base import TransformedDataset, build_dataset
from bench.data.transforms import build_transform
from bench.errors import ConfigError
from bench.registry import DATASETS, METRICS, PROTOCOLS
from bench.trainer import Trainer
from methods.blocks.heads import PointClassifier
from suites.protocols.common import job_backbone, load_pretrained

SELECTION = {
    "best": "max over epochs of test accuracy (test-set selection, as the papers report)",
    "last": "test accuracy after the last epoch (no selection)",
    "vote_best": "one vote pass (logits averaged) on the best-on-test checkpoint",
    "vote_last": "one vote pass (logits averaged) on the last-epoch model",
    "vote_best_of_r": "max over R vote passes on the best-on-test checkpoint (reference --test practice)",
}


class CachedSamples(Dataset):
    """Prepared samples held in memory: test clouds after their deterministic chain, computed once per process
    and shared by every job (seeds, methods) that asks for the same data and chain."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, np.ndarray]:
        return self.samples[index]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: torch.as_tensor(v) for k, v in self.samples[index].items()}

    def labels(self) -> Tensor:
        return torch.as_tensor(np.stack([s["label"] for s in self.samples])).long()


_PREPARED: dict[str, CachedSamples] = {}


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


def accuracies(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """{"acc": overall accuracy %, "macc": mean class accuracy %} (registered metrics ``acc`` / ``macc``)."""
    out = {}
    for name in ("acc", "macc"):
        metric = METRICS.get(name)(num_classes)
        metric.update(logits, labels)
        out[name] = metric.compute()
    return out


@PROTOCOLS.register("finetune")
class Finetune(Protocol):
    name = "finetune"

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        check_point_budget(suite)
        train_set = self.dataset(ctx, "train", chain(suite.transforms.train) + chain(suite.transforms.augment))
        val_set = self.hold_out(ctx, train_set) if suite.validation > 0 else None
        if val_set is not None:
            train_set, val_set = val_set
        test_set = self.prepared(ctx, "test", chain(suite.transforms.test))
        model, load_report = self.build_model(ctx)
        trainer = Trainer(
            ctx.cfg.trainer, seed=ctx.seed, workdir=Path(ctx.workdir), progress=ctx.progress,
            desc=f"{ctx.cfg.suite.name}/{ctx.variant} {ctx.method_cls.name} seed {ctx.seed}",
        )
        device = trainer.device
        labels = test_set.labels()

        def evaluate(m: nn.Module, epoch: int) -> dict[str, float]:
            scores = accuracies(self.predict(m, test_set, device), labels, suite.num_classes)
            out = {f"test_{k}": v for k, v in scores.items()}
            if val_set is not None:
                val = accuracies(self.predict(m, val_set, device), val_set.labels(), suite.num_classes)
                out.update({f"val_{k}": v for k, v in val.items()})
            return out

        result = trainer.fit(model, train_set, self.step, evaluate, select="test_acc", on_epoch_end=ctx.on_epoch_end)
        final = self.summarize(result.history, result.best_epoch)
        if suite.vote.enabled:
            final.update(self.votes(ctx, model, trainer, labels))
        extra = {"checkpoint_load": load_report, "resumed_from_epoch": result.resumed_from}
        return JobResult("acc", True, result.history, final, dict(SELECTION), extra)

    # --- pieces -------------------------------------------------------------------------------------------
    @staticmethod
    def dataset(ctx: JobContext, split: str, specs: list) -> TransformedDataset:
        suite = ctx.cfg.suite
        variant = dataset_variant(ctx.cfg, ctx.variant)
        base = build_dataset(suite.dataset, Path(ctx.data_root), split, variant, **Finetune.dataset_options(ctx))
        return TransformedDataset(base, build_transform(specs), seed=ctx.seed)

    @staticmethod
    def dataset_options(ctx: JobContext) -> dict[str, Any]:
        """``suite.dataset_options``, plus the job's seed under the data set's ``seed_option`` when it declares one
        (few-shot: ``fold``, so seed k trains and tests on fold k)."""
        options = OmegaConf.to_container(ctx.cfg.suite.dataset_options, resolve=True)
        seed_option = getattr(DATASETS.get(ctx.cfg.suite.dataset), "seed_option", None)
        return {**options, seed_option: ctx.seed} if seed_option else options

    @classmethod
    def prepared(cls, ctx: JobContext, split: str, specs: list) -> CachedSamples:
        """``split`` through ``specs`` once (epoch-0 randomness of seed 0), cached in memory for the process."""
        suite = ctx.cfg.suite
        key = repr((suite.dataset, str(ctx.data_root), split, ctx.variant, specs, cls.dataset_options(ctx)))
        if key not in _PREPARED:
            source = cls.dataset(ctx, split, specs)
            source.seed = 0
            _PREPARED[key] = CachedSamples([{k: v.numpy() for k, v in source[i].items()} for i in range(len(source))])
        return _PREPARED[key]

    @staticmethod
    def hold_out(ctx: JobContext, train_set: TransformedDataset) -> tuple[TransformedDataset, CachedSamples]:
        """(train without the hold-out, hold-out through the test chain) for ``suite.validation`` > 0.

        The hold-out is the same for every seed and trial: :func:`stratified_split` with split seed 0.
        """
        suite = ctx.cfg.suite
        base = train_set.dataset
        labels = np.array([int(base.load(i)["label"]) for i in range(len(base))])
        fit_idx, val_idx = stratified_split(labels, suite.validation, seed=0)
        specs = chain(suite.transforms.test)
        key = repr(("validation", suite.dataset, str(ctx.data_root), ctx.variant, specs, suite.validation,
                    Finetune.dataset_options(ctx)))
        if key not in _PREPARED:
            source = TransformedDataset(IndexSubset(base, val_idx), build_transform(specs), seed=0)
            _PREPARED[key] = CachedSamples([{k: v.numpy() for k, v in source[i].items()} for i in range(len(source))])
        fit = TransformedDataset(IndexSubset(base, fit_idx), train_set.transform, seed=train_set.seed)
        return fit, _PREPARED[key]

    @staticmethod
    def build_model(ctx: JobContext) -> tuple[PointClassifier, dict | None]:
        backbone = job_backbone(ctx)
        report = load_pretrained(backbone, ctx)
        return PointClassifier(backbone, ctx.cfg.suite.num_classes), report

    @staticmethod
    def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = model(batch["xyz"])
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(-1) == batch["label"]).float().mean() * 100.0
        return {"loss": loss, "acc": acc.detach()}

    @staticmethod
    @torch.no_grad()
    def predict(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 64) -> Tensor:
        """Logits (N, C) for every item of ``dataset``, in order, in eval mode."""
        was_training = model.training
        model.eval()
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        logits = torch.cat([model(batch["xyz"].to(device)).float().cpu() for batch in loader])
        model.train(was_training)
        return logits

    @staticmethod
    def summarize(history: list[dict[str, float]], best_epoch: int | None) -> dict[str, float]:
        accs = [row["test_acc"] for row in history]
        return {
            "last": accs[-1],
            "best": max(accs),
            "best_epoch": float(best_epoch if best_epoch is not None else int(np.argmax(accs))),
            "macc_last": history[-1]["test_macc"],
        }

    def votes(self, ctx: JobContext, model: nn.Module, trainer: Trainer, labels: Tensor) -> dict[str, float]:
        """One vote pass on the last model and on the best checkpoint; best-of-R on the best when R > 1."""
        vote = ctx.cfg.suite.vote
        samples = self.prepared(ctx, "test", chain(ctx.cfg.suite.transforms.vote))
        each = build_transform(chain(ctx.cfg.suite.transforms.vote_each))

        def one_pass(repeat: int) -> float:
            views = TransformedDataset(samples, each, seed=ctx.seed * 1000 + repeat + 1)
            return Finetune.vote_pass(model, views, vote.times, trainer.device, labels)

        out = {"vote_last": one_pass(0)}
        trainer.load_best(model)
        passes = [one_pass(r) for r in range(vote.repeats)]
        out.update({"vote_best": passes[0], "vote": passes[0], "vote_repeats": float(vote.repeats)})
        if vote.repeats > 1:
            out["vote_best_of_r"] = max(passes)
        return out

    @staticmethod
    def vote_pass(model: nn.Module, views: TransformedDataset, times: int, device, labels: Tensor) -> float:
        """``times`` views per cloud (epoch v of ``views`` = vote v); logits, not probabilities, averaged; acc %."""
        total = None
        for vote in range(times):
            views.set_epoch(vote)
            logits = Finetune.predict(model, views, device)
            total = logits if total is None else total + logits
        return accuracies(total, labels, int(total.shape[-1]))["acc"]

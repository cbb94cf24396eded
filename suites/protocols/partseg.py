"""Protocol ``partseg``: part segmentation fine-tuning (ShapeNetPart; the reference ``segmentation/main.py``,
reference/protocols.md 1.5, 2.5, 3.1).

Per job (one method x variant x seed):
- model: the method's backbone (cls token removed, as the reference segmentation model has none) + the shared
  reference head (:class:`PointSegmenter`: blocks 4, 8, 12 of 12, or :func:`segmentation_blocks` of a shallower
  encoder; category one-hot through ``label_conv``; feature propagation to every point), encoder weights from the
  pre-training checkpoint when there is one; the head's init is ``suite.head.init`` (:class:`SegmentationHeadConfig`:
  ``torch_default`` as Point-MAE / PQAE, ``trunc_normal`` as MaDi), set by each method's shapenetpart recipe;
- data: ``trainval`` through ``transforms.train`` (the reference's random ``npoints`` resample with replacement)
  and ``transforms.augment`` (isotropic scale U[0.8, 1.25], shift U[-0.1, 0.1]^3); loss cross-entropy over all
  parts (= the reference's NLL on log_softmax). One optimizer step per batch unless
  ``trainer.reference_double_step`` reproduces the reference's second one (its ``num_iter == 1`` quirk,
  protocols.md 2.5); ``trainer.schedule_convention`` is the reference's ``reference_seg`` in the paper profile
  (``range(0, args.epoch)``, ``scheduler.step(epoch)`` at each epoch's end, ``t_initial=args.epoch``); the
  record's ``deviations`` list whichever differs;
- every epoch, on the ``test`` split, prediction restricted to the true category's parts (:mod:`.segmentation`
  metrics), two ways:
  ``inst_miou`` / ``cls_miou`` / ``acc``: on ``transforms.test`` views (the reference's random ``npoints`` draw
  with replacement, redrawn every epoch from seed ``RESAMPLE_SEED + seed``, as the reference redraws);
  ``inst_miou_all`` / ``cls_miou_all`` / ``acc_all``: on every point of each whole test shape (shapes of equal
  size batched together; the model is per-sample in eval mode, so batching changes nothing).

``final``: ``last`` / ``best`` / ``best_epoch`` of ``suite.metric`` (Inst. mIoU on the resample, what the papers
report); ``<m>_last`` / ``<m>_best`` for every ``m`` of ``suite.report.metrics``, each best its own max over
epochs (the reference logs "Best class avg mIOU" and "Best inctance avg mIOU" tracked independently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bench.api import REPRESENTATION, JobContext, Protocol, Requirements
from bench.data.base import TransformedDataset
from bench.data.transforms import build_transform
from bench.errors import ConfigError, DataError
from bench.registry import DATASETS, METRICS, PROTOCOLS
from bench.results import JobResult
from bench.schema import SuiteConfig
from bench.trainer import REFERENCE_SEG, Selection
from methods.blocks.seg_head import PointSegmenter, SegmentationHeadConfig
from suites.protocols.toolkit import (
    CachedSamples,
    chain,
    check_point_budget,
    curve_result,
    double_step_deviation,
    eval_batch_size,
    eval_mode,
    job_backbone,
    job_dataset,
    load_pretrained,
    make_trainer,
    prepared,
    schedule_deviation,
    spec_of,
)

TRAIN_SPLIT, TEST_SPLIT = "trainval", "test"
#: offset of the test-resample seed, so its draws never coincide with the training views' (seed, epoch, index)
RESAMPLE_SEED = 1_000_003
#: per-epoch scores: name -> (source of the predictions, metric) ; "all" = every point of the whole shapes
SCORES = {
    "inst_miou": ("resample", "inst_miou"), "cls_miou": ("resample", "cls_miou"), "acc": ("resample", "acc"),
    "inst_miou_all": ("all", "inst_miou"), "cls_miou_all": ("all", "cls_miou"), "acc_all": ("all", "acc"),
}  # fmt: skip
#: the reference loop the records cite: Point-MAE / PQAE segmentation, MaDi part_segmentation main.py (each
#: CosineLRScheduler has t_initial=args.epoch: L150 / L196 / L186)
REFERENCE_LOOP = "Point-MAE / PQAE segmentation, MaDi part_segmentation main.py L165-L207 / L211-L256 / L203-L244"
SELECTION = {
    "best": "max over epochs of test Inst. mIoU on the random resample (test-set selection, as the papers report)",
    "last": "test Inst. mIoU on the random resample after the last epoch (no selection)",
    "<m>_best": "max over epochs of metric m, tracked independently per metric (as the reference logs them)",
    "<m>_all": "metric m on every point of each whole test shape instead of the resample",
}


def category_parts(dataset: str) -> list[list[int]]:
    """The registered data set's per-category global part ids (its declared ``category_parts``)."""
    parts = DATASETS.get(dataset).category_parts
    if not parts:
        raise ConfigError(f"suite.dataset={dataset!r} has no per-category part ranges (`category_parts`): the "
                          "partseg protocol needs a part-segmentation data set such as shapenetpart.")
    return parts


def size_batches(sizes: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped by equal point count, in chunks of at most ``batch_size`` (order: first appearance)."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(sizes):
        groups.setdefault(n, []).append(i)
    return [idx[k : k + batch_size] for idx in groups.values() for k in range(0, len(idx), batch_size)]


class Scores:
    """The per-epoch metrics of one prediction source (registered ``inst_miou``, ``cls_miou``, ``acc``)."""

    def __init__(self, parts: list[list[int]]) -> None:
        num_parts = 1 + max(p for ps in parts for p in ps)
        self.metrics = {name: METRICS.get(name)(parts) for name in ("inst_miou", "cls_miou")}
        self.metrics["acc"] = METRICS.get("acc")(num_parts)
        self.parts = parts

    def update(self, logits: Tensor, seg: Tensor, category: Tensor) -> None:
        self.metrics["inst_miou"].update(logits, seg)
        self.metrics["cls_miou"].update(logits, seg)
        masks = torch.full((len(category), logits.shape[-1]), float("-inf"))
        for row, c in enumerate(category.tolist()):
            masks[row, self.parts[c]] = 0.0
        self.metrics["acc"].update((logits + masks[:, None]).argmax(-1), seg)

    def compute(self) -> dict[str, float]:
        return {name: metric.compute() for name, metric in self.metrics.items()}


@dataclass
class PartSegSuite(SuiteConfig):
    """The partseg protocol's settings: the segmentation head's options."""

    head: SegmentationHeadConfig = field(default_factory=SegmentationHeadConfig)


@PROTOCOLS.register("partseg")
class PartSeg(Protocol):
    name = "partseg"
    requires = Requirements(frozenset({REPRESENTATION}))
    suite_class = PartSegSuite

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        names = self.metric_names(suite)
        parts = category_parts(suite.dataset)
        train_set = job_dataset(ctx, TRAIN_SPLIT, chain(suite.transforms.train) + chain(suite.transforms.augment))
        shapes = prepared(ctx, TEST_SPLIT, [])
        views = TransformedDataset(shapes, build_transform(chain(suite.transforms.test)), RESAMPLE_SEED + ctx.seed)
        model, load_report = self.build_model(ctx, len(parts))
        trainer = make_trainer(ctx)
        batch = eval_batch_size(ctx.cfg.trainer)

        def evaluate(m: nn.Module, epoch: int) -> dict[str, float]:
            views.set_epoch(epoch)
            return self.evaluate(m, views, shapes, parts, trainer.device, batch)

        headline = SCORES[suite.metric][1]
        select = Selection(f"test_{suite.metric}", spec_of(headline).direction)
        result = trainer.fit(model, train_set, self.step, evaluate, select=select, on_epoch_end=ctx.on_epoch_end)
        results = [curve_result(n, SCORES[n][1], result.history, result.best_epoch if n == suite.metric else None,
                                self.rules(n, suite.metric)) for n in names]
        extra = {"checkpoint_load": load_report, "resumed_from_epoch": result.resumed_from,
                 "blocks": list(model.blocks), "deviations": self.deviations(ctx.cfg.trainer)}  # fmt: skip
        return JobResult(results, result.history, extra)

    # --- pieces -------------------------------------------------------------------------------------------
    @staticmethod
    def deviations(trainer: Any) -> list[str]:
        """Where the job's loop differs from the reference's (DESIGN: record it): one optimizer step per batch
        unless ``trainer.reference_double_step``; a ``trainer.schedule_convention`` other than ``reference_seg``."""
        return [*double_step_deviation(trainer, REFERENCE_LOOP),
                *schedule_deviation(trainer, REFERENCE_SEG, REFERENCE_LOOP)]

    @staticmethod
    def rules(name: str, headline: str) -> dict[str, str]:
        """Selection wording of metric ``name``'s ``last`` / ``best`` (each best its own max over epochs)."""
        if name == headline:
            return {"last": SELECTION["last"], "best": SELECTION["best"]}
        where = SELECTION["<m>_all"].replace("metric m", name) if name.endswith("_all") else f"test {name}"
        return {"last": f"{where} after the last epoch", "best": SELECTION["<m>_best"].replace("metric m", name)}

    @classmethod
    def check(cls, suite: Any) -> None:
        cls.metric_names(suite)
        SegmentationHeadConfig.of(OmegaConf.to_container(suite.head, resolve=True))

    @staticmethod
    def metric_names(suite: Any) -> list[str]:
        """Validate the suite for this protocol; return the reported metric names (headline first)."""
        check_point_budget(suite)
        names = list(OmegaConf.to_container(suite.report.metrics, resolve=True) or [suite.metric])
        unknown = [n for n in [suite.metric, *names] if n not in SCORES]
        if unknown:
            raise ConfigError(f"suite {suite.name}: metric(s) {unknown} (suite.metric / suite.report.metrics) are not "
                              f"scored by the partseg protocol; it scores {', '.join(SCORES)}.")
        if names[0] != suite.metric:
            raise ConfigError(f"suite {suite.name}: suite.report.metrics must start with the headline suite.metric="
                              f"{suite.metric!r}, got {names}.")
        return names

    @staticmethod
    def build_model(ctx: JobContext, num_categories: int) -> tuple[PointSegmenter, dict | None]:
        head = SegmentationHeadConfig.of(OmegaConf.to_container(ctx.cfg.suite.head, resolve=True))
        model = PointSegmenter(job_backbone(ctx), ctx.cfg.suite.num_classes, category_dim=num_categories,
                               init=head.init)  # fmt: skip
        return model, load_pretrained(model.backbone, ctx)

    @staticmethod
    def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = model(batch["xyz"], batch["label"])  # (B, N, parts)
        loss = F.cross_entropy(logits.transpose(1, 2), batch["seg"])
        acc = (logits.argmax(-1) == batch["seg"]).float().mean() * 100.0
        return {"loss": loss, "acc": acc.detach()}

    @classmethod
    @torch.no_grad()
    def evaluate(cls, model: nn.Module, views: Dataset, shapes: CachedSamples, parts: list[list[int]],
                 device: torch.device, batch_size: int) -> dict[str, float]:  # fmt: skip
        """Test metrics on the resampled views and on every point of the whole shapes, in eval mode."""
        scores = {"resample": Scores(parts), "all": Scores(parts)}
        with eval_mode(model):
            for batch in DataLoader(views, batch_size=batch_size, shuffle=False):
                cls.score(model, batch, scores["resample"], device)
            for idx in cls.whole_batches(model, shapes, batch_size):
                batch = {k: torch.as_tensor(np.stack([shapes.samples[i][k] for i in idx]))
                         for k in ("xyz", "seg", "label")}
                cls.score(model, batch, scores["all"], device)
        computed = {source: s.compute() for source, s in scores.items()}
        return {f"test_{name}": computed[source][metric] for name, (source, metric) in SCORES.items()}

    @staticmethod
    def score(model: nn.Module, batch: dict[str, Tensor], scores: Scores, device: torch.device) -> None:
        logits = model(batch["xyz"].float().to(device), batch["label"].to(device)).float().cpu()
        scores.update(logits, batch["seg"].long(), batch["label"].long())

    @staticmethod
    def whole_batches(model: nn.Module, shapes: CachedSamples, batch_size: int) -> list[list[int]]:
        sizes = [len(s["xyz"]) for s in shapes.samples]
        need = max(model.backbone.num_group, model.backbone.group_size)
        if sizes and min(sizes) < need:
            small = int(np.argmin(sizes))
            raise DataError(f"test shape {small} has {sizes[small]} points, fewer than suite.num_group / group_size "
                            f"({need}): it cannot be evaluated on all of its points.")
        return size_batches(sizes, batch_size)

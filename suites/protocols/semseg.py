"""Protocol ``semseg``: semantic segmentation fine-tuning (S3DIS; PCP / PQAE / MaDi ``semantic_segmentation``,
reference/protocols.md 1.6, 2.6).

Per job (one method x variant x seed):
- model: the method's backbone + the shared reference segmentation head (:class:`PointSegmenter`: hidden blocks,
  feature propagation to every point, no category input), encoder weights from the pre-training checkpoint; the
  head's init is ``suite.head.init`` (:class:`SegmentationHeadConfig`; PQAE's and MaDi's S3DIS models are
  ``trunc_normal``, which their s3dis recipes set);
- loss: cross-entropy on logits weighted by the training split's ``labelweights`` (= the reference's weighted
  NLL on log_softmax);
- optimizer: one step per batch; ``trainer.reference_double_step`` reproduces the reference's second one (PQAE /
  MaDi ``semantic_segmentation/main.py`` L215 + L222 / L210 + L217); ``trainer.schedule_convention`` is the
  reference's ``reference_seg`` in the paper profile (``range(0, args.epoch)``, ``scheduler.step(epoch)`` at each
  epoch's end); the record's ``deviations`` list whichever differs;
- every epoch: block metrics on the test area's random blocks (the reference's "chopped scenes"), from one global
  confusion matrix (:mod:`bench.metrics.scene`). ``suite.test_blocks`` (:func:`select_test_blocks`, recorded):
  ``redrawn``, the reference's (its test ``S3DISDataset.__getitem__`` draws with the unseeded ``np.random``, so
  every epoch scores new blocks): seed ``TEST_BLOCK_SEED + job seed``, a new draw each epoch; ``fixed``: drawn
  once with seed 0, the same blocks for every epoch, seed and method (a deviation, recorded);
- whole-room (when ``suite.whole_room``): every point of every test room, by sliding ``block_size`` blocks with
  ``stride`` over the room (``dataset_options``); each block is cut into chunks of ``npoints`` (points shuffled,
  the last chunk padded with repeats of the block's points), x / y centred on the block centre, and each point's
  logits are SUMMED over the blocks holding it (padding repeats add no vote); prediction = argmax of the sum.
  Rooms and blocks are streamed: memory is O(room points x classes), nothing pairwise over a room.

Results: ``miou`` (headline), ``macc``, ``oa`` with ``last`` (honest) and ``best`` (paper: at the best-mIoU epoch,
so one row is one checkpoint; the headline also has ``best_epoch``) and, with whole-room, ``room_<m>`` with
``last`` (the last model) and ``best`` (the best-block-mIoU checkpoint). Registered metrics: ``miou``,
``scene_macc``, ``scene_oa`` (:mod:`bench.metrics.scene`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bench.api import REPRESENTATION, JobContext, Protocol, Requirements
from bench.data.base import TransformedDataset
from bench.data.s3dis import room_blocks
from bench.errors import ConfigError
from bench.metrics.scene import SCENE_METRICS, scene_scores
from bench.registry import METRICS, PROTOCOLS
from bench.results import HONEST, INFO, PAPER, JobResult, MetricResult, Statistic
from bench.schema import SuiteConfig
from bench.trainer import REFERENCE_SEG, Selection
from methods.blocks.seg_head import PointSegmenter, SegmentationHeadConfig
from suites.protocols.toolkit import (
    chain,
    check_point_budget,
    double_step_deviation,
    eval_batch_size,
    eval_mode,
    job_backbone,
    job_dataset,
    load_pretrained,
    make_trainer,
    schedule_deviation,
    spec_of,
)

SCORES = ("miou", "macc", "oa")


@dataclass
class SemSegSuite(SuiteConfig):
    """The semseg protocol's settings: whole-room evaluation of the last and the best checkpoint; which test blocks
    each epoch scores (:data:`TEST_BLOCKS`)."""

    whole_room: bool = True
    test_blocks: str = "redrawn"
    head: SegmentationHeadConfig = field(default_factory=SegmentationHeadConfig)  # the head's init


#: ``suite.test_blocks`` values -> what each epoch scores
TEST_BLOCKS = {
    "redrawn": "new random test blocks every epoch, as the reference",
    "fixed": "the same test blocks (seed 0) every epoch, seed and method",
}
#: offset of the redrawn test blocks' seed, so their draws never coincide with the training blocks' (seed, epoch, i)
TEST_BLOCK_SEED = 1_000_003
#: the reference loop and data set the records cite (PQAE / MaDi semantic_segmentation)
REFERENCE_LOOP = "PQAE / MaDi semantic_segmentation/main.py L186-L229 / L182-L224"
FIXED_BLOCKS = ("test blocks drawn once (seed 0) and scored every epoch (suite.test_blocks=fixed); the reference "
                "redraws them every epoch (PQAE / MaDi semantic_segmentation/dataset.py S3DISDataset.__getitem__ "
                "L120 / L62, unseeded np.random; suite.test_blocks=redrawn reproduces it)")


SELECTION = {
    "best": "max over epochs of test-block mIoU (test-set selection, as the papers report)",
    "last": "test-block mIoU after the last epoch (no selection)",
    "<m>_best": "block metric m at the best-mIoU epoch",
    "room_<m>_last": "whole-room metric m (sliding blocks, logits summed per point) of the last-epoch model",
    "room_<m>_best": "whole-room metric m of the best-block-mIoU checkpoint",
}


def select_test_blocks(test_set: TransformedDataset, mode: str, job_seed: int, epoch: int) -> None:
    """Point ``test_set`` at the blocks epoch ``epoch`` scores (``suite.test_blocks``): ``redrawn``: seed
    ``TEST_BLOCK_SEED + job_seed``, epoch ``epoch``'s draw; ``fixed``: seed 0, epoch 0's draw, whatever the epoch."""
    if mode == "fixed":
        test_set.seed = 0
        test_set.set_epoch(0)
    else:
        test_set.seed = TEST_BLOCK_SEED + job_seed
        test_set.set_epoch(epoch)


def deviations(cfg: Any) -> list[str]:
    """Where the job's loop and test blocks differ from the reference (the record's ``details["deviations"]``)."""
    trainer = cfg.trainer
    fixed = [FIXED_BLOCKS] if cfg.suite.test_blocks == "fixed" else []
    return [*double_step_deviation(trainer, REFERENCE_LOOP), *schedule_deviation(trainer, REFERENCE_SEG,
                                                                               REFERENCE_LOOP), *fixed]


def confusion(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts, rows target, columns prediction, through the registered confusion-matrix metric."""
    metric = METRICS.get("miou")(num_classes)
    metric.update(pred.cpu(), target.cpu())
    return metric.counts


@torch.no_grad()
def whole_room_logits(model: nn.Module, xyz: np.ndarray, num_point: int, num_classes: int, *, block_size: float,
                      stride: float, batch_size: int, device: torch.device | str, rng: np.random.Generator,
                      ) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Sum of logits (N, C) float32 and number of votes (N,) of every room point; ``model`` must be in eval mode."""
    total = torch.zeros(len(xyz), num_classes)
    votes = torch.zeros(len(xyz), dtype=torch.int32)
    ones = torch.ones(batch_size * num_point, dtype=torch.int32)
    pending: list[tuple[np.ndarray, np.ndarray, int]] = []  # (chunk xyz, chunk indices, leading non-padding count)

    def flush() -> None:
        points = torch.from_numpy(np.stack([p for p, _, _ in pending])).to(device)
        logits = model(points).float().cpu().reshape(-1, num_classes)
        rows = np.concatenate([j * num_point + np.arange(n) for j, (_, _, n) in enumerate(pending)])
        idx = torch.from_numpy(np.concatenate([i for _, i, _ in pending])[rows])
        total.index_add_(0, idx, logits.index_select(0, torch.from_numpy(rows)))
        votes.index_add_(0, idx, ones[: len(rows)])
        pending.clear()

    for centre, inside in room_blocks(xyz, block_size, stride):
        chunks = math.ceil(inside.size / num_point)
        pad = chunks * num_point - inside.size
        order = np.concatenate([rng.permutation(inside), rng.choice(inside, pad, replace=pad > inside.size)])
        for k in range(chunks):
            part = order[k * num_point : (k + 1) * num_point]
            block = xyz[part].astype(np.float32, copy=True)
            block[:, :2] -= centre.astype(np.float32)
            pending.append((block, part, min(num_point, inside.size - k * num_point)))  # padding comes last
            if len(pending) == batch_size:
                flush()
    if pending:
        flush()
    return total, votes


@PROTOCOLS.register("semseg")
class SemSeg(Protocol):
    name = "semseg"
    requires = Requirements(frozenset({REPRESENTATION}))
    suite_class = SemSegSuite

    @classmethod
    def check(cls, suite: Any) -> None:
        check_point_budget(suite)
        SegmentationHeadConfig.of(OmegaConf.to_container(suite.head, resolve=True))
        if suite.metric != "miou":
            raise ConfigError(f"suite {suite.name}: the semseg protocol's headline is miou, not "
                              f"suite.metric={suite.metric!r}.")
        if suite.test_blocks not in TEST_BLOCKS:
            raise ConfigError(f"suite {suite.name}: suite.test_blocks={suite.test_blocks!r} is not one of "
                              f"{', '.join(TEST_BLOCKS)}.")

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        self.check(suite)
        train_set = job_dataset(ctx, "train", chain(suite.transforms.train) + chain(suite.transforms.augment))
        test_set = job_dataset(ctx, "test", chain(suite.transforms.test))
        model, load_report = self.build_model(ctx)
        trainer = make_trainer(ctx)
        class_weights = train_set.dataset.class_weights()
        if class_weights is None:
            raise ConfigError(f"suite {suite.name}: data set {suite.dataset} declares no class weights (the semseg "
                              "loss is weighted by them)")
        weights = torch.as_tensor(class_weights, dtype=torch.float32)
        eval_bs = eval_batch_size(ctx.cfg.trainer)

        def step(m: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
            logits = m(batch["xyz"])
            target = batch["seg"].long()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                   weight=weights.to(logits.device))  # fmt: skip
            acc = (logits.argmax(-1) == target).float().mean() * 100.0
            return {"loss": loss, "acc": acc.detach()}

        def evaluate(m: nn.Module, epoch: int) -> dict[str, float]:
            select_test_blocks(test_set, suite.test_blocks, ctx.seed, epoch)
            counts = self.block_confusion(m, test_set, suite.num_classes, trainer.device, eval_bs)
            return {f"test_{k}": v for k, v in scene_scores(counts).items()}

        select = Selection("test_miou", spec_of("miou").direction)
        result = trainer.fit(model, train_set, step, evaluate, select=select, on_epoch_end=ctx.on_epoch_end)
        results = self.block_results(result.history, result.best_epoch)
        extra: dict[str, Any] = {"checkpoint_load": load_report, "resumed_from_epoch": result.resumed_from,
                                 "label_weights": [float(w) for w in weights], "test_blocks": suite.test_blocks,
                                 "deviations": deviations(ctx.cfg)}  # fmt: skip
        if suite.whole_room:
            rooms = {"last": self.whole_room(ctx, model, test_set.dataset, trainer.device, eval_bs)}
            extra["room_best_is_last_model"] = not trainer.load_best(model)
            rooms["best"] = self.whole_room(ctx, model, test_set.dataset, trainer.device, eval_bs)
            results += self.room_results(rooms)
        return JobResult(results, result.history, extra)

    @staticmethod
    def build_model(ctx: JobContext) -> tuple[PointSegmenter, dict | None]:
        """Backbone + reference head; the encoder checkpoint is loaded after the head drops the cls token."""
        head = SegmentationHeadConfig.of(OmegaConf.to_container(ctx.cfg.suite.head, resolve=True))
        model = PointSegmenter(job_backbone(ctx), ctx.cfg.suite.num_classes, init=head.init)
        return model, load_pretrained(model.backbone, ctx)

    @staticmethod
    @torch.no_grad()
    def block_confusion(model: nn.Module, dataset, num_classes: int, device, batch_size: int) -> Tensor:
        """Global confusion over every point of every test block (short last batch included)."""
        counts = torch.zeros(num_classes, num_classes, dtype=torch.long)
        with eval_mode(model):
            for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                pred = model(batch["xyz"].to(device)).argmax(-1)
                counts += confusion(pred, batch["seg"], num_classes)
        return counts

    @staticmethod
    def whole_room(ctx: JobContext, model: nn.Module, dataset, device, batch_size: int) -> dict[str, float]:
        """Whole-room miou / macc / oa over every point of the test rooms, room by room (seeded per room)."""
        suite = ctx.cfg.suite
        counts = torch.zeros(suite.num_classes, suite.num_classes, dtype=torch.long)
        with eval_mode(model):
            for r, (_, xyz, labels) in enumerate(dataset.rooms()):
                total, _ = whole_room_logits(
                    model, xyz, suite.npoints, suite.num_classes, block_size=dataset.options["block_size"],
                    stride=dataset.options["stride"], batch_size=batch_size, device=device,
                    rng=np.random.default_rng([ctx.seed, r]),
                )
                counts += confusion(total.argmax(-1), torch.from_numpy(labels.astype(np.int64)), suite.num_classes)
        return scene_scores(counts)

    @staticmethod
    def block_results(history: list[dict[str, float]], best_epoch: int | None) -> list[MetricResult]:
        """miou / macc / oa: ``last`` and ``best`` (at the best-mIoU epoch); the headline also ``best_epoch``.
        ``best_epoch`` (and the fallback) index ``history``; rows without ``test_miou`` (unevaluated) are skipped."""
        scored = [i for i, row in enumerate(history) if "test_miou" in row]
        mious = [history[i]["test_miou"] for i in scored]
        best = best_epoch if best_epoch is not None else scored[int(np.argmax(mious))]
        results = []
        for key in SCORES:
            stats = {"last": Statistic(history[scored[-1]][f"test_{key}"], SELECTION["last"], HONEST),
                     "best": Statistic(history[best][f"test_{key}"], SELECTION["best"] if key == "miou" else
                                       SELECTION["<m>_best"], PAPER)}
            if key == "miou":
                stats["best_epoch"] = Statistic(float(best), "epoch of the best test-block mIoU", INFO)
            results.append(MetricResult.of(spec_of(SCENE_METRICS[key]), stats, name=key))
        return results

    @staticmethod
    def room_results(rooms: dict[str, dict[str, float]]) -> list[MetricResult]:
        """room_miou / room_macc / room_oa of the last model (honest) and the best-block-mIoU checkpoint (paper)."""
        results = []
        for key in SCORES:
            stats = {"last": Statistic(rooms["last"][key], SELECTION["room_<m>_last"], HONEST),
                     "best": Statistic(rooms["best"][key], SELECTION["room_<m>_best"], PAPER)}
            results.append(MetricResult.of(spec_of(SCENE_METRICS[key]), stats, name=f"room_{key}"))
        return results

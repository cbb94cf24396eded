"""Protocol ``finetune``: supervised classification fine-tuning of a method's encoder (ScanObjectNN, ModelNet40,
few-shot).

Per job (one method x variant x seed):
- model: the method's backbone (cls token) + the reference head (pooled tokens -> MLP), encoder weights from the
  pre-training checkpoint when there is one; ``suite.head`` (:class:`ClassificationHeadConfig`) sets the pooling
  (``cls_max``: concat(cls, max over patch tokens), Point-MAE / PQAE; ``mean_max``: concat(mean, max) over all
  tokens, MaDi) and the head's init (``torch_default``, as every reference; ``trunc_normal``), each method's
  recipe for the suite naming its own (``recipe=shared``: the suite's, the same head for every method);
- loss: cross-entropy; ``acc`` and ``macc`` (registered metrics, percent) on the test split after every epoch (the
  papers' selection set); the Trainer keeps the best ``test_<suite.metric>`` epoch in the metric's direction;
- headline ``suite.metric`` (``acc`` or ``macc``): ``last`` (honest: last epoch), ``best`` (paper: best epoch on
  test), ``best_epoch``; with voting (``suite.vote.enabled``) also ``vote_last`` / ``vote_best`` (one
  ``vote.times``-vote pass, logits averaged, on the last / best model), ``vote`` (= ``vote_best``, what the papers
  report; role vote) and, when ``vote.repeats`` > 1, ``vote_best_of_r`` (the best of R passes on the best model,
  the reference's ``--test`` practice; role vote_repeated). The other scored metric gets its ``last``.
- ``suite.validation`` > 0 (``bench tune``): that fraction of the train split, stratified with split seed 0, is held
  out (never trained on, never the test split) and scored each epoch as ``val_acc`` / ``val_macc``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from bench.api import REPRESENTATION, JobContext, Protocol, Requirements
from bench.data.base import TransformedDataset
from bench.data.transforms import build_transform
from bench.errors import ConfigError
from bench.registry import PROTOCOLS
from bench.results import HONEST, INFO, VOTE, VOTE_REPEATED, JobResult, MetricResult, Statistic
from bench.schema import SuiteConfig, VoteConfig
from bench.trainer import Selection, Trainer
from methods.blocks.heads import ClassificationHeadConfig, PointClassifier
from suites.protocols.toolkit import (
    chain,
    check_point_budget,
    curve_result,
    eval_batch_size,
    hold_out,
    job_backbone,
    job_dataset,
    load_pretrained,
    make_trainer,
    predict,
    prepared,
    scores,
    spec_of,
)

SCORED = ("acc", "macc")
SELECTION = {
    "best": "max over epochs of test accuracy (test-set selection, as the papers report)",
    "last": "test accuracy after the last epoch (no selection)",
    "vote_best": "one vote pass (logits averaged) on the best-on-test checkpoint",
    "vote_last": "one vote pass (logits averaged) on the last-epoch model",
    "vote_best_of_r": "max over R vote passes on the best-on-test checkpoint (reference --test practice)",
}


@dataclass
class FinetuneSuite(SuiteConfig):
    """The finetune protocol's settings: test-time voting, the optional validation hold-out, the head options."""

    vote: VoteConfig = field(default_factory=VoteConfig)
    validation: float = 0.0  # > 0: this fraction of train held out (stratified, split seed 0) -> per-epoch val_*
    head: ClassificationHeadConfig = field(default_factory=ClassificationHeadConfig)


def head_options(suite) -> ClassificationHeadConfig:
    """The suite's validated ``suite.head`` (ConfigError naming the key when it is wrong)."""
    return ClassificationHeadConfig.of(OmegaConf.to_container(suite.head, resolve=True))


def step(model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    logits = model(batch["xyz"])
    loss = F.cross_entropy(logits, batch["label"])
    acc = (logits.argmax(-1) == batch["label"]).float().mean() * 100.0
    return {"loss": loss, "acc": acc.detach()}


@PROTOCOLS.register("finetune")
class Finetune(Protocol):
    name = "finetune"
    requires = Requirements(frozenset({REPRESENTATION}))
    suite_class = FinetuneSuite

    @classmethod
    def check(cls, suite) -> None:
        check_point_budget(suite)
        head_options(suite)
        if suite.metric not in SCORED:
            raise ConfigError(f"suite {suite.name}: suite.metric={suite.metric!r} is not scored by the finetune "
                              f"protocol; it scores {', '.join(SCORED)}.")

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        self.check(suite)
        train_set = job_dataset(ctx, "train", chain(suite.transforms.train) + chain(suite.transforms.augment))
        val_set = None
        if suite.validation > 0:
            train_set, val_set = hold_out(ctx, train_set, suite.validation)
        test_set = prepared(ctx, "test", chain(suite.transforms.test))
        backbone = job_backbone(ctx)
        load_report = load_pretrained(backbone, ctx)
        model = PointClassifier(backbone, suite.num_classes, head_options(suite))
        trainer = make_trainer(ctx)
        batch = eval_batch_size(ctx.cfg.trainer)
        scored = [(split, samples, samples.labels()) for split, samples in (("test", test_set), ("val", val_set))
                  if samples is not None]  # labels stacked once, not every epoch

        def evaluate(m: nn.Module, epoch: int) -> dict[str, float]:
            out = {}
            for split, samples, labels in scored:
                found = scores(list(SCORED), predict(m, samples, trainer.device, batch), labels, suite.num_classes)
                out.update({f"{split}_{k}": v for k, v in found.items()})
            return out

        select = Selection(f"test_{suite.metric}", spec_of(suite.metric).direction)
        result = trainer.fit(model, train_set, step, evaluate, select=select, on_epoch_end=ctx.on_epoch_end)
        head = curve_result(suite.metric, suite.metric, result.history, result.best_epoch, SELECTION)
        if suite.vote.enabled:
            head.statistics.update(self.votes(ctx, model, trainer, scored[0][2]))
        others = [MetricResult.of(spec_of(m), {"last": Statistic(result.history[-1][f"test_{m}"], SELECTION["last"],
                                                                 HONEST)}) for m in SCORED if m != suite.metric]
        extra = {"checkpoint_load": load_report, "resumed_from_epoch": result.resumed_from}
        return JobResult([head, *others], result.history, extra)

    @staticmethod
    def votes(ctx: JobContext, model: nn.Module, trainer: Trainer, labels: Tensor) -> dict[str, Statistic]:
        """One vote pass on the last model and on the best checkpoint; best-of-R on the best when R > 1."""
        vote = ctx.cfg.suite.vote
        samples = prepared(ctx, "test", chain(ctx.cfg.suite.transforms.vote))
        each = build_transform(chain(ctx.cfg.suite.transforms.vote_each))
        batch = eval_batch_size(ctx.cfg.trainer)

        def one_pass(repeat: int) -> float:
            views = TransformedDataset(samples, each, seed=ctx.seed * 1000 + repeat + 1)
            return vote_pass(model, views, vote.times, trainer.device, labels, batch)

        out = {"vote_last": Statistic(one_pass(0), SELECTION["vote_last"], INFO)}
        trainer.load_best(model)
        passes = [one_pass(r) for r in range(vote.repeats)]
        out["vote_best"] = Statistic(passes[0], SELECTION["vote_best"], INFO)
        out["vote"] = Statistic(passes[0], SELECTION["vote_best"], VOTE)
        out["vote_repeats"] = Statistic(float(vote.repeats), "vote passes on the best checkpoint", INFO)
        if vote.repeats > 1:
            out["vote_best_of_r"] = Statistic(max(passes), SELECTION["vote_best_of_r"], VOTE_REPEATED, vote.repeats)
        return out


def vote_pass(model: nn.Module, views: TransformedDataset, times: int, device, labels: Tensor, batch: int) -> float:
    """``times`` views per cloud (epoch v of ``views`` = vote v); logits, not probabilities, averaged; acc %."""
    total = None
    for vote in range(times):
        views.set_epoch(vote)
        logits = predict(model, views, device, batch)
        total = logits if total is None else total + logits
    return scores(["acc"], total, labels, int(total.shape[-1]))["acc"]

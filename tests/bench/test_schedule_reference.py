"""``trainer.schedule_convention`` against the references' loops, epoch by epoch.

The reference side is written here from reading the sources, not imported: timm 0.4.5 (the version all three
references pin in requirements.txt), ``timm/scheduler/scheduler.py`` (``Scheduler.__init__`` stores each group's
``initial_lr``; ``step(epoch)`` writes ``get_epoch_values(epoch)`` into the groups) and ``cosine_lr.py``
(``CosineLRScheduler``: the constructor sets every group to ``warmup_lr_init`` when ``warmup_t`` > 0; ``_get_lr``),
with the arguments of Point-MAE ``tools/builder.py`` L67-L75 (t_mul 1, decay_rate 0.1, cycle_limit 1,
t_in_epochs) and ``segmentation/main.py`` L149-L157; driven by the loops of Point-MAE ``tools/runner_finetune.py``
(L103 ``range(start_epoch, config.max_epoch + 1)``, L192 ``scheduler.step(epoch)``, L201 validate when
``epoch % args.val_freq == 0 and epoch != 0``, val_freq 1) and ``segmentation/main.py`` (L165
``range(start_epoch, args.epoch)``, L207 ``scheduler.step(epoch)``, a test pass every epoch). PQAE and MaDi run
the same loops (runner_finetune.py L100 / L95, runner_pretrain.py L111 / L107, semantic_segmentation/main.py
L186 / L182).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bench.config import resolve
from bench.errors import ConfigError
from bench.metrics.base import MAX
from bench.schema import TrainerConfig
from bench.trainer import (
    REFERENCE_RUNNER,
    REFERENCE_SEG,
    SCHEDULE_CONVENTIONS,
    Selection,
    Trainer,
    epoch_lr,
    epochs_run,
    is_evaluated,
    lr_at,
)


class TimmCosine:
    """timm 0.4.5 ``CosineLRScheduler`` as the references build it, on a real optimizer."""

    def __init__(self, optimizer, t_initial, lr_min, warmup_t, warmup_lr_init, decay_rate=0.1, cycle_limit=1):
        self.optimizer = optimizer
        for group in optimizer.param_groups:  # Scheduler.__init__
            group.setdefault("initial_lr", group["lr"])
        self.base_values = [group["initial_lr"] for group in optimizer.param_groups]
        self.update_groups(self.base_values)
        self.t_initial, self.lr_min, self.decay_rate, self.cycle_limit = t_initial, lr_min, decay_rate, cycle_limit
        self.warmup_t, self.warmup_lr_init = warmup_t, warmup_lr_init
        if self.warmup_t:
            self.warmup_steps = [(v - warmup_lr_init) / self.warmup_t for v in self.base_values]
            self.update_groups(self.warmup_lr_init)
        else:
            self.warmup_steps = [1 for _ in self.base_values]

    def _get_lr(self, t):
        if t < self.warmup_t:
            return [self.warmup_lr_init + t * s for s in self.warmup_steps]
        i = t // self.t_initial  # t_mul == 1; warmup_prefix False: t stays absolute
        t_i = self.t_initial
        t_curr = t - self.t_initial * i
        gamma = self.decay_rate**i
        lr_min = self.lr_min * gamma
        lr_max_values = [v * gamma for v in self.base_values]
        if self.cycle_limit == 0 or (self.cycle_limit > 0 and i < self.cycle_limit):
            return [lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr / t_i))
                    for lr_max in lr_max_values]
        return [self.lr_min for _ in self.base_values]

    def step(self, epoch):
        self.update_groups(self._get_lr(epoch))

    def update_groups(self, values):
        if not isinstance(values, (list, tuple)):
            values = [values] * len(self.optimizer.param_groups)
        for group, value in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = value


def reference_loop(cfg: TrainerConfig, runner: bool) -> tuple[list[float], list[int]]:
    """(lr of every epoch, the epochs tested) of the runner (``runner``) or the segmentation script's loop."""
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=cfg.lr, weight_decay=0.05)
    scheduler = TimmCosine(optimizer, t_initial=cfg.epochs, lr_min=cfg.min_lr, warmup_t=cfg.warmup_epochs,
                           warmup_lr_init=cfg.warmup_lr_init)  # fmt: skip
    lrs, tested = [], []
    for epoch in range(0, cfg.epochs + 1 if runner else cfg.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])  # the lr every batch of this epoch steps with
        scheduler.step(epoch)
        if not runner or (epoch % 1 == 0 and epoch != 0):
            tested.append(epoch)
    return lrs, tested


class DictData(TensorDataset):
    def __getitem__(self, index):
        return {"xyz": self.tensors[0][index]}


def ours(cfg: TrainerConfig) -> tuple[list[float], list[int], object]:
    """(lr of every epoch, the epochs evaluated, the TrainResult) of one Trainer.fit on a tiny model."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    seen: list[int] = []

    def evaluate(m, epoch):
        seen.append(epoch)
        return {"test_score": 100.0 - epoch}  # falls every epoch: an evaluated epoch 0 would be the best

    def step(m, batch):
        return {"loss": m(batch["xyz"]).pow(2).mean()}

    data = DictData(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)))
    result = Trainer(cfg, seed=0).fit(model, data, step, evaluate, select=Selection("test_score", MAX))
    return [row["lr"] for row in result.history], seen, result


SHAPES = [(12, 3), (6, 0), (4, 4), (5, 1)]  # (epochs, warm-up epochs): warm-up, none, as long as the run, one


@pytest.mark.parametrize("epochs,warmup", SHAPES)
@pytest.mark.parametrize("convention", [REFERENCE_RUNNER, REFERENCE_SEG])
def test_reference_conventions_run_the_reference_loops_epoch_by_epoch(convention, epochs, warmup):
    cfg = TrainerConfig(epochs=epochs, batch_size=8, lr=5e-4, warmup_epochs=warmup, grad_clip=None,
                        schedule_convention=convention)  # fmt: skip
    lrs, tested = reference_loop(cfg, runner=convention == REFERENCE_RUNNER)
    got_lrs, evaluated, result = ours(cfg)
    assert len(got_lrs) == len(lrs) == epochs_run(cfg)
    assert got_lrs == pytest.approx(lrs, rel=1e-12, abs=0.0)
    assert evaluated == tested
    assert [e for e in range(len(lrs)) if is_evaluated(e, cfg)] == tested
    assert result.best_epoch == tested[0]  # the first evaluated epoch is the best; epoch 0 only when evaluated


def test_runner_convention_is_301_epochs_for_max_epoch_300_and_epoch_0_runs_at_1e_6():
    cfg = TrainerConfig(epochs=300, lr=5e-4, warmup_epochs=10, schedule_convention=REFERENCE_RUNNER)
    lrs, tested = reference_loop(cfg, runner=True)
    assert epochs_run(cfg) == len(lrs) == 301 and tested == list(range(1, 301))
    assert [epoch_lr(e, cfg) for e in range(301)] == pytest.approx(lrs, rel=1e-12, abs=0.0)
    assert epoch_lr(0, cfg) == epoch_lr(1, cfg) == 1e-6
    # epoch 11 runs at f(10), the first cosine value, taken at the absolute t = 10 (warm-up is not a prefix)
    assert epoch_lr(11, cfg) == pytest.approx(1e-6 + 0.5 * (5e-4 - 1e-6) * (1 + math.cos(math.pi * 10 / 300)))
    assert epoch_lr(300, cfg) == lr_at(299, cfg) > cfg.min_lr  # the last epoch is one step short of the floor


def test_unevaluated_epoch_keeps_its_training_row_without_test_keys():
    cfg = TrainerConfig(epochs=3, batch_size=8, warmup_epochs=1, schedule_convention=REFERENCE_RUNNER)
    _, _, result = ours(cfg)
    assert [row["epoch"] for row in result.history] == [0.0, 1.0, 2.0, 3.0]
    assert "test_score" not in result.history[0] and "train_loss" in result.history[0]
    assert all("test_score" in row for row in result.history[1:])


def test_pointbench_convention_runs_epoch_e_at_f_e_and_evaluates_every_epoch():
    cfg = TrainerConfig(epochs=6, batch_size=8, warmup_epochs=2, grad_clip=None)
    got_lrs, evaluated, result = ours(cfg)
    assert cfg.schedule_convention == "pointbench" and epochs_run(cfg) == 6
    assert got_lrs == [lr_at(e, cfg) for e in range(6)] and evaluated == list(range(6)) and result.best_epoch == 0
    lrs, _ = reference_loop(cfg, runner=False)
    assert got_lrs[:-1] == pytest.approx(lrs[1:], rel=1e-12, abs=0.0)  # the reference runs one epoch behind


def test_an_unknown_convention_is_a_config_error():
    with pytest.raises(ConfigError, match="trainer.schedule_convention='timm'.*pointbench"):
        Trainer(TrainerConfig(schedule_convention="timm"), seed=0)
    assert set(SCHEDULE_CONVENTIONS) == {"pointbench", "reference_runner", "reference_seg"}


@pytest.mark.parametrize("suite,method,fine_tuning", [
    ("scanobjectnn", "point_mae", REFERENCE_RUNNER), ("modelnet40", "point_pqae", REFERENCE_RUNNER),
    ("fewshot", "point_madi", REFERENCE_RUNNER), ("shapenetpart", "point_madi", REFERENCE_SEG),
    ("s3dis", "point_pqae", REFERENCE_SEG),
])  # fmt: skip
def test_paper_profile_sets_the_reference_loop_and_demo_keeps_ours(suite, method, fine_tuning):
    paper = resolve(suite, method, profile="paper")
    assert paper.trainer.schedule_convention == fine_tuning
    assert paper.pretrain.trainer.schedule_convention == REFERENCE_RUNNER  # tools/runner_pretrain.py
    demo = resolve(suite, method, profile="demo")
    assert demo.trainer.schedule_convention == demo.pretrain.trainer.schedule_convention == "pointbench"

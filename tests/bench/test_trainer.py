"""The Trainer: schedule values, parameter groups, best/last checkpoints, bit-identical resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bench.api import Method, MethodConfig, default_param_groups
from bench.metrics.base import MAX, MIN
from bench.schema import TrainerConfig
from bench.trainer import Selection, Trainer, lr_at, make_deterministic, param_groups


def test_lr_schedule_matches_timm_cosine_values():
    cfg = TrainerConfig(epochs=10, lr=1e-3, warmup_epochs=2, warmup_lr_init=1e-6, min_lr=1e-6)
    assert lr_at(0, cfg) == pytest.approx(1e-6)
    assert lr_at(1, cfg) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    # after warm-up timm (warmup_prefix=False) evaluates the cosine at the absolute epoch t
    assert lr_at(2, cfg) == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * 2 / 10)))
    assert lr_at(5, cfg) == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6))
    assert lr_at(10, cfg) == pytest.approx(1e-6)


def test_param_groups_exclude_biases_norms_and_tokens():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 4)
            self.norm = nn.LayerNorm(4)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))

    no_decay, decay = param_groups(Tiny(), 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert len(no_decay["params"]) == 4  # fc.bias, norm.weight, norm.bias, cls_token


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


class DictData(TensorDataset):
    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return {"xyz": x, "label": y}


def step(model, batch):
    loss = ((model(batch["xyz"]).squeeze(-1) - batch["label"]) ** 2).mean()
    return {"loss": loss}


def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    return DictData(x, x.sum(-1))


def evaluate(model, epoch):
    model.eval()
    with torch.no_grad():
        score = -float(model(torch.ones(4, 3)).sub(3).abs().mean())
    model.train()
    return {"test_score": score}


class Killed(Exception):
    pass


def kill_after(epoch_to_die):
    def hook(epoch, row):
        if epoch == epoch_to_die:
            raise Killed

    return hook


def fit(workdir, on_epoch_end=None):
    cfg = TrainerConfig(epochs=4, batch_size=16, lr=1e-2, warmup_epochs=1, grad_clip=1.0)
    torch.manual_seed(123)
    model = Regressor()
    trainer = Trainer(cfg, seed=7, workdir=workdir)
    result = trainer.fit(model, make_data(), step, evaluate, select=Selection("test_score", MAX),
                         on_epoch_end=on_epoch_end)
    return model, result


def test_resume_is_bit_identical(tmp_path):
    straight, straight_result = fit(tmp_path / "a")
    with pytest.raises(Killed):
        fit(tmp_path / "b", on_epoch_end=kill_after(1))  # killed after two epochs (last.pt of epoch 1 written)
    resumed, resumed_result = fit(tmp_path / "b")
    assert resumed_result.resumed_from == 1
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [r["train_loss"] for r in straight_result.history] == [r["train_loss"] for r in resumed_result.history]


def test_best_checkpoint_is_the_best_epoch(tmp_path):
    model, result = fit(tmp_path)
    scores = [row["test_score"] for row in result.history]
    assert result.best_epoch == scores.index(max(scores))
    trainer = Trainer(TrainerConfig(epochs=4), seed=0, workdir=tmp_path)
    fresh = Regressor()
    assert trainer.load_best(fresh)
    assert evaluate(fresh, 0)["test_score"] == pytest.approx(max(scores))


def test_non_finite_loss_stops_training():
    cfg = TrainerConfig(epochs=1, batch_size=8, warmup_epochs=0)

    def bad_step(model, batch):
        return {"loss": model(batch["xyz"]).sum() * float("nan")}

    with pytest.raises(FloatingPointError, match="non-finite loss"):
        Trainer(cfg, seed=0).fit(Regressor(), make_data(), bad_step)


@pytest.mark.parametrize("double", [False, True])
def test_one_batch_matches_the_reference_update(double):
    """One full batch, no warm-up: the Trainer's weights equal a hand-written loop of the references' update,
    ``step; clip; step`` when ``reference_double_step`` is set (protocols.md 2.5), else ``clip; step``."""
    cfg = TrainerConfig(epochs=1, batch_size=64, lr=1e-2, warmup_epochs=0, grad_clip=0.5,
                        reference_double_step=double)
    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    theirs = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    theirs.load_state_dict(ours.state_dict())
    Trainer(cfg, seed=0).fit(ours, make_data(), step)

    data = make_data()
    optimizer = torch.optim.AdamW(param_groups(theirs, cfg.weight_decay), lr=cfg.lr)
    loss = step(theirs, {"xyz": data.tensors[0], "label": data.tensors[1]})["loss"]
    loss.backward()
    if double:
        optimizer.step()
    nn.utils.clip_grad_norm_(theirs.parameters(), cfg.grad_clip)
    optimizer.step()
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_selection_follows_the_metric_direction(tmp_path):
    """``min``: best.pt keeps the epoch with the lowest value (e.g. a Chamfer distance), not the highest."""
    cfg = TrainerConfig(epochs=4, batch_size=16, lr=1e-2, warmup_epochs=1, grad_clip=1.0)
    torch.manual_seed(123)
    result = Trainer(cfg, seed=7, workdir=tmp_path).fit(Regressor(), make_data(), step, evaluate,
                                                        select=Selection("test_score", MIN))
    scores = [row["test_score"] for row in result.history]
    assert result.best_epoch == scores.index(min(scores)) and result.best_value == min(scores)


class Hooked(Method):
    """A Method with its own parameter groups (the second trains at a tenth of the lr) and a step hook."""

    name = "hooked"

    def __init__(self):
        super().__init__(MethodConfig(name="hooked"))
        self.fast, self.slow = nn.Linear(3, 1), nn.Linear(3, 1)
        self.seen: list[tuple[int, int]] = []

    def param_groups(self, weight_decay):
        return [{"params": list(self.fast.parameters())},
                {"params": list(self.slow.parameters()), "lr_scale": 0.1}]

    def pretrain_step(self, batch):
        pred = self.fast(batch["xyz"]) + self.slow(batch["xyz"])
        return {"loss": ((pred.squeeze(-1) - batch["label"]) ** 2).mean()}

    def on_step(self, step, epoch):
        self.seen.append((step, epoch))
        return {"hooked": float(step)}


def test_method_hooks_set_groups_scale_lrs_and_see_every_step(tmp_path):
    cfg = TrainerConfig(epochs=2, batch_size=16, lr=1e-2, warmup_epochs=0, min_lr=1e-2, grad_clip=None)
    method = Hooked()
    seen_lrs = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen_lrs.append(tuple(group["lr"] for group in self.param_groups))
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        result = Trainer(cfg, seed=0, workdir=tmp_path).fit(method, make_data(), lambda m, b: m(b))
    finally:
        torch.optim.AdamW.step = original
    assert len(seen_lrs) == 8 and all(lrs == pytest.approx((1e-2, 1e-3)) for lrs in seen_lrs)
    assert method.seen == [(s, s // 4) for s in range(8)]  # 64 samples / 16 = 4 steps per epoch, counted on
    assert result.history[1]["train_hooked"] == pytest.approx((4 + 5 + 6 + 7) / 4)
    assert len(default_param_groups(method, 0.05)) == 2  # the default a Method gets without overriding


def test_deterministic_switches_torch_to_deterministic_kernels():
    try:
        assert make_deterministic(True) and torch.are_deterministic_algorithms_enabled()
        assert not make_deterministic(False)
    finally:
        torch.use_deterministic_algorithms(False)

"""The Trainer: schedule values, parameter groups, best/last checkpoints, bit-identical resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from bench.schema import TrainerConfig
from bench.trainer import Trainer, lr_at, param_groups


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
    result = trainer.fit(model, make_data(), step, evaluate, select="test_score", on_epoch_end=on_epoch_end)
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

"""The one training loop, shared by pre-training and every downstream protocol.

What varies between uses comes in as callables: ``step_fn(model, batch) -> {"loss", ...}`` (a method's
``pretrain_step`` or a protocol's supervised loss) and ``evaluate(model, epoch) -> {metric: value}``.

Conventions:
- AdamW, no weight decay on 1-D parameters, biases and parameters whose name contains "token" (reference builder).
- Learning rate per epoch from :func:`lr_at` (timm CosineLRScheduler values, warm-up not a prefix); the reference
  calls ``scheduler.step(epoch)`` at the *end* of epoch e, so its epoch e+1 runs at f(e): we run epoch e at f(e).
- Gradients clipped to ``grad_clip`` (L2 norm over all parameters) when set.
- bf16 autocast on CUDA when ``amp`` is auto/bf16; CPU runs in float32 (bit-identical for the same seed).
- Resume: ``<workdir>/last.pt`` is written atomically after every epoch (model, optimizer, history, RNG state);
  ``fit`` continues from it. ``best.pt`` holds the weights of the epoch with the highest ``select`` metric
  (strictly greater than every earlier epoch, as the reference's ``better_than``).
- DDP-ready: when torch.distributed is initialised the model is wrapped, a DistributedSampler shards the data and
  only rank 0 writes checkpoints. Models never move themselves to a device.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bench.progress import NullProgress, Progress
from bench.schema import TrainerConfig

StepFn = Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]
EvalFn = Callable[[nn.Module, int], dict[str, float]]
EpochHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int | None = None
    best_value: float | None = None
    resumed_from: int | None = None  # epoch of the checkpoint the run continued from
    wall_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(epoch: int, cfg: TrainerConfig) -> float:
    """timm CosineLRScheduler(t_initial=epochs, warmup_t, warmup_lr_init, lr_min) value at epoch ``epoch``."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr_init + epoch * (cfg.lr - cfg.warmup_lr_init) / cfg.warmup_epochs
    if epoch >= cfg.epochs:
        return cfg.min_lr
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * epoch / cfg.epochs))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed weights, and (no decay) 1-D params, biases and ``*token*`` parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim <= 1 or name.endswith(".bias") or "token" in name
        (no_decay if skip else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Runs ``epochs`` of ``step_fn`` over ``train_set`` with evaluation, checkpoints and resume."""

    def __init__(
        self,
        cfg: TrainerConfig,
        *,
        seed: int,
        workdir: Path | None = None,
        progress: Progress | None = None,
        desc: str = "train",
    ) -> None:
        self.cfg = cfg
        self.seed = seed
        self.workdir = workdir
        self.progress = progress or NullProgress()
        self.desc = desc
        self.device = resolve_device(cfg.device)
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.is_main = not self.distributed or torch.distributed.get_rank() == 0
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)

    # --- public ----------------------------------------------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        train_set: Dataset,
        step_fn: StepFn,
        evaluate: EvalFn | None = None,
        select: str | None = None,
        on_epoch_end: EpochHook | None = None,
    ) -> TrainResult:
        seed_everything(self.seed)
        model.to(self.device)
        optimizer = torch.optim.AdamW(param_groups(model, self.cfg.weight_decay), lr=self.cfg.lr)
        state = self._resume(model, optimizer)
        result = TrainResult(history=state["history"], best_epoch=state["best_epoch"], best_value=state["best_value"])
        result.resumed_from = state["epoch"] if state["epoch"] >= 0 else None
        wrapped = self._wrap(model)
        start = time.perf_counter()
        self.progress.start(self.desc, total=self.cfg.epochs, completed=state["epoch"] + 1)
        for epoch in range(state["epoch"] + 1, self.cfg.epochs):
            row = self._train_epoch(wrapped, model, train_set, optimizer, step_fn, epoch)
            if evaluate is not None:
                row.update(evaluate(model, epoch))
            self._track_best(model, row, select, result, epoch)
            result.history.append(row)
            self._save_last(model, optimizer, epoch, result)
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            self.progress.advance(row)
        self.progress.finish()
        result.wall_time_s = time.perf_counter() - start
        return result

    def load_best(self, model: nn.Module) -> bool:
        """Load ``best.pt`` into ``model``; False when no best checkpoint was written."""
        path = self._path("best.pt")
        if path is None or not path.exists():
            return False
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return True

    # --- internals ---------------------------------------------------------------------------------------------
    def _train_epoch(self, wrapped, model, train_set, optimizer, step_fn, epoch: int) -> dict[str, float]:
        lr = lr_at(epoch, self.cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if hasattr(model, "on_epoch_start"):
            model.on_epoch_start(epoch, self.cfg.epochs)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        wrapped.train()
        sums: dict[str, float] = {}
        batches = 0
        tic = time.perf_counter()
        for batch in self._loader(train_set, epoch):
            batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
            with self._autocast():
                out = step_fn(wrapped, batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.desc}: non-finite loss {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
            optimizer.step()
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            batches += 1
        row = {"epoch": float(epoch), "lr": lr, "epoch_time_s": time.perf_counter() - tic}
        row.update({f"train_{k}": v / max(batches, 1) for k, v in sums.items()})
        return row

    def _loader(self, dataset: Dataset, epoch: int) -> DataLoader:
        batch_size = min(self.cfg.batch_size, len(dataset))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        sampler = None
        if self.distributed:
            sampler = torch.utils.data.DistributedSampler(dataset, shuffle=True, seed=self.seed, drop_last=True)
            sampler.set_epoch(epoch)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            generator=generator if sampler is None else None,
            drop_last=True,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,
        )

    def _autocast(self):
        use_bf16 = self.device.type == "cuda" and self.cfg.amp in ("auto", "bf16")
        if self.cfg.amp == "bf16" and self.device.type == "cpu":
            use_bf16 = True
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16)

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def _track_best(self, model, row, select, result: TrainResult, epoch: int) -> None:
        if select is None or select not in row:
            return
        value = row[select]
        if result.best_value is None or value > result.best_value:
            result.best_value, result.best_epoch = value, epoch
            path = self._path("best.pt")
            if path is not None and self.is_main:
                atomic_torch_save(model.state_dict(), path)

    def _save_last(self, model, optimizer, epoch: int, result: TrainResult) -> None:
        path = self._path("last.pt")
        if path is None or not self.is_main:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "history": result.history,
            "best_epoch": result.best_epoch,
            "best_value": result.best_value,
            "torch_rng": torch.get_rng_state(),
        }
        atomic_torch_save(state, path)

    def _resume(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        fresh = {"epoch": -1, "history": [], "best_epoch": None, "best_value": None}
        path = self._path("last.pt")
        if path is None or not path.exists():
            return fresh
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        return {k: state[k] for k in fresh}

    def _path(self, name: str) -> Path | None:
        return None if self.workdir is None else self.workdir / name

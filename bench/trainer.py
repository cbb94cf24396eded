"""The one training loop, shared by pre-training and every downstream protocol.

What varies between uses comes in as callables: ``step_fn(model, batch) -> {"loss", ...}`` (a method's
``pretrain_step`` or a protocol's supervised loss) and ``evaluate(model, epoch) -> {metric: value}``.

Conventions:
- AdamW, no weight decay on 1-D parameters, biases and parameters whose name contains "token" (reference builder).
- Learning rate per epoch: f = :func:`lr_at` (timm CosineLRScheduler values, warm-up not a prefix), read through
  ``trainer.schedule_convention`` (:data:`SCHEDULE_CONVENTIONS`): ``pointbench`` runs ``epochs`` epochs, epoch e at
  f(e), each evaluated. The references build the scheduler before the loop (timm sets the groups to f(0)) and call
  ``scheduler.step(epoch)`` at the *end* of epoch e, so their epoch e runs at f(max(e - 1, 0)):
  ``reference_runner`` (Point-MAE / PQAE / MaDi ``tools/runner_finetune.py`` L103 / L100 / L95, and
  ``runner_pretrain.py``: ``range(start, max_epoch + 1)``) runs ``epochs + 1`` epochs and never evaluates epoch 0
  (``epoch != 0``); ``reference_seg`` (their ``segmentation`` / ``semantic_segmentation`` ``main.py``:
  ``range(start, args.epoch)``) runs ``epochs`` epochs, each evaluated. An unevaluated epoch's history row has no
  evaluation keys, and ``best.pt`` never holds it.
- Gradients clipped to ``grad_clip`` (L2 norm over all parameters) when set. ``reference_double_step`` adds the
  segmentation references' extra step per batch: step on the raw gradient, clip, step again (protocols.md 2.5).
- bf16 autocast on CUDA when ``amp`` is auto/bf16; CPU runs in float32 (bit-identical for the same seed).
- Optimizer: AdamW over the model's groups (a :class:`bench.api.Method` gives its own, a group may scale the lr by
  ``lr_scale``); a Method's ``on_epoch_start`` runs before each epoch and ``on_step`` after each optimizer step.
- Resume: ``<workdir>/last.pt`` is written atomically after every epoch (model, optimizer, history, RNG state,
  step count); ``fit`` continues from it (first removing the ``.*.tmp`` files a killed write left there). ``best.pt``
  holds the weights of the epoch whose ``select`` metric is best in that metric's direction (strictly better than
  every earlier epoch, as the reference's ``better_than``).
- Stop: :func:`bench.interrupt.raise_if_stopped` before every epoch, step and evaluation: on Ctrl-C a pool worker's
  job stops at its next step (KeyboardInterrupt; ``last.pt`` kept). A non-finite loss raises :class:`NonFiniteLoss`.
- ``trainer.deterministic``: deterministic GPU kernels (:func:`make_deterministic`), stated in the record.
- Distributed (``torchrun --nproc_per_node=K bench run ...``; :func:`init_distributed` joins the group, gloo on CPU,
  nccl on CUDA with one device per local rank): the model is wrapped in DistributedDataParallel and
  :class:`SeededDistributedSampler` shards each epoch's *single-process* order, so K ranks with a per-rank batch of
  ``batch_size / K`` (``batch_size`` is the global batch; it must divide by K) step through exactly the batches one
  process would, with gradients averaged over the global batch. Logged train metrics are averaged over ranks.
  Evaluation runs on rank 0 only and its row is broadcast, so best-epoch selection agrees on every rank. Rank 0
  alone writes checkpoints, calls ``on_epoch_end`` and shows progress; a barrier ends ``fit`` so every rank can
  read ``best.pt``. Not reproduced across world sizes: per-rank BatchNorm statistics (no SyncBatchNorm, as the
  reference without ``--sync_bn``) and dropout masks (each rank draws its own). Models never move themselves to a
  device.
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
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from bench.api import Method, default_param_groups
from bench.distributed import (  # noqa: F401 - the runtime's names, re-exported for the runner and tests
    SeededDistributedSampler,
    barrier,
    init_distributed,
    is_distributed,
    is_main_process,
    rank,
    single_process_order,
    world_size,
)
from bench.errors import ConfigError, TrainingError
from bench.interrupt import raise_if_stopped
from bench.io import atomic_torch_save, remove_stale_temps
from bench.metrics.base import Direction
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


class NonFiniteLoss(TrainingError, FloatingPointError):
    """A NaN or infinite loss: a TrainingError for the CLI (exit 6), a FloatingPointError for ``bench tune``."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available; under torchrun a bare ``cuda`` means this process's ``LOCAL_RANK`` device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda" and device.index is None and is_distributed():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def lr_at(epoch: int, cfg: TrainerConfig) -> float:
    """timm CosineLRScheduler(t_initial=epochs, warmup_t, warmup_lr_init, lr_min) value at epoch ``epoch``."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_lr_init + epoch * (cfg.lr - cfg.warmup_lr_init) / cfg.warmup_epochs
    if epoch >= cfg.epochs:
        return cfg.min_lr
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * epoch / cfg.epochs))


#: ``trainer.schedule_convention`` values -> what each runs (f = :func:`lr_at`), as records state it
POINTBENCH, REFERENCE_RUNNER, REFERENCE_SEG = "pointbench", "reference_runner", "reference_seg"
SCHEDULE_CONVENTIONS = {
    POINTBENCH: "trainer.epochs epochs, epoch e at f(e), every epoch evaluated",
    REFERENCE_RUNNER: "trainer.epochs + 1 epochs, epoch e at f(max(e - 1, 0)), epoch 0 not evaluated",
    REFERENCE_SEG: "trainer.epochs epochs, epoch e at f(max(e - 1, 0)), every epoch evaluated",
}


def check_schedule_convention(cfg: TrainerConfig) -> str:
    """The config's convention; ConfigError naming ``trainer.schedule_convention`` when it is not one we know."""
    if cfg.schedule_convention not in SCHEDULE_CONVENTIONS:
        raise ConfigError(f"trainer.schedule_convention={cfg.schedule_convention!r} is not one of "
                          f"{', '.join(SCHEDULE_CONVENTIONS)}.")
    return cfg.schedule_convention


def epochs_run(cfg: TrainerConfig) -> int:
    """Epochs ``fit`` runs: ``epochs``, one more under ``reference_runner`` (its ``range(start, max_epoch + 1)``)."""
    return cfg.epochs + 1 if check_schedule_convention(cfg) == REFERENCE_RUNNER else cfg.epochs


def epoch_lr(epoch: int, cfg: TrainerConfig) -> float:
    """The lr epoch ``epoch`` runs at: f(e) under ``pointbench``; f(max(e - 1, 0)) under the reference conventions
    (timm's constructor sets the groups to f(0), i.e. ``warmup_lr_init``, or ``lr`` without warm-up; then
    ``scheduler.step(e)`` at the end of epoch e sets epoch e + 1's)."""
    if check_schedule_convention(cfg) == POINTBENCH:
        return lr_at(epoch, cfg)
    return lr_at(max(epoch - 1, 0), cfg)


def is_evaluated(epoch: int, cfg: TrainerConfig) -> bool:
    """Whether ``fit`` evaluates epoch ``epoch``: always, except epoch 0 under ``reference_runner`` (the runners'
    ``if epoch % args.val_freq == 0 and epoch != 0``, ``val_freq`` 1)."""
    return not (check_schedule_convention(cfg) == REFERENCE_RUNNER and epoch == 0)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: a Method's own (:meth:`bench.api.Method.param_groups`), else the reference builder's two."""
    if isinstance(model, Method):
        return model.param_groups(weight_decay)
    return default_param_groups(model, weight_decay)


@dataclass(frozen=True)
class Selection:
    """Which epoch ``best.pt`` keeps: the one whose ``key`` (an epoch-row entry, e.g. ``test_acc``) is best in the
    metric's ``direction`` (strictly better than every earlier epoch, as the reference's ``better_than``)."""

    key: str
    direction: Direction


def make_deterministic(enabled: bool) -> bool:
    """``trainer.deterministic``: deterministic kernels (``torch.use_deterministic_algorithms``, cuBLAS workspace
    ``:4096:8``, cuDNN without benchmarking); returns whether it is on, for the record. Off leaves torch as is."""
    if not enabled:
        return False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    return True


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
        self.desc = desc
        self.device = resolve_device(cfg.device)
        self.distributed = is_distributed()
        self.is_main = is_main_process()
        self.progress = (progress or NullProgress()) if self.is_main else NullProgress()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.deterministic = make_deterministic(cfg.deterministic)
        self.epochs = epochs_run(cfg)  # validates trainer.schedule_convention too
        self.step_count = 0

    # --- public ----------------------------------------------------------------------------------------------
    def fit(
        self,
        model: nn.Module,
        train_set: Dataset,
        step_fn: StepFn,
        evaluate: EvalFn | None = None,
        select: Selection | None = None,
        on_epoch_end: EpochHook | None = None,
    ) -> TrainResult:
        """Train :func:`epochs_run` epochs (resuming from ``last.pt``); ``best.pt`` follows ``select``."""
        if self.workdir is not None and self.is_main:
            remove_stale_temps(self.workdir)
        seed_everything(self.seed)
        model.to(self.device)
        optimizer = torch.optim.AdamW(param_groups(model, self.cfg.weight_decay), lr=self.cfg.lr)
        state = self._resume(model, optimizer)
        result = TrainResult(history=state["history"], best_epoch=state["best_epoch"], best_value=state["best_value"])
        result.resumed_from = state["epoch"] if state["epoch"] >= 0 else None
        wrapped = self._wrap(model)
        start = time.perf_counter()
        self.progress.start(self.desc, total=self.epochs, completed=state["epoch"] + 1)
        for epoch in range(state["epoch"] + 1, self.epochs):
            raise_if_stopped()
            row = self._train_epoch(wrapped, model, train_set, optimizer, step_fn, epoch)
            if evaluate is not None and is_evaluated(epoch, self.cfg):
                raise_if_stopped()
                row.update(self._evaluate(evaluate, model, epoch))
            self._track_best(model, row, select, result, epoch)
            result.history.append(row)
            self._save_last(model, optimizer, epoch, result)
            if on_epoch_end is not None and self.is_main:
                on_epoch_end(epoch, row)
            self.progress.advance(row)
        self.progress.finish()
        barrier()  # rank 0's last.pt / best.pt are on disk before any rank goes on
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
        lr = epoch_lr(epoch, self.cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr
        if isinstance(model, Method):
            model.on_epoch_start(epoch, self.cfg.epochs)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        wrapped.train()
        sums: dict[str, float] = {}
        batches = 0
        tic = time.perf_counter()
        loader = self._loader(train_set, epoch)
        for batch in loader:
            raise_if_stopped()
            batch = {k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}
            with self._autocast():
                out = step_fn(wrapped, batch)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise self._diverged(float(loss.detach()), epoch, batches + 1, len(loader), lr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.reference_double_step:
                optimizer.step()  # the references' first step, on the unclipped gradient
            if self.cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
            optimizer.step()
            if isinstance(model, Method):
                out = {**out, **model.on_step(self.step_count, epoch)}
            self.step_count += 1
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach() if isinstance(value, Tensor) else value)
            batches += 1
        if self.distributed:
            sums = self._mean_over_ranks(sums)
        row = {"epoch": float(epoch), "lr": lr, "epoch_time_s": time.perf_counter() - tic}
        row.update({f"train_{k}": v / max(batches, 1) for k, v in sums.items()})
        return row

    def _diverged(self, loss: float, epoch: int, step: int, steps: int, lr: float) -> NonFiniteLoss:
        """Epoch and step shown 1-based (as the progress bar counts); the hint names a job's and a pre-training's
        lr key, as the Trainer cannot tell which it runs."""
        lr_now, clip = self.cfg.lr, self.cfg.grad_clip
        return NonFiniteLoss(
            f"{self.desc}: non-finite loss {loss} at epoch {epoch + 1}/{self.epochs}, step {step}/{steps} of that "
            f"epoch (global step {self.step_count + 1}), lr {lr:.3g} at that step: training diverged. Lower the lr of "
            f"this stage (trainer.lr; for a pre-training pretrain.trainer.lr or pretrain.stages.<i>.trainer.lr; now "
            f"{lr_now:g}, try e.g. {lr_now / 10:g}) or set "
            + (f"a lower trainer.grad_clip (now {clip:g})." if clip else "trainer.grad_clip=1.0."))

    def _loader(self, dataset: Dataset, epoch: int) -> DataLoader:
        """Shuffled, drop_last batches; under DDP ``batch_size`` is global and each rank loads its slice."""
        batch_size = min(self.cfg.batch_size, len(dataset))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        sampler = None
        if self.distributed:
            if batch_size % world_size():
                raise ConfigError(f"trainer.batch_size={batch_size} (the global batch) is not divisible by the "
                                  f"{world_size()} processes of torchrun; choose a multiple of {world_size()}.")
            sampler = SeededDistributedSampler(dataset, batch_size, self.seed, world_size(), rank())
            sampler.set_epoch(epoch)
            batch_size = sampler.local_batch
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

    def _evaluate(self, evaluate: EvalFn, model: nn.Module, epoch: int) -> dict[str, float]:
        """``evaluate`` on rank 0 only; its row is broadcast so every rank selects the same best epoch."""
        if not self.distributed:
            return evaluate(model, epoch)
        box = [evaluate(model, epoch) if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @staticmethod
    def _mean_over_ranks(sums: dict[str, float]) -> dict[str, float]:
        keys = sorted(sums)
        values = torch.tensor([sums[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(values)
        return {k: float(v) / world_size() for k, v in zip(keys, values, strict=True)}

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
        if select is None or select.key not in row:
            return
        value = row[select.key]
        if select.direction.better(value, result.best_value):
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
            "step_count": self.step_count,
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
        self.step_count = int(state.get("step_count", 0))
        return {k: state[k] for k in fresh}

    def _path(self, name: str) -> Path | None:
        return None if self.workdir is None else self.workdir / name

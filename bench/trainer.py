"""The one training loop, shared by pre-training and every downstream protocol.

What varies between uses comes in as callables: ``step_fn(model, batch) -> {"loss", ...}`` (a method's
``pretrain_step`` or a protocol's supervised loss) and ``evaluate(model, epoch) -> {metric: value}``.

Conventions:
- AdamW, no weight decay on 1-D parameters, biases and parameters whose name contains "token" (reference builder).
- Learning rate per epoch from :func:`lr_at` (timm CosineLRScheduler values, warm-up not a prefix); the reference
  calls ``scheduler.step(epoch)`` at the *end* of epoch e, so its epoch e+1 runs at f(e): we run epoch e at f(e).
- Gradients clipped to ``grad_clip`` (L2 norm over all parameters) when set. ``reference_double_step`` adds the
  segmentation references' extra step per batch: step on the raw gradient, clip, step again (protocols.md 2.5).
- bf16 autocast on CUDA when ``amp`` is auto/bf16; CPU runs in float32 (bit-identical for the same seed).
- Resume: ``<workdir>/last.pt`` is written atomically after every epoch (model, optimizer, history, RNG state);
  ``fit`` continues from it. ``best.pt`` holds the weights of the epoch with the highest ``select`` metric
  (strictly greater than every earlier epoch, as the reference's ``better_than``).
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
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from bench.errors import ConfigError
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
    """``auto``: CUDA when available; under torchrun a bare ``cuda`` means this process's ``LOCAL_RANK`` device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)
    if device.type == "cuda" and device.index is None and is_distributed():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


# --- distributed (torchrun) --------------------------------------------------------------------------------------
def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def init_distributed() -> bool:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment).

    Backend: nccl when CUDA is available (device ``LOCAL_RANK``), gloo otherwise. Returns whether this process is
    part of a group of more than one; a single process (no torchrun) is left alone.
    """
    if is_distributed():
        return world_size() > 1
    if not dist.is_available() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def single_process_order(n: int, batch_size: int, seed: int, epoch: int) -> list[int]:
    """Indices of epoch ``epoch`` in the order a single process's shuffled DataLoader draws them (drop_last).

    Drawn through that very DataLoader (over ``range(n)``, same generator seed), so it is the same order by
    construction, whatever the DataLoader draws from the generator before shuffling.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    loader = DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=generator, drop_last=True)
    return [int(i) for batch in loader for i in batch]


class SeededDistributedSampler(DistributedSampler):
    """Rank ``r``'s share of the single-process order: each global batch of ``global_batch`` indices is cut into
    ``num_replicas`` consecutive slices of ``global_batch / num_replicas``; rank r takes slice r. Call ``set_epoch``.
    """

    def __init__(self, dataset: Dataset, global_batch: int, seed: int, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.global_batch = global_batch
        self.local_batch = global_batch // num_replicas
        self.num_samples = len(dataset) // global_batch * self.local_batch  # type: ignore[arg-type]
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        order = single_process_order(len(self.dataset), self.global_batch, self.seed, self.epoch)  # type: ignore
        steps = len(order) // self.global_batch
        shards = torch.tensor(order, dtype=torch.long).view(steps, self.num_replicas, self.local_batch)
        return iter(shards[:, self.rank].reshape(-1).tolist())

    def __len__(self) -> int:
        return self.num_samples


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
        self.desc = desc
        self.device = resolve_device(cfg.device)
        self.distributed = is_distributed()
        self.is_main = is_main_process()
        self.progress = (progress or NullProgress()) if self.is_main else NullProgress()
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
            if self.cfg.reference_double_step:
                optimizer.step()  # the references' first step, on the unclipped gradient
            if self.cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
            optimizer.step()
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            batches += 1
        if self.distributed:
            sums = self._mean_over_ranks(sums)
        row = {"epoch": float(epoch), "lr": lr, "epoch_time_s": time.perf_counter() - tic}
        row.update({f"train_{k}": v / max(batches, 1) for k, v in sums.items()})
        return row

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

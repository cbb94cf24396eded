"""The distributed runtime (``torchrun --nproc_per_node=K bench run ...``): process group, ranks, barriers, and the
sampler that gives K ranks exactly the batches one process would see (the Trainer's conventions, bench.trainer).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


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



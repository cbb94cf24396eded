"""Patch masks for masked-modelling pretexts. A mask is (B, G) bool, True = masked (hidden from the encoder).

Both masks draw from torch's global RNG (the Trainer seeds it), on the device of their input, and mask exactly
``num_masked(ratio, G) = round(ratio * G)`` patches in every sample. (The reference uses ``int(ratio * G)``;
the two agree at Point-MAE's 64 groups: 38.)
"""

from __future__ import annotations

import torch
from torch import Tensor


def num_masked(ratio: float, num_group: int) -> int:
    """Number of masked patches per sample: round(ratio * num_group)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    return int(round(ratio * num_group))


def _mask_from_order(order: Tensor, count: int) -> Tensor:
    """Mask the first ``count`` patches of each row's ``order`` (B, G) of patch indices."""
    mask = torch.zeros(order.shape, dtype=torch.bool, device=order.device)
    if count > 0:
        mask.scatter_(1, order[:, :count], True)
    return mask


def random_mask(batch_size: int, num_group: int, ratio: float, device: torch.device | str | None = None) -> Tensor:
    """Point-MAE ``rand`` mask: an independent uniformly random subset of patches per sample."""
    count = num_masked(ratio, num_group)
    order = torch.rand(batch_size, num_group, device=device).argsort(dim=1)
    return _mask_from_order(order, count)


def block_mask(centers: Tensor, ratio: float) -> Tensor:
    """Point-MAE ``block`` mask (``_mask_center_block``): per sample, pick a random centre and mask the patches
    whose centres are nearest to it (itself included). ``centers`` is (B, G, 3)."""
    b, g, _ = centers.shape
    count = num_masked(ratio, g)
    anchor_idx = torch.randint(0, g, (b,), device=centers.device)
    anchor = centers[torch.arange(b, device=centers.device), anchor_idx].unsqueeze(1)
    distance = (centers.detach() - anchor.detach()).norm(dim=-1)
    order = distance.argsort(dim=1, stable=True)
    return _mask_from_order(order, count)

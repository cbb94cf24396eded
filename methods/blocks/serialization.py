"""Serialisation of patch centres: a fixed slot index per patch, so a sequence model can name "slot k".

``morton_order``: the Z-order (Morton) curve of the centres in a FIXED frame, [-extent, extent]^3 (clamped), with
``bits`` bits per axis interleaved as x, y, z from the most significant bit; ties keep the FPS order (stable sort).
A fixed frame (not each cloud's own box) keeps slot k in roughly the same region across clouds of a normalised
data set. Point-MGE serialises its patches in Morton order (themoonlight review, [2nd]; the unofficial code's
``morton_sort``), wave2.md 1.2.
"""

from __future__ import annotations

import torch
from torch import Tensor


def morton_codes(centers: Tensor, bits: int = 10, extent: float = 1.0) -> Tensor:
    """(B, G, 3) -> (B, G) int64 Morton codes of the centres quantised to ``2**bits`` cells per axis."""
    if not 1 <= bits <= 20:
        raise ValueError(f"morton_codes: bits must lie in [1, 20], got {bits}")
    cells = (2**bits) - 1
    grid = ((centers.detach().clamp(-extent, extent) + extent) / (2 * extent) * cells).round().long()
    code = torch.zeros(centers.shape[:-1], dtype=torch.long, device=centers.device)
    for bit in range(bits - 1, -1, -1):
        for axis in range(3):
            code = (code << 1) | ((grid[..., axis] >> bit) & 1)
    return code


def morton_order(centers: Tensor, bits: int = 10, extent: float = 1.0) -> Tensor:
    """(B, G, 3) -> (B, G) permutation sorting each cloud's centres along the Morton curve (stable)."""
    return torch.sort(morton_codes(centers, bits, extent), dim=1, stable=True).indices


def apply_order(order: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Reorder (B, G, ...) tensors along dim 1 by ``order`` (B, G)."""
    out = []
    for t in tensors:
        index = order.view(*order.shape, *([1] * (t.dim() - 2))).expand(*order.shape, *t.shape[2:])
        out.append(t.gather(1, index))
    return tuple(out)

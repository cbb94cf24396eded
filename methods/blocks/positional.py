"""Fixed (parameter-free) positional embeddings.

Convention of :func:`sinusoidal_embedding` (PCP-MAE / Point-PQAE ``models/pos.py``): for ``c`` input coordinates
and an output width ``dim`` divisible by ``2c``, each coordinate gets ``F = dim / (2c)`` frequencies
``w_i = 10000 ** (-i / F)``, i = 0..F-1, and contributes ``[sin(p * w), cos(p * w)]``; the blocks of the
coordinates are concatenated in coordinate order: ``[sin p0w, cos p0w, sin p1w, cos p1w, ...]``. Coordinates are
used as given (no rescaling). PCP-MAE embeds 3-D centres (F = dim / 6); Point-PQAE's VRPE embeds 6-D
(centre, view offset) pairs (F = dim / 12).
"""

from __future__ import annotations

import torch
from torch import Tensor


def sinusoidal_frequencies(num: int, device: torch.device | None = None) -> Tensor:
    """(num,) frequencies 1 / 10000 ** (i / num), i = 0..num-1 (float32)."""
    exponent = torch.arange(num, dtype=torch.float32, device=device) / num
    return 1.0 / 10000**exponent


def sinusoidal_embedding(coords: Tensor, dim: int) -> Tensor:
    """(..., c) coordinates -> (..., dim) sin/cos embedding (see the module docstring); ``dim % (2c) == 0``."""
    c = coords.shape[-1]
    if c < 1 or dim % (2 * c) != 0:
        raise ValueError(f"sinusoidal_embedding: width {dim} must be a positive multiple of 2 x {c} coordinates")
    freqs = sinusoidal_frequencies(dim // (2 * c), coords.device)
    angles = coords.unsqueeze(-1) * freqs  # (..., c, F)
    emb = torch.stack([angles.sin(), angles.cos()], dim=-2)  # (..., c, 2, F)
    return emb.flatten(-3).to(coords.dtype)

"""Decoupled views of a point cloud (Point-PQAE ``models/RandomCrop.py``), batched, without per-sample loops.

Conventions of :func:`decoupled_view` (one call = one view of every cloud in the batch):
- crop: one ``crop_rate ~ U[crop_rate_min, 1]`` per call (shared by the batch, so views stack), one random seed
  point per cloud; the view keeps the ``int(N * crop_rate)`` points nearest the seed (squared Euclidean
  distance, nearest first, ties by index), found by ``extensions.ops.knn`` (no (N, N) matrix).
- normalisation: per cloud and per axis, min-max to [-1, 1]: ``2 (p - min) / (max - min + 1e-6) - 1``
  (anisotropic). ``box_center = (min + max) / 2`` is recorded in the cloud's input frame. With
  ``crop_rate_min == 1`` the reference keeps every point (still ordered by distance to the seed) and only
  translates by ``-box_center`` (no scaling); no crop rate is drawn then.
- rotation: about the Y axis by an angle ~ U[0, 2 pi) per cloud, applied to row vectors as ``p @ R`` with
  R = [[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]] (``PointcloudRotate``).
Random draws come from ``generator`` (or torch's global RNG) on the points' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from extensions import ops

#: the reference's guard against a zero extent in the min-max normalisation
MINMAX_EPS = 1e-6


@dataclass
class View:
    """One view per cloud: ``points`` (B, M, 3) normalised (and rotated), ``box_center`` (B, 3) in the input
    frame, ``angle`` (B,) radians of the Y rotation (zeros without rotation)."""

    points: Tensor
    box_center: Tensor
    angle: Tensor


def crop_nearest(xyz: Tensor, seed_idx: Tensor, num_keep: int) -> Tensor:
    """(B, N, 3), (B,) seed indices -> (B, num_keep, 3): the points nearest each cloud's seed, nearest first."""
    seeds = xyz.gather(1, seed_idx.view(-1, 1, 1).expand(-1, 1, 3))  # (B, 1, 3)
    idx, _ = ops.knn(seeds, xyz, num_keep)  # (B, 1, num_keep)
    return ops.gather_points(xyz, idx[:, 0])


def minmax_normalize(points: Tensor, scale: bool = True) -> tuple[Tensor, Tensor]:
    """(B, M, 3) -> (points mapped per axis to [-1, 1] (or only centred when not ``scale``), box centre (B, 3))."""
    low = points.amin(dim=1, keepdim=True)
    high = points.amax(dim=1, keepdim=True)
    center = (low + high) / 2
    if not scale:
        return points - center, center[:, 0]
    return (points - low) / (high - low + MINMAX_EPS) * 2 - 1, center[:, 0]


def rotation_y_matrices(angles: Tensor) -> Tensor:
    """(B,) angles -> (B, 3, 3) matrices [[c, 0, s], [0, 1, 0], [-s, 0, c]] for row vectors (``p @ R``)."""
    c, s = angles.cos(), angles.sin()
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rows = [torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1), torch.stack([-s, zero, c], -1)]
    return torch.stack(rows, dim=-2)


def decoupled_view(
    xyz: Tensor, crop_rate_min: float, rotate: bool = True, generator: torch.Generator | None = None
) -> View:
    """One random view of every cloud in ``xyz`` (B, N, 3): crop, min-max normalise, rotate (module docstring)."""
    if not 0.0 < crop_rate_min <= 1.0:
        raise ValueError(f"decoupled_view: crop_rate_min must be in (0, 1], got {crop_rate_min}")
    b, n, _ = xyz.shape
    dev = xyz.device
    rate = 1.0
    if crop_rate_min < 1.0:
        rate = crop_rate_min + (1.0 - crop_rate_min) * torch.rand((), generator=generator, device=dev).item()
    seed_idx = torch.randint(n, (b,), generator=generator, device=dev)
    points, center = minmax_normalize(crop_nearest(xyz, seed_idx, max(1, int(n * rate))), scale=rate < 1.0)
    angle = torch.zeros(b, device=dev, dtype=xyz.dtype)
    if rotate:
        angle = torch.rand(b, generator=generator, device=dev, dtype=xyz.dtype) * (2 * math.pi)
        points = points @ rotation_y_matrices(angle)
    return View(points, center, angle)

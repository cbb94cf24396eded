"""Orthographic point-splat depth images of point clouds: the documented projection shared by the MMPD image
teachers (:mod:`methods.blocks.projection`, wave2.md section 3.3) and the depth renders of the occupancy
stand-in (:mod:`bench.data.synthetic.occupancy`). Moved here from ``methods/blocks/projection.py`` unchanged, so
that ``bench/`` never imports ``methods/``.

Re-implemented from the description of I2P-MAE's multi-view projection (I2P-MAE was read only: its licence is
unchecked, no code was taken). Conventions of :func:`depth_images`:

- Input: (B, N, 3) clouds in the harness frame (unit-sphere normalised, y up).
- Views: V fixed viewpoints on a circle about the vertical axis. View v rotates the cloud about y by
  ``theta_v = 2 pi v / V`` (view 0 = the cloud as given), applied to row vectors as ``p @ R`` with
  ``R = [[cos, 0, sin], [0, 1, 0], [-sin, 0, cos]]`` (the ``PointcloudRotate`` convention of ``views.py``), so
  ``x' = x cos - z sin`` and ``z' = x sin + z cos``. The elevation is fixed at 0 (no tilt): the camera looks along
  -z' from z' = +inf, so a larger z' is nearer the viewer.
- Pixels: an orthographic ``size x size`` grid over [-1, 1]^2. Column ``floor((x' + 1) / 2 * size)``, row
  ``floor((1 - y') / 2 * size)`` (row 0 at the top, y' = +1); the closed edge x' = 1 (y' = -1) falls in the last
  column (row). Points outside the view cube [-1, 1]^3 are dropped (clipped), not clamped onto the border.
- Values: ``depth = DEPTH_FLOOR + (1 - DEPTH_FLOOR) * (z' + 1) / 2``, which maps z' in [-1, 1] to
  [DEPTH_FLOOR, 1]: 1 is the nearest plane (z' = 1), the farthest plane still reads DEPTH_FLOOR > 0, and 0 means
  background (no point). Each pixel keeps its NEAREST point, i.e. the largest value (``scatter_reduce`` amax, so
  ties are exact and order-free).
- Densify: a ``densify x densify`` max-pool (stride 1, same size) spreads each point over its neighbours so that
  sparse clouds give solid silhouettes; default 3 (I2P-MAE densifies with a 5 x 5 window; 3 keeps finer detail at
  the small sizes used here). ``densify=1`` returns the raw projection.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: depth value of a point on the farthest plane z' = -1 (background is 0, the nearest plane 1)
DEPTH_FLOOR = 0.1


def view_rotations(views: int, device: torch.device | None = None) -> Tensor:
    """(V, 3, 3) rotations about y by 2 pi v / V, for row vectors (``p @ R``; see the module docstring)."""
    if views < 1:
        raise ValueError(f"depth_images: views must be >= 1, got {views}")
    theta = torch.arange(views, dtype=torch.float64) * (2 * math.pi / views)
    cos, sin = theta.cos(), theta.sin()
    rot = torch.zeros(views, 3, 3, dtype=torch.float64)
    rot[:, 0, 0], rot[:, 0, 2] = cos, sin
    rot[:, 1, 1] = 1.0
    rot[:, 2, 0], rot[:, 2, 2] = -sin, cos
    return rot.to(device=device, dtype=torch.float32)


def depth_images(xyz: Tensor, views: int, size: int, densify: int = 3) -> Tensor:
    """(B, N, 3) clouds -> (B, V, size, size) float depth images in [0, 1] (conventions: module docstring)."""
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"depth_images: expected (B, N, 3) points, got {tuple(xyz.shape)}")
    if size < 1 or densify < 1 or densify % 2 == 0:
        raise ValueError(f"depth_images: size must be >= 1 and densify odd >= 1, got size={size}, densify={densify}")
    b, n, _ = xyz.shape
    pts = xyz.detach().float()
    rotated = torch.einsum("bnj,vjk->bvnk", pts, view_rotations(views, pts.device))  # (B, V, N, 3)
    x, y, z = rotated.unbind(-1)
    inside = (x.abs() <= 1) & (y.abs() <= 1) & (z.abs() <= 1)
    col = ((x + 1) * (size / 2)).floor().long().clamp(0, size - 1)
    row = ((1 - y) * (size / 2)).floor().long().clamp(0, size - 1)
    value = DEPTH_FLOOR + (1 - DEPTH_FLOOR) * (z.clamp(-1, 1) + 1) / 2
    value = torch.where(inside, value, torch.zeros_like(value))  # dropped points write 0 = background
    image_id = torch.arange(b * views, device=pts.device).view(b, views, 1) * (size * size)
    flat = (image_id + row * size + col).reshape(-1)
    out = torch.zeros(b * views * size * size, device=pts.device)
    out.scatter_reduce_(0, flat, value.reshape(-1), reduce="amax", include_self=True)
    out = out.view(b * views, 1, size, size)
    if densify > 1:
        out = F.max_pool2d(out, kernel_size=densify, stride=1, padding=densify // 2)
    return out.view(b, views, size, size)

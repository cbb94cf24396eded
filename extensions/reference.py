"""Pure-PyTorch reference implementations of the point ops: always available, batched, the correctness oracle.

Layout convention: channels-last, ``xyz (B, N, 3)``, features ``(B, N, C)``; indices are int64.
Distances returned by ``knn``, ``three_nn`` and ``chamfer_distance`` are *squared* Euclidean, computed as
``(dx*dx + dy*dy) + dz*dz`` with ``dx = p - q`` (the compiled backends use the same operation order, so values
agree bit for bit). Ties are broken by the lowest index everywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_sqdist(p: Tensor, q: Tensor) -> Tensor:
    """(B, N, 3), (B, M, 3) -> (B, N, M) squared distances, exact differences (|p|^2 + |q|^2 - 2pq is not used)."""
    dx = p[..., 0].unsqueeze(2) - q[..., 0].unsqueeze(1)
    d = dx * dx
    dy = p[..., 1].unsqueeze(2) - q[..., 1].unsqueeze(1)
    d = d + dy * dy
    dz = p[..., 2].unsqueeze(2) - q[..., 2].unsqueeze(1)
    return d + dz * dz


#: pointnet2_ops' FPS kernel skips points with |p|^2 <= this after the first pick (erikwijmans/Pointnet2_PyTorch
#: pointnet2_ops_lib/pointnet2_ops/_ext-src/src/sampling_gpu.cu L100-101, read not copied: the point's float
#: squared norm is compared with the double literal and the point is left out of the distance update and arg-max)
SKIP_ORIGIN_MAG2 = 1e-3


def origin_mask(x: Tensor, y: Tensor, z: Tensor) -> Tensor:
    """Points FPS never picks with ``skip_origin``: ``(x*x + y*y) + z*z`` in the input dtype, compared in float64
    with :data:`SKIP_ORIGIN_MAG2` (the kernel's float ``mag`` against the double literal)."""
    mag = x * x + y * y
    mag = mag + z * z
    return mag.double() <= SKIP_ORIGIN_MAG2


def furthest_point_sample(xyz: Tensor, m: int, start: int = 0, skip_origin: bool = False) -> Tensor:
    """Greedy farthest point sampling, (B, N, 3) -> indices (B, m).

    Semantics of pointnet2_ops' kernel: the first sample is ``start`` (index 0 by default); each next sample is
    the point whose squared distance to the chosen set is largest, ties going to the lowest index.
    ``skip_origin`` reproduces the kernel's quirk: after the first sample, points with |p|^2 <= 1e-3
    (:func:`origin_mask`) are never picked: their running distance is -inf. Once the other points are used up, the
    lowest index among those others repeats; when every point is skipped, index 0 repeats (the kernel's
    ``besti = 0``).
    """
    b, n, _ = xyz.shape
    idx = torch.zeros(b, m, dtype=torch.long, device=xyz.device)
    if m == 0 or b == 0:
        return idx
    x, y, z = (c.contiguous() for c in xyz.detach().unbind(-1))  # (B, N) each
    min_dist = torch.full((b, n), float("inf"), dtype=x.dtype, device=x.device)
    if skip_origin:
        min_dist.masked_fill_(origin_mask(x, y, z), float("-inf"))
    current = torch.full((b, 1), start, dtype=torch.long, device=x.device)
    for i in range(m):
        idx[:, i] = current[:, 0]
        if i + 1 == m:
            break
        dx = x - x.gather(1, current)
        d = dx * dx
        dy = y - y.gather(1, current)
        d += dy * dy
        dz = z - z.gather(1, current)
        d += dz * dz
        torch.minimum(min_dist, d, out=min_dist)
        current = torch.argmax(min_dist, dim=1, keepdim=True)  # first maximum = lowest index on ties
    return idx


def knn(query: Tensor, ref: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k nearest neighbours of each query point among ``ref``: (B,M,3), (B,N,3) -> (idx (B,M,k), dist2 (B,M,k)).

    Sorted by increasing squared distance, equal distances by increasing index (a stable sort), so a point's
    distance to itself is exactly 0 and duplicates come out in index order.
    """
    dist2 = pairwise_sqdist(query, ref)  # (B, M, N)
    d, idx = torch.sort(dist2, dim=-1, stable=True)
    return idx[..., :k], d[..., :k]


def ball_query(radius: float, k: int, xyz: Tensor, centers: Tensor) -> Tensor:
    """pointnet2_ops ball query: the first ``k`` points (in index order) with ``|p - c|^2 < radius^2`` -> (B, M, k).

    Slots beyond the number of hits repeat the first hit; a centre with no hit gets all zeros.
    """
    b, n, _ = xyz.shape
    m = centers.shape[1]
    if n == 0 or k == 0 or b * m == 0:
        return torch.zeros(b, m, k, dtype=torch.long, device=xyz.device)
    within = pairwise_sqdist(centers, xyz) < radius * radius  # (B, M, N)
    order = torch.arange(n, device=xyz.device).expand(b, m, n)
    order = torch.where(within, order, torch.full_like(order, n))
    if k > n:
        order = torch.cat([order, order.new_full((b, m, k - n), n)], dim=-1)
    first_k = torch.sort(order, dim=-1).values[..., :k]
    first = first_k[..., :1]
    first = torch.where(first < n, first, torch.zeros_like(first))
    return torch.where(first_k < n, first_k, first.expand_as(first_k))


def three_nn(unknown: Tensor, known: Tensor) -> tuple[Tensor, Tensor]:
    """Three nearest ``known`` points of each ``unknown`` point -> (idx (B, n, 3), squared distances (B, n, 3))."""
    return knn(unknown, known, 3)


def three_interpolate(features: Tensor, idx: Tensor, weight: Tensor) -> Tensor:
    """(B, N, C) features, (B, M, 3) idx and weights -> (B, M, C): sum_t weight[..., t] * features[idx[..., t]]."""
    grouped = group_points(features, idx)  # (B, M, 3, C)
    w = weight.unsqueeze(-1)
    return grouped[:, :, 0] * w[:, :, 0] + grouped[:, :, 1] * w[:, :, 1] + grouped[:, :, 2] * w[:, :, 2]


def gather_points(features: Tensor, idx: Tensor) -> Tensor:
    """(B, N, C) gathered at (B, M) -> (B, M, C)."""
    return torch.gather(features, 1, idx.unsqueeze(-1).expand(-1, -1, features.shape[-1]))


def group_points(features: Tensor, idx: Tensor) -> Tensor:
    """(B, N, C) gathered at (B, M, k) -> (B, M, k, C)."""
    b, m, k = idx.shape
    flat = gather_points(features, idx.reshape(b, m * k))
    return flat.reshape(b, m, k, features.shape[-1])


def chamfer_distance(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Both directed nearest-neighbour terms: (B,N,3), (B,M,3) -> (d_ab (B,N), d_ba (B,M)), squared distances.

    d_ab[i] = min_j |a_i - b_j|^2 and d_ba[j] = min_i |a_i - b_j|^2. Differentiable in both inputs.
    """
    dist2 = pairwise_sqdist(a, b)  # (B, N, M)
    return dist2.min(dim=2).values, dist2.min(dim=1).values

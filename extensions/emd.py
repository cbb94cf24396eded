"""Earth mover's distance between point clouds: an approximate matching for training-size clouds and an exact
Hungarian matching (scipy) for small ones, which is the oracle the approximation is tested against.

Convention: for clouds ``a (B, N, 3)`` and ``b (B, M, 3)`` every point of ``a`` carries mass ``max(N, M) / N`` and
every point of ``b`` mass ``max(N, M) / M``; the result is the transport cost divided by ``max(N, M)``, per cloud,
shape ``(B,)``. For N == M this is the mean over points of ``cost(a_i, b_sigma(i))`` under the optimal bijection
sigma (PointFlow's / PSGN's normalised EMD). ``cost`` is ``"euclidean"`` (|a - b|, the usual EMD) or
``"sqeuclidean"`` (|a - b|^2). Both methods are differentiable in the points with the matching held fixed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from extensions.reference import pairwise_sqdist

COSTS = ("euclidean", "sqeuclidean")
METHODS = ("approx", "exact")
_CHUNK_ELEMENTS = 1 << 24  # B * N * M entries per approximate-matching chunk (64 MiB of float32)


def earth_movers_distance(a: Tensor, b: Tensor, cost: str = "euclidean", method: str = "approx") -> Tensor:
    """Per-cloud EMD ``(B,)`` between ``a (B, N, 3)`` and ``b (B, M, 3)`` (see the module docstring).

    ``method="approx"``: the multi-scale soft matching of Fan et al. 2017 (PSGN ``approxmatch``), O(N M) memory per
    cloud, any device, always an upper bound up to rounding (it builds a feasible partial plan). ``method="exact"``:
    Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on the CPU, needs N == M, O(N^3).
    """
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if a.dim() != 3 or b.dim() != 3 or a.shape[-1] != 3 or b.shape[-1] != 3 or a.shape[0] != b.shape[0]:
        raise ValueError(f"earth_movers_distance needs (B, N, 3) and (B, M, 3), got {tuple(a.shape)}, {tuple(b.shape)}")
    if a.shape[0] > 0 and (a.shape[1] == 0 or b.shape[1] == 0):
        raise ValueError("earth_movers_distance needs non-empty clouds")
    if method == "exact":
        return _exact(a, b, cost)
    step = max(1, _CHUNK_ELEMENTS // max(1, a.shape[1] * b.shape[1]))
    parts = [_approx(a[i : i + step], b[i : i + step], cost) for i in range(0, a.shape[0], step)]
    return torch.cat(parts) if parts else a.new_zeros(0)


def _cost(d2: Tensor, cost: str) -> Tensor:
    if cost == "sqeuclidean":
        return d2
    positive = d2 > 0
    return torch.where(positive, torch.where(positive, d2, torch.ones_like(d2)).sqrt(), torch.zeros_like(d2))


def _exact(a: Tensor, b: Tensor, cost: str) -> Tensor:
    from scipy.optimize import linear_sum_assignment

    if a.shape[1] != b.shape[1]:
        raise ValueError(f"exact EMD needs clouds of equal size, got {a.shape[1]} and {b.shape[1]}")
    d2 = pairwise_sqdist(a, b)  # (B, N, N)
    costs = _cost(d2, cost)
    matrices = costs.detach().to("cpu", torch.float64).numpy()
    cols = np.stack([linear_sum_assignment(mat)[1] for mat in matrices]) if len(matrices) else np.zeros((0, 0))
    match = torch.as_tensor(cols, dtype=torch.long, device=a.device)
    return costs.gather(2, match.unsqueeze(-1)).squeeze(-1).mean(1)


@torch.no_grad()
def approx_plan(a: Tensor, b: Tensor) -> Tensor:
    """Soft transport plan ``(B, N, M)`` of PSGN ``approxmatch``: mass is matched from coarse to fine.

    At each level (scale 4^8 down to 4^-1, then 0) every point of ``a`` offers its unmatched mass to the points of
    ``b`` in proportion to ``exp(-scale * |a - b|^2)`` times their unmatched mass; points of ``b`` accept at most
    their remaining mass (offers are scaled down uniformly otherwise). Row sums never exceed ``max(N, M) / N`` and
    column sums never exceed ``max(N, M) / M``. The scales assume clouds of roughly unit extent.
    """
    work = torch.float64 if a.dtype == torch.float64 else torch.float32
    d2 = pairwise_sqdist(a.to(work), b.to(work))
    n, m = a.shape[1], b.shape[1]
    left = d2.new_full((a.shape[0], n), max(n, m) / n)
    right = d2.new_full((a.shape[0], m), max(n, m) / m)
    plan = torch.zeros_like(d2)
    for level in [-(4.0**j) for j in range(8, -2, -1)] + [0.0]:
        offer = torch.exp(level * d2) * right.unsqueeze(1)
        offer = offer * (left / (offer.sum(2) + 1e-9)).unsqueeze(2)
        accept = torch.clamp(right / (offer.sum(1) + 1e-9), max=1.0)
        offer = offer * accept.unsqueeze(1)
        plan += offer
        left = torch.clamp(left - offer.sum(2), min=0.0)
        right = torch.clamp(right - offer.sum(1), min=0.0)
    return plan


def _approx(a: Tensor, b: Tensor, cost: str) -> Tensor:
    plan = approx_plan(a, b).to(a.dtype)
    return (plan * _cost(pairwise_sqdist(a, b), cost)).sum((1, 2)) / max(a.shape[1], b.shape[1])

"""A local neural field decoded from patch tokens, its training targets, and surface extraction (wave2.md 1.3, 1.5).

Field head (:class:`KernelFieldHead`, the 3DILG idea re-implemented, not ported: 3DILG is CC BY-NC-SA): a query q
reads the decoded patch tokens h_g through kernel weights softmax_g(-sigma |q - c_g|^2) (learnable log sigma), then
an MLP of [interpolated feature, Fourier features of q] gives the field value. ``udf`` (default): softplus output,
the unsigned distance to the surface; ``occupancy``: a logit.

Targets (:func:`udf_target`): the unsigned distance from each query to the dense input cloud (its nearest point),
clamped at ``clamp`` (0.1 in unit-sphere units). Queries (:func:`sample_queries`): half uniform in [-1, 1]^3, half
near the surface (input points + N(0, ``near_std``^2)). These need no watertight meshes, so they can be computed
offline from ShapeNet point clouds (watertight occupancy cannot, wave2.md 2.3).

Surface extraction (:func:`extract_surface`) for a UDF: candidate points (``centres``: ``seeds`` Gaussian seeds
around every patch centre, std ``seed_std``; ``grid``: a ``resolution``^3 grid over [-1, 1]^3) are projected onto
the zero level set, q <- q - f(q) grad f(q) / |grad f(q)| (``project_steps`` times, NDF-style), the
``keep`` share with the smallest |f| is kept, and FPS picks the requested number of points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from extensions import ops


def fourier_features(xyz: Tensor, num_freqs: int) -> Tensor:
    """(..., 3) -> (..., 3 + 6 num_freqs): xyz, then sin and cos of 2^i pi xyz for i < num_freqs."""
    freqs = (2.0 ** torch.arange(num_freqs, device=xyz.device, dtype=xyz.dtype)) * math.pi
    angles = (xyz.unsqueeze(-1) * freqs).flatten(-2)
    return torch.cat([xyz, angles.sin(), angles.cos()], dim=-1)


class KernelFieldHead(nn.Module):
    """(queries (B, Q, 3), tokens (B, G, C), centres (B, G, 3)) -> field values (B, Q)."""

    def __init__(self, dim: int, hidden: int = 128, num_freqs: int = 6, layers: int = 3, output: str = "udf") -> None:
        super().__init__()
        if output not in ("udf", "occupancy"):
            raise ValueError(f"field output must be udf or occupancy, got {output!r}")
        self.output, self.num_freqs = output, num_freqs
        self.log_sigma = nn.Parameter(torch.tensor(3.0))
        width = dim + 3 + 6 * num_freqs
        blocks: list[nn.Module] = []
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.mlp = nn.Sequential(*blocks, nn.Linear(width, 1))

    def forward(self, queries: Tensor, tokens: Tensor, centers: Tensor) -> Tensor:
        d2 = torch.cdist(queries, centers).square()  # (B, Q, G)
        weights = torch.softmax(-self.log_sigma.exp() * d2, dim=-1)
        feature = weights @ tokens  # (B, Q, C)
        local = queries - weights @ centers  # the query relative to the patches it reads
        value = self.mlp(torch.cat([feature, fourier_features(local, self.num_freqs)], dim=-1)).squeeze(-1)
        return F.softplus(value) if self.output == "udf" else value


def sample_queries(xyz: Tensor, count: int, near_std: float, generator: torch.Generator | None = None) -> Tensor:
    """(B, N, 3) -> (B, count, 3): count // 2 uniform in [-1, 1]^3, the rest at random input points + noise."""
    b, n, _ = xyz.shape
    uniform = torch.rand(b, count // 2, 3, generator=generator).to(xyz) * 2 - 1
    near = count - count // 2
    picks = torch.randint(n, (b, near), generator=generator).to(xyz.device)
    anchors = xyz.gather(1, picks.unsqueeze(-1).expand(-1, -1, 3))
    noise = torch.randn(b, near, 3, generator=generator).to(xyz) * near_std
    return torch.cat([uniform, anchors + noise], dim=1)


def udf_target(queries: Tensor, xyz: Tensor, clamp: float) -> Tensor:
    """(B, Q, 3), (B, N, 3) -> (B, Q): distance from each query to its nearest input point, clamped at ``clamp``."""
    _, d2 = ops.knn(queries.detach().contiguous(), xyz.detach().contiguous(), 1)
    return d2.squeeze(-1).clamp(min=0).sqrt().clamp(max=clamp)


def candidate_points(centers: Tensor, mode: str, seeds: int, seed_std: float, resolution: int,
                     generator: torch.Generator | None) -> Tensor:  # fmt: skip
    """Starting points of the surface projection: (n, G * seeds, 3) around the centres, or the grid."""
    n = centers.shape[0]
    if mode == "grid":
        axis = torch.linspace(-1, 1, resolution)
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(1, -1, 3)
        return grid.expand(n, -1, -1).to(centers).contiguous()
    noise = torch.randn(n, centers.shape[1], seeds, 3, generator=generator).to(centers) * seed_std
    return (centers.unsqueeze(2) + noise).reshape(n, -1, 3)


def project_to_surface(field, queries: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """NDF-style projection q <- q - f(q) grad f / |grad f|; returns (points, |f| at them)."""
    q = queries
    for _ in range(steps):
        with torch.enable_grad():
            q = q.detach().requires_grad_(True)
            value = field(q)
            (grad,) = torch.autograd.grad(value.sum(), q)
        q = q - value.detach().unsqueeze(-1) * F.normalize(grad, dim=-1)
    with torch.no_grad():
        return q.detach(), field(q).abs()


def extract_surface(field, centers: Tensor, points: int, mode: str = "centres", seeds: int = 32,
                    seed_std: float = 0.05, resolution: int = 32, project_steps: int = 2, keep: float = 0.5,
                    generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """(n, G, 3) centres and ``field(queries (n, Q, 3)) -> (n, Q)`` -> (n, points, 3) surface points."""
    start = candidate_points(centers, mode, seeds, seed_std, resolution, generator)
    projected, residual = project_to_surface(field, start, project_steps)
    kept = max(points, int(keep * projected.shape[1]))
    if kept > projected.shape[1]:  # too few candidates: repeat them (FPS then returns duplicates)
        repeat = math.ceil(kept / projected.shape[1])
        projected, residual = projected.repeat(1, repeat, 1), residual.repeat(1, repeat)
    best = residual.topk(kept, dim=1, largest=False).indices
    chosen = projected.gather(1, best.unsqueeze(-1).expand(-1, -1, 3)).contiguous()
    return ops.gather_points(chosen, ops.furthest_point_sample(chosen, points))

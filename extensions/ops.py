"""The one front door for point ops. Every method, suite and metric calls these functions and nothing else.

Layout: channels-last; points ``(B, N, 3)``, features ``(B, N, C)``, indices int64, distances *squared* Euclidean,
ties broken by the lowest index. Every backend returns the same values (bit for bit for indices and distances).

Backends (see :mod:`extensions.backends`): ``BENCH_OPS=torch|cpp|cuda`` forces one; otherwise the compiled backend
of the input's device, built on first use (``python -m extensions.build`` prebuilds), else the pure-PyTorch
reference (:mod:`extensions.reference`). Import never fails. Every op also takes ``backend=`` (strict: raises
:class:`BackendUnavailable` when it cannot be honoured). ``backend_name()`` is what RunRecords store.

FPS quirk: pointnet2_ops' kernel (used by Point-MAE, Point-PQAE and Point-MaDi) never picks a point with
|p|^2 <= 1e-3 after the first pick. Every backend reproduces it with ``skip_origin=True``; a call that does not
say follows ``fps_skip_origin()`` (``BENCH_FPS_SKIP_ORIGIN``, default on), which RunRecords also store.

Chamfer conventions (all from squared nearest-neighbour distances d_ab, d_ba of :func:`chamfer_distance`):
- ``chamfer_l2``  (Point-MAE "cdl2"): mean(d_ab) + mean(d_ba), means over every point of the batch.
- ``chamfer_l1``  (Point-MAE "cdl1"): (mean(sqrt d_ab) + mean(sqrt d_ba)) / 2.
- generation CD (PointFlow): per cloud mean(d_ab) + mean(d_ba), see ``chamfer_per_cloud``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from extensions import _autograd, backends, reference
from extensions.backends import BACKENDS, BackendUnavailable, fps_skip_origin, set_fps_skip_origin
from extensions.emd import earth_movers_distance

__all__ = [
    "BACKENDS", "BackendUnavailable", "backend_name", "fps_skip_origin", "set_fps_skip_origin",
    "furthest_point_sample", "knn", "ball_query", "three_nn",
    "three_interpolate", "interpolation_weights", "gather_points", "group_points", "chamfer_distance", "chamfer_l2",
    "chamfer_l1", "chamfer_per_cloud", "earth_movers_distance",
]


def backend_name(device: torch.device | str | None = None) -> str:
    """Backend the ops use for float32 tensors on ``device`` (default: the GPU if visible, else the CPU).

    One of ``"torch"``, ``"cpp"``, ``"cuda"``; logged once; stored in every RunRecord. May trigger the one-time build.
    """
    return backends.describe(device)


def furthest_point_sample(xyz: Tensor, m: int, start: int = 0, *, skip_origin: bool | None = None,
                          backend: str | None = None) -> Tensor:
    """(B, N, 3) -> (B, m) int64 indices; starts at ``start``; ties go to the lowest index (pointnet2_ops).

    ``m == N`` returns a permutation; once only duplicates are left, index 0's distance (0) ties and the lowest
    index is repeated, exactly as the reference does. ``skip_origin`` (None: :func:`fps_skip_origin`): after the
    first pick, points with |p|^2 <= 1e-3 are never picked, as in pointnet2_ops (see
    :func:`extensions.reference.furthest_point_sample` for what repeats once the others are used up).
    """
    _check_cloud("xyz", xyz)
    n = xyz.shape[1]
    if m < 0 or m > n:
        raise ValueError(f"furthest_point_sample: cannot pick {m} points from clouds of {n}")
    if m > 0 and not 0 <= start < n:
        raise ValueError(f"furthest_point_sample: start={start} is not an index of clouds of {n} points")
    skip = fps_skip_origin() if skip_origin is None else bool(skip_origin)
    name = backends.resolve(xyz.device, xyz.dtype, backend)
    if name == "torch":
        return reference.furthest_point_sample(xyz, m, start, skip)
    return backends.library(name).fps(xyz.detach(), m, start, skip)


def knn(query: Tensor, ref: Tensor, k: int, *, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """(B,M,3), (B,N,3) -> (idx (B,M,k) int64, squared distances (B,M,k)), nearest first, equal distances by index.

    Raises ValueError when ``k > N``. Not differentiable (the distances are returned detached on compiled backends).
    """
    _check_pair("query", query, "ref", ref)
    if k < 0 or k > ref.shape[1]:
        raise ValueError(f"knn: k={k} neighbours asked for but the reference clouds have {ref.shape[1]} points")
    name = backends.resolve(query.device, _dtype(query, ref), backend)
    if name == "torch":
        return reference.knn(query, ref, k)
    idx, dist = backends.library(name).knn(query.detach(), ref.detach(), k)
    return idx, dist


def ball_query(radius: float, k: int, xyz: Tensor, centers: Tensor, *, backend: str | None = None) -> Tensor:
    """pointnet2_ops ball query -> (B, M, k) int64: the first ``k`` points, in index order, with |p - c|^2 < r^2.

    Slots past the number of hits repeat the first hit; a centre without any hit gets zeros. ``k`` may exceed N.
    """
    _check_pair("xyz", xyz, "centers", centers)
    if k < 0 or radius < 0:
        raise ValueError(f"ball_query: need k >= 0 and radius >= 0, got k={k}, radius={radius}")
    name = backends.resolve(xyz.device, _dtype(xyz, centers), backend)
    if name == "torch":
        return reference.ball_query(radius, k, xyz, centers)
    return backends.library(name).ball_query(xyz.detach(), centers.detach(), float(radius), k)


def three_nn(unknown: Tensor, known: Tensor, *, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """Three nearest ``known`` points of each ``unknown`` point -> (idx (B,n,3), squared distances (B,n,3)).

    Same order and conventions as :func:`knn` (pointnet2_ops returns (sqrt distances, idx); this returns squared
    distances, see :func:`interpolation_weights`). Needs at least 3 known points.
    """
    if known.dim() == 3 and known.shape[1] < 3:
        raise ValueError(f"three_nn needs at least 3 known points, got {known.shape[1]}")
    return knn(unknown, known, 3, backend=backend)


def interpolation_weights(dist2: Tensor, eps: float = 1e-8) -> Tensor:
    """PointNet++ feature-propagation weights from :func:`three_nn` distances: 1/(|d| + eps), normalised to sum 1."""
    recip = 1.0 / (dist2.clamp_min(0).sqrt() + eps)
    return recip / recip.sum(-1, keepdim=True)


def three_interpolate(features: Tensor, idx: Tensor, weight: Tensor, *, backend: str | None = None) -> Tensor:
    """(B, N, C) features, (B, M, 3) idx and weights -> (B, M, C) = sum_t weight[..., t] * features[idx[..., t]].

    Differentiable in ``features`` and ``weight``.
    """
    if idx.dim() != 3 or idx.shape[-1] != 3 or weight.shape != idx.shape:
        raise ValueError(f"three_interpolate: idx and weight must be (B, M, 3), got {tuple(idx.shape)}, "
                         f"{tuple(weight.shape)}")
    _check_features(features, idx)
    name = _feature_backend(features, backend, weight)
    if name == "torch":
        return reference.three_interpolate(features, idx, weight)
    return _autograd.Interpolate.apply(backends.library(name), features, idx, weight)


def gather_points(features: Tensor, idx: Tensor, *, backend: str | None = None) -> Tensor:
    """(B, N, C) at (B, M) -> (B, M, C). Differentiable in ``features``."""
    if idx.dim() != 2:
        raise ValueError(f"gather_points: idx must be (B, M), got {tuple(idx.shape)}")
    _check_features(features, idx)
    name = _feature_backend(features, backend)
    if name == "torch":
        return reference.gather_points(features, idx)
    return _autograd.Gather.apply(backends.library(name), features, idx)


def group_points(features: Tensor, idx: Tensor, *, backend: str | None = None) -> Tensor:
    """(B, N, C) at (B, M, k) -> (B, M, k, C). Differentiable in ``features``."""
    if idx.dim() != 3:
        raise ValueError(f"group_points: idx must be (B, M, k), got {tuple(idx.shape)}")
    b, m, k = idx.shape
    flat = gather_points(features, idx.reshape(b, m * k), backend=backend)
    return flat.reshape(b, m, k, features.shape[-1])


def chamfer_distance(a: Tensor, b: Tensor, *, backend: str | None = None) -> tuple[Tensor, Tensor]:
    """(B,N,3), (B,M,3) -> (d_ab (B,N), d_ba (B,M)): squared distance of each point to the other cloud.

    Differentiable in both clouds; compiled backends never materialise the (N, M) distance matrix.
    """
    _check_pair("a", a, "b", b)
    if a.shape[0] > 0 and (a.shape[1] == 0 or b.shape[1] == 0):
        raise ValueError(f"chamfer_distance needs non-empty clouds, got {a.shape[1]} and {b.shape[1]} points")
    name = backends.resolve(a.device, _dtype(a, b), backend)
    if name == "torch":
        return reference.chamfer_distance(a, b)
    return _autograd.Chamfer.apply(backends.library(name), a, b)


def chamfer_l2(a: Tensor, b: Tensor) -> Tensor:
    """Point-MAE ``ChamferDistanceL2``: mean(d_ab) + mean(d_ba) over the whole batch (squared distances)."""
    d_ab, d_ba = chamfer_distance(a, b)
    return d_ab.mean() + d_ba.mean()


def chamfer_l1(a: Tensor, b: Tensor) -> Tensor:
    """Point-MAE ``ChamferDistanceL1``: (mean(sqrt d_ab) + mean(sqrt d_ba)) / 2 over the whole batch."""
    d_ab, d_ba = chamfer_distance(a, b)
    return (d_ab.clamp_min(0).sqrt().mean() + d_ba.clamp_min(0).sqrt().mean()) / 2


def chamfer_per_cloud(a: Tensor, b: Tensor) -> Tensor:
    """Generation CD (PointFlow): per cloud mean(d_ab) + mean(d_ba), squared distances, no 1/2 -> (B,)."""
    d_ab, d_ba = chamfer_distance(a, b)
    return d_ab.mean(1) + d_ba.mean(1)


def _dtype(*tensors: Tensor) -> torch.dtype | None:
    """The common dtype, or None for mixed dtypes (which only the reference, by promotion, accepts)."""
    return tensors[0].dtype if all(t.dtype == tensors[0].dtype for t in tensors) else None


def _feature_backend(features: Tensor, backend: str | None, weight: Tensor | None = None) -> str:
    dtype = _dtype(features) if weight is None else _dtype(features, weight)
    return backends.resolve(features.device, dtype, backend)


def _check_cloud(name: str, xyz: Tensor) -> None:
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"{name} must be (B, N, 3), got {tuple(xyz.shape)}")


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    _check_cloud(name_a, a)
    _check_cloud(name_b, b)
    if a.shape[0] != b.shape[0] or a.device != b.device:
        raise ValueError(f"{name_a} and {name_b} differ in batch size or device: {tuple(a.shape)} {a.device} vs "
                         f"{tuple(b.shape)} {b.device}")


def _check_features(features: Tensor, idx: Tensor) -> None:
    if features.dim() != 3 or idx.shape[0] != features.shape[0] or idx.dtype != torch.long:
        raise ValueError(f"features must be (B, N, C) and idx int64 with the same B, got {tuple(features.shape)}, "
                         f"{tuple(idx.shape)} {idx.dtype}")

"""Reconstruction / conditional-generation metrics of the occupancy lineage: IoU, Chamfer distance, F-score, and
the grid + marching-cubes + surface-sampling path that turns an occupancy field into points (wave2.md 4.4 and 4.5,
generation.md 2.2; re-implemented from the definitions in ``1zb/3DShape2VecSet/eval.py``, MIT, read not copied).

Conventions (all coordinates in the data set's frame; for :mod:`bench.data.shapenet_occ` that is ONet x 2, shapes
in [-1, 1], so taus and grid bounds are in those units):

- IoU: a query is predicted inside iff its logit >= 0 (p >= 0.5), a ground-truth occupancy inside iff >= 0.5;
  IoU = |pred & gt| / |pred | gt| per shape, in percent; both empty -> 100. Scored on the uniform volume points
  (``iou``) and, reported apart, on the near-surface points (``iou_near``).
- Chamfer: CD = mean_gt min_pred |g - p| + mean_pred min_gt |p - g|: Euclidean distances, NOT squared, NOT halved
  (3DShape2VecSet reports this one; its squared variant is computed there but not reported); nearest neighbours by
  ``scipy.spatial.cKDTree``. An empty prediction scores +inf.
- F-score at tau: precision = share of PRED points within tau (strictly less) of GT, recall = share of GT points
  within tau of the prediction, F = 2PR / (P + R) (0 when both are 0), all in percent. This is the conventional
  naming; 3DShape2VecSet ``eval.py`` and what3d ``calculate_fscore`` compute precision from the GT->pred
  distances, i.e. swap the two names; F is unaffected.
- Grid: :func:`grid_points` puts ``linspace(-bound, bound, R)`` on each axis with ``indexing='ij'``, so
  ``volume[i, j, k]`` is the value at (x_i, y_j, z_k) and the flat index is ``(i * R + j) * R + k``. (3DShape2VecSet
  builds an ``'xy'`` meshgrid and permutes the first two axes back; doing both ``'ij'`` and the permute transposes
  x and y: the pitfall of wave2.md 4.4.) Its default is R = 129 over [-1, 1] (``density = 128``).
- Marching cubes at ``level`` (0 on logits, i.e. p = 0.5): both backends return vertices in array-index order
  (axis 0 first), mapped to world coordinates as ``-bound + index * 2 bound / (R - 1)`` per axis. ``pymcubes`` is
  ``import mcubes`` from the PyPI package ``pymcubes`` (NOT the PyPI package named ``mcubes``); ``skimage`` is
  ``skimage.measure.marching_cubes``. Faces are wound as pymcubes winds them (skimage's are reversed to match):
  normals point to decreasing values, i.e. outward for logits that are positive inside (positive signed volume).
  No crossing of the level -> empty (0, 3) arrays, never an exception.
- Surface samples: ``trimesh`` area-weighted sampling with an integer seed (deterministic); 3DShape2VecSet samples
  100k points of the predicted mesh.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bench.metrics.base import MAX, MIN, Metric
from bench.registry import METRICS

MC_BACKENDS = ("pymcubes", "skimage")
#: 3DShape2VecSet's evaluation grid: 129 points per axis over [-1, 1]
DEFAULT_RESOLUTION, DEFAULT_BOUND = 129, 1.0


def _as_numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array, a torch tensor (any device) or a nested sequence."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _cloud(name: str, points: Any, allow_empty: bool = False) -> np.ndarray:
    arr = _as_numpy(points).astype(np.float64, copy=False)
    if arr.ndim != 2 or arr.shape[1] != 3 or (len(arr) == 0 and not allow_empty):
        raise ValueError(f"{name} must be a non-empty (N, 3) point array; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf coordinates")
    return arr


# --- IoU -----------------------------------------------------------------------------------------------------------
def occupancy_iou(logits: Any, occupancy: Any) -> float:
    """IoU in percent of one shape's (P,) logits (inside iff >= 0) against its (P,) occupancy (inside iff >= 0.5)."""
    pred, gt = _as_numpy(logits), _as_numpy(occupancy)
    if pred.shape != gt.shape or pred.ndim != 1:
        raise ValueError(f"logits and occupancy must be (P,) arrays of one shape; got {pred.shape} and {gt.shape}")
    if np.isnan(pred.astype(np.float64)).any():
        raise ValueError("logits contain NaN")
    inside, truth = pred >= 0, gt >= 0.5
    union = int(np.count_nonzero(inside | truth))
    return 100.0 if union == 0 else 100.0 * np.count_nonzero(inside & truth) / union


# --- Chamfer and F-score -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FScore:
    """F-score, precision (pred -> GT) and recall (GT -> pred) at one tau, in percent."""

    f: float
    precision: float
    recall: float


@dataclass(frozen=True)
class SurfaceDistances:
    """Nearest-neighbour Euclidean distances of one (pred, GT) pair, computed once for CD and every F-score."""

    pred_to_gt: np.ndarray  # (N_pred,) distance of each predicted point to its nearest GT point
    gt_to_pred: np.ndarray  # (N_gt,) distance of each GT point to its nearest predicted point (inf: empty pred)

    def chamfer(self) -> float:
        """mean GT->pred + mean pred->GT, not squared, not halved; +inf for an empty prediction."""
        if len(self.pred_to_gt) == 0:
            return math.inf
        return float(self.gt_to_pred.mean() + self.pred_to_gt.mean())

    def fscore(self, tau: float) -> FScore:
        """Conventional naming: precision from pred->GT, recall from GT->pred (distances < tau)."""
        if not tau > 0:
            raise ValueError(f"tau must be positive; got {tau!r}")
        precision = 100.0 * float((self.pred_to_gt < tau).mean()) if len(self.pred_to_gt) else 0.0
        recall = 100.0 * float((self.gt_to_pred < tau).mean())
        total = precision + recall
        return FScore(2 * precision * recall / total if total > 0 else 0.0, precision, recall)


def surface_distances(pred: Any, gt: Any) -> SurfaceDistances:
    """Both nearest-neighbour distance sets of (N, 3) ``pred`` and (M, 3) ``gt`` (``cKDTree``, Euclidean).

    ``pred`` may be empty (a reconstruction without a surface); ``gt`` may not."""
    pred_arr, gt_arr = _cloud("pred", pred, allow_empty=True), _cloud("gt", gt)
    if len(pred_arr) == 0:
        return SurfaceDistances(np.zeros(0), np.full(len(gt_arr), math.inf))
    from scipy.spatial import cKDTree  # here, not at import: loading the plug-ins stays free of scipy

    pred_to_gt = cKDTree(gt_arr).query(pred_arr, k=1)[0]
    gt_to_pred = cKDTree(pred_arr).query(gt_arr, k=1)[0]
    return SurfaceDistances(np.asarray(pred_to_gt), np.asarray(gt_to_pred))


def chamfer_distance(pred: Any, gt: Any) -> float:
    """CD = mean NN distance GT->pred + pred->GT: Euclidean, not squared, not halved (3DShape2VecSet)."""
    return surface_distances(pred, gt).chamfer()


def fscore(pred: Any, gt: Any, tau: float) -> FScore:
    """F-score at ``tau`` in percent; precision = share of PRED points within tau of GT, recall = share of GT points
    within tau of pred (3DShape2VecSet and what3d swap the two names; F is the same)."""
    return surface_distances(pred, gt).fscore(tau)


# --- grid, marching cubes, surface samples ---------------------------------------------------------------------
def _check_grid(resolution: int, bound: float) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2; got {resolution!r}")
    if not bound > 0:
        raise ValueError(f"bound must be positive; got {bound!r}")


def _grid_slice(start: int, stop: int, axis: np.ndarray) -> np.ndarray:
    """Points ``start:stop`` (flat 'ij' order) of the grid over ``axis`` x ``axis`` x ``axis``, float32."""
    r = len(axis)
    flat = np.arange(start, stop, dtype=np.int64)
    return np.stack([axis[flat // (r * r)], axis[(flat // r) % r], axis[flat % r]], axis=1).astype(np.float32)


def grid_points(resolution: int, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """(R^3, 3) float32 grid over ``linspace(-bound, bound, R)`` per axis, ``indexing='ij'`` (x slowest, z fastest)."""
    _check_grid(resolution, bound)
    axis = np.linspace(-bound, bound, resolution)
    return _grid_slice(0, resolution**3, axis)


def evaluate_grid(fn: Callable[[np.ndarray], Any], resolution: int = DEFAULT_RESOLUTION, bound: float = DEFAULT_BOUND,
                  chunk: int = 65536) -> np.ndarray:  # fmt: skip
    """(R, R, R) float32 volume of ``fn`` on :func:`grid_points`, ``volume[i, j, k] = fn(x_i, y_j, z_k)``.

    ``fn`` gets (m, 3) float32 numpy points, m <= ``chunk``, and returns m values (numpy or a torch tensor); the
    grid is built chunk by chunk, so memory is the volume plus one chunk."""
    _check_grid(resolution, bound)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer; got {chunk!r}")
    axis = np.linspace(-bound, bound, resolution)
    total = resolution**3
    volume = np.empty(total, dtype=np.float32)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        values = _as_numpy(fn(_grid_slice(start, stop, axis))).reshape(-1)
        if len(values) != stop - start:
            raise ValueError(f"fn returned {len(values)} values for {stop - start} points")
        volume[start:stop] = values
    return volume.reshape(resolution, resolution, resolution)


def _empty_mesh() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), dtype=np.int64)


def marching_cubes(volume: Any, level: float = 0.0, bound: float = DEFAULT_BOUND,
                   backend: str = "pymcubes") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Iso-surface of a (R0, R1, R2) 'ij' volume over [-bound, bound]^3: (verts (V, 3) float32 world coordinates,
    faces (F, 3) int64). Empty arrays when the volume does not cross ``level``."""
    if backend not in MC_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(MC_BACKENDS)}; got {backend!r}")
    vol = np.ascontiguousarray(_as_numpy(volume), dtype=np.float64)
    if vol.ndim != 3 or min(vol.shape) < 2:
        raise ValueError(f"volume must be 3-d with at least 2 samples per axis; got shape {vol.shape}")
    if not np.isfinite(vol).all():
        raise ValueError("volume contains NaN or inf values")
    if not vol.min() < level < vol.max():
        return _empty_mesh()
    if backend == "pymcubes":
        import mcubes  # PyPI "pymcubes"

        verts, faces = mcubes.marching_cubes(vol, float(level))
    else:
        from skimage.measure import marching_cubes as skimage_marching_cubes

        try:
            verts, faces, _, _ = skimage_marching_cubes(vol, level=float(level))
        except (ValueError, RuntimeError):
            return _empty_mesh()
        faces = np.asarray(faces)[:, ::-1]  # skimage winds the other way round: match pymcubes
    if len(faces) == 0:
        return _empty_mesh()
    step = 2.0 * bound / (np.array(vol.shape, dtype=np.float64) - 1)
    world = -bound + np.asarray(verts, dtype=np.float64) * step
    return world.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int64)


def sample_surface(verts: Any, faces: Any, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) float32 points uniform by area on the triangle mesh (``trimesh.sample.sample_surface``, seeded: the
    same mesh and seed give the same points); (0, 3) for an empty or zero-area mesh."""
    import trimesh

    v, f = _as_numpy(verts).astype(np.float64), _as_numpy(faces).astype(np.int64)
    if len(f) == 0:
        return np.zeros((0, 3), dtype=np.float32)
    mesh = trimesh.Trimesh(vertices=v, faces=f, process=False)
    if not mesh.area > 0:
        return np.zeros((0, 3), dtype=np.float32)
    points, _ = trimesh.sample.sample_surface(mesh, int(n), seed=int(seed))
    return np.asarray(points, dtype=np.float32)


# --- registered metrics (per-shape values, mean over shapes) -----------------------------------------------------
def _per_shape(x: Any, dims: int) -> list[np.ndarray]:
    """One array per shape from a batch: a (B, ...) array/tensor of ``dims + 1`` dims, a single shape of ``dims``
    dims, or a sequence of per-shape arrays (clouds of different sizes)."""
    if isinstance(x, Sequence) and not isinstance(x, np.ndarray):
        return [_as_numpy(item) for item in x]
    arr = _as_numpy(x)
    return [arr] if arr.ndim == dims else list(arr)


class ShapeMeanMetric(Metric):
    """Collects one value per shape with ``update``; ``compute`` is their mean (NaN when nothing was seen)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.values: list[float] = []

    def compute(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")


@METRICS.register("iou")
class OccupancyIoU(ShapeMeanMetric):
    """``update(logits (B, P), occupancy (B, P))``: per-shape :func:`occupancy_iou`, percent."""

    name, direction, unit = "iou", MAX, "%"

    def update(self, preds: Any, target: Any) -> None:
        logits, occupancy = _per_shape(preds, 1), _per_shape(target, 1)
        if len(logits) != len(occupancy):
            raise ValueError(f"{len(logits)} shapes of logits but {len(occupancy)} of occupancy")
        self.values += [occupancy_iou(p, g) for p, g in zip(logits, occupancy, strict=True)]



@METRICS.register("iou_near")
class NearIoU(OccupancyIoU):
    """IoU on the near-surface query points (reported apart from the volume ``iou``)."""

    name = "iou_near"


class SurfaceMetric(ShapeMeanMetric):
    """``update(pred clouds (B, N, 3) or a list of (N_i, 3), GT clouds (B, M, 3) or a list)``: one value per pair."""

    def update(self, preds: Any, target: Any) -> None:
        pred, gt = _per_shape(preds, 2), _per_shape(target, 2)
        if len(pred) != len(gt):
            raise ValueError(f"{len(pred)} predicted clouds but {len(gt)} ground-truth clouds")
        self.values += [self.score(surface_distances(p, g)) for p, g in zip(pred, gt, strict=True)]

    def score(self, distances: SurfaceDistances) -> float:
        raise NotImplementedError


@METRICS.register("cd")
class Chamfer(SurfaceMetric):
    """Chamfer distance (Euclidean, not squared, not halved) in frame units; shown x10^2 (0.013 -> 1.30)."""

    name, direction, unit, scale = "cd", MIN, "", 1e2

    def score(self, distances: SurfaceDistances) -> float:
        return distances.chamfer()


class FScoreMetric(SurfaceMetric):
    """F-score at :attr:`tau` (frame units), percent."""

    direction, unit = MAX, "%"
    tau: ClassVar[float] = 0.02

    def score(self, distances: SurfaceDistances) -> float:
        return distances.fscore(self.tau).f


@METRICS.register("fscore_01")
class FScore01(FScoreMetric):
    name, tau = "fscore_01", 0.01


@METRICS.register("fscore_02")
class FScore02(FScoreMetric):
    name, tau = "fscore_02", 0.02

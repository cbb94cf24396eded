"""Reconstruction metrics: IoU, Chamfer (Euclidean, not halved) and F-score (conventional precision / recall) on
hand-computed point sets; the 'ij' grid and chunked evaluation; both marching-cubes backends on a sphere and on an
anisotropic ellipsoid (the axis-order pitfall); seeded surface samples; the registered metric classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.metrics.reconstruction import (
    MC_BACKENDS,
    FScore,
    evaluate_grid,
    fscore,
    grid_points,
    marching_cubes,
    occupancy_iou,
    sample_surface,
    surface_distances,
)
from bench.metrics.reconstruction import chamfer_distance as cd
from bench.registry import METRICS


def test_iou_threshold_and_empty_cases() -> None:
    logits = np.array([0.0, -0.1, 2.0, -3.0, 1.0])  # predicted inside: 0, 2, 4 (logit >= 0 is inside)
    occupancy = np.array([1.0, 1.0, 0.0, 0.0, 1.0])  # inside: 0, 1, 4
    assert occupancy_iou(logits, occupancy) == pytest.approx(100 * 2 / 4)
    assert occupancy_iou(-np.ones(4), np.zeros(4)) == 100.0  # both empty
    assert occupancy_iou(np.ones(4), np.zeros(4)) == 0.0
    assert occupancy_iou(torch.tensor([0.5, -0.5]), torch.tensor([1.0, 0.0])) == 100.0
    with pytest.raises(ValueError, match="one shape"):
        occupancy_iou(np.zeros(3), np.zeros(4))


def test_chamfer_is_euclidean_sum_of_both_means() -> None:
    gt = np.array([[0.0, 0, 0], [1, 0, 0]])
    pred = np.array([[0.0, 0, 0.3], [1, 0, 0], [3, 0, 0]])
    # pred->gt: 0.3, 0, 2 (mean 2.3 / 3); gt->pred: 0.3, 0 (mean 0.15); not squared, not halved
    assert cd(pred, gt) == pytest.approx(2.3 / 3 + 0.15)
    assert cd(gt, gt) == 0.0
    assert cd(np.zeros((0, 3)), gt) == math.inf
    with pytest.raises(ValueError, match="gt must be a non-empty"):
        cd(pred, np.zeros((0, 3)))


def test_fscore_names_precision_from_pred_and_recall_from_gt() -> None:
    gt = np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]])
    pred = np.array([[0.0, 0, 0.005], [5, 0, 0]])  # one pred point near GT, one far away
    score = fscore(pred, gt, tau=0.01)
    assert score.precision == pytest.approx(50.0)  # 1 of 2 predicted points within tau of GT
    assert score.recall == pytest.approx(25.0)  # 1 of 4 GT points within tau of pred
    assert score.f == pytest.approx(2 * 50 * 25 / 75)
    assert fscore(pred, gt, tau=0.004) == FScore(0.0, 0.0, 0.0)  # 0.005 is not within 0.004
    assert fscore(np.zeros((0, 3)), gt, 0.02) == FScore(0.0, 0.0, 0.0)
    swapped = fscore(gt, pred, tau=0.01)  # the reference code's naming: P and R swapped, F the same
    assert (swapped.precision, swapped.recall, swapped.f) == pytest.approx((score.recall, score.precision, score.f))
    distances = surface_distances(pred, gt)
    assert distances.chamfer() == pytest.approx(cd(pred, gt)) and distances.fscore(0.01) == score


def test_grid_is_ij_and_chunked_evaluation_matches() -> None:
    grid = grid_points(3, 1.0)
    assert grid.shape == (27, 3) and grid.dtype == np.float32
    np.testing.assert_array_equal(grid[1], [-1, -1, 0])  # z fastest
    np.testing.assert_array_equal(grid[3], [-1, 0, -1])
    np.testing.assert_array_equal(grid[9], [0, -1, -1])  # x slowest

    def field(p: np.ndarray) -> np.ndarray:
        calls.append(len(p))
        return p[:, 0] * 100 + p[:, 1] * 10 + p[:, 2]

    calls: list[int] = []
    chunked = evaluate_grid(field, 7, 0.5, chunk=50)
    assert max(calls) <= 50 and sum(calls) == 7**3
    whole = evaluate_grid(field, 7, 0.5, chunk=10**6)
    np.testing.assert_array_equal(chunked, whole)
    axis = np.linspace(-0.5, 0.5, 7)
    assert chunked[2, 5, 1] == pytest.approx(axis[2] * 100 + axis[5] * 10 + axis[1])
    np.testing.assert_array_equal(whole.reshape(-1), field(grid_points(7, 0.5)).astype(np.float32))
    assert evaluate_grid(lambda p: torch.from_numpy(p[:, 0]), 3, 1.0, chunk=4).shape == (3, 3, 3)


def _ellipsoid_logits(axes: tuple[float, float, float], resolution: int) -> np.ndarray:
    radii = np.array(axes)
    return evaluate_grid(lambda p: 1 - ((p / radii) ** 2).sum(1), resolution, 1.0, chunk=20000)


def _sorted_rows(verts: np.ndarray) -> np.ndarray:
    rows = np.round(verts.astype(np.float64), 5)
    return rows[np.lexsort(rows.T[::-1])]


def test_backends_agree_on_a_sphere() -> None:
    r = 0.6
    volume = _ellipsoid_logits((r, r, r), 41)
    meshes = {backend: marching_cubes(volume, 0.0, 1.0, backend) for backend in MC_BACKENDS}
    (v1, f1), (v2, f2) = meshes.values()
    assert len(v1) > 100 and v1.shape == v2.shape and f1.shape == f2.shape
    np.testing.assert_allclose(_sorted_rows(v1), _sorted_rows(v2), atol=1e-4)
    for verts, faces in meshes.values():
        assert np.abs(np.linalg.norm(verts, axis=1) - r).max() < 0.01
        tri = verts[faces].astype(np.float64)
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        assert np.linalg.norm(cross, axis=1).sum() / 2 == pytest.approx(4 * math.pi * r**2, rel=0.02)
        signed_volume = np.einsum("ij,ij->i", tri[:, 0], cross).sum() / 6  # same winding: outward for both
        assert signed_volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.03)


@pytest.mark.parametrize("backend", MC_BACKENDS)
def test_axis_order_on_an_anisotropic_ellipsoid(backend: str) -> None:
    axes = (0.8, 0.4, 0.2)
    verts, _ = marching_cubes(_ellipsoid_logits(axes, 51), 0.0, 1.0, backend)
    np.testing.assert_allclose(verts.max(0), axes, atol=0.01)
    np.testing.assert_allclose(verts.min(0), -np.array(axes), atol=0.01)
    # a non-cubic volume keeps its per-axis spacing
    coarse = evaluate_grid(lambda p: 1 - ((p / np.array(axes)) ** 2).sum(1), 21, 1.0)
    verts, _ = marching_cubes(coarse[:, :, ::2], 0.0, 1.0, backend)
    np.testing.assert_allclose(verts.max(0), axes, atol=0.06)


@pytest.mark.parametrize("backend", MC_BACKENDS)
def test_empty_level_sets_give_empty_arrays(backend: str) -> None:
    for volume in (np.full((5, 5, 5), -1.0), np.full((5, 5, 5), 2.0), np.zeros((5, 5, 5))):
        verts, faces = marching_cubes(volume, 0.0, 1.0, backend)
        assert verts.shape == (0, 3) and faces.shape == (0, 3)
    assert sample_surface(verts, faces, 10, 0).shape == (0, 3)
    with pytest.raises(ValueError, match="backend"):
        marching_cubes(np.zeros((3, 3, 3)), backend="mcubes")


def test_sample_surface_is_seeded_and_on_the_mesh() -> None:
    verts, faces = marching_cubes(_ellipsoid_logits((0.5, 0.5, 0.5), 33), 0.0, 1.0)
    first, again, other = (sample_surface(verts, faces, 500, seed) for seed in (3, 3, 4))
    assert first.shape == (500, 3) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.abs(np.linalg.norm(first, axis=1) - 0.5).max() < 0.01


def test_registered_metrics_average_per_shape_values() -> None:
    specs = {name: METRICS.get(name).spec() for name in ("iou", "iou_near", "cd", "fscore_01", "fscore_02")}
    assert {n: (str(s.direction), s.unit) for n, s in specs.items()} == {
        "iou": ("max", "%"), "iou_near": ("max", "%"), "cd": ("min", ""), "fscore_01": ("max", "%"),
        "fscore_02": ("max", "%"),
    }  # fmt: skip
    assert specs["cd"].scale == 100.0
    iou = METRICS.get("iou")()
    assert math.isnan(iou.compute())
    iou.update(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    iou.update(np.array([-1.0, -1.0]), np.array([0.0, 0.0]))  # one shape, both empty: 100
    assert iou.compute() == pytest.approx((100 + 50 + 100) / 3)
    gt = np.array([[0.0, 0, 0], [1, 0, 0]])
    pred = np.array([[0.0, 0, 0.015], [1, 0, 0]])
    chamfer, f01, f02 = (METRICS.get(n)() for n in ("cd", "fscore_01", "fscore_02"))
    for metric in (chamfer, f01, f02):
        metric.update([pred, gt], [gt, gt])  # clouds as a list; the second pair is perfect
    assert chamfer.compute() == pytest.approx((0.015 + 0.0) / 2)  # per shape: 0.0075 + 0.0075, then 0
    assert f01.compute() == pytest.approx((50.0 + 100.0) / 2)  # tau 0.01 misses the 0.015 offset
    assert f02.compute() == pytest.approx(100.0)
    chamfer.reset()
    chamfer.update(torch.zeros(2, 4, 3), torch.zeros(2, 5, 3))  # (B, N, 3) batches
    assert chamfer.values == [0.0, 0.0]

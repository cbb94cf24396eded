"""Decoupled views (Point-PQAE RandomCrop): crop, min-max normalisation, box centre, rotation, RNG use."""

from __future__ import annotations

import math

import pytest
import torch

from methods.blocks.views import crop_nearest, decoupled_view, minmax_normalize, rotation_y_matrices

#: five points on the x axis at 0, 1, 2, 3, 10 plus one far off; y, z vary so every axis has an extent
LINE = torch.tensor(
    [[0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [2.0, -1.0, 1.0], [3.0, 0.0, -1.0], [10.0, 4.0, 2.0], [-9.0, 1.0, 0.0]]
)


def test_crop_keeps_the_points_nearest_the_seed_nearest_first() -> None:
    xyz = LINE[None]
    kept = crop_nearest(xyz, torch.tensor([2]), 3)  # seed (2, -1, 1): nearest are itself, point 1, point 3
    # squared distances from the seed: p1 = 1 + 9 + 0.25 = 10.25, p3 = 1 + 1 + 4 = 6, p0 = 4 + 1 + 1 = 6
    # ties (p0, p3 at 6) break by the lower index: p0 first
    expected = torch.stack([LINE[2], LINE[0], LINE[3]])
    torch.testing.assert_close(kept[0], expected)


def test_crop_is_per_sample() -> None:
    xyz = torch.stack([LINE, LINE.flip(0)])
    kept = crop_nearest(xyz, torch.tensor([0, 0]), 2)
    torch.testing.assert_close(kept[0], LINE[[0, 1]])  # seed (0,0,0): itself, then p1 (5.25) vs p3 (10), p2 (6)
    torch.testing.assert_close(kept[1], torch.stack([LINE[5], LINE[0]]))  # seed (-9,1,0): itself, then origin


def test_minmax_normalisation_and_box_centre() -> None:
    pts = torch.tensor([[[0.0, 2.0, -1.0], [4.0, 3.0, 1.0], [1.0, 2.5, 0.0]]])
    normed, center = minmax_normalize(pts)
    torch.testing.assert_close(center, torch.tensor([[2.0, 2.5, 0.0]]))
    # per axis 2 (p - min) / (max - min + 1e-6) - 1
    extent = torch.tensor([4.0, 1.0, 2.0]) + 1e-6
    expected = 2 * (pts[0] - torch.tensor([0.0, 2.0, -1.0])) / extent - 1
    torch.testing.assert_close(normed[0], expected)
    assert normed.amin(1).allclose(torch.full((1, 3), -1.0)) and normed.amax(1).allclose(torch.ones(1, 3), atol=1e-5)
    centred, center2 = minmax_normalize(pts, scale=False)
    torch.testing.assert_close(centred, pts - center[:, None])
    torch.testing.assert_close(center2, center)


def test_rotation_matrix_is_pointcloudrotate() -> None:
    rot = rotation_y_matrices(torch.tensor([math.pi / 2, 0.0]))
    torch.testing.assert_close(rot[0], torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]))
    torch.testing.assert_close(rot[1], torch.eye(3))
    # row vectors: (1, 0, 0) @ R(pi/2) = (0, 0, 1)
    torch.testing.assert_close(torch.tensor([1.0, 0.0, 0.0]) @ rot[0], torch.tensor([0.0, 0.0, 1.0]))


def test_decoupled_view_replays_its_random_draws() -> None:
    xyz = torch.rand(3, 50, 3)
    gen = torch.Generator().manual_seed(7)
    view = decoupled_view(xyz, 0.6, rotate=True, generator=gen)
    gen = torch.Generator().manual_seed(7)  # the same draws, in the documented order: rate, seeds, angles
    rate = 0.6 + 0.4 * torch.rand((), generator=gen).item()
    seeds = torch.randint(50, (3,), generator=gen)
    angles = torch.rand(3, generator=gen) * 2 * math.pi
    kept = crop_nearest(xyz, seeds, int(50 * rate))
    normed, center = minmax_normalize(kept)
    assert view.points.shape == (3, int(50 * rate), 3) and 30 <= view.points.shape[1] <= 50
    torch.testing.assert_close(view.box_center, center)
    torch.testing.assert_close(view.angle, angles)
    torch.testing.assert_close(view.points, normed @ rotation_y_matrices(angles))
    assert view.points[..., 1].abs().max() <= 1.0 + 1e-5  # Y is the rotation axis: still in [-1, 1]


def test_decoupled_view_without_crop_or_rotation() -> None:
    xyz = torch.rand(2, 20, 3)
    gen = torch.Generator().manual_seed(1)
    view = decoupled_view(xyz, 1.0, rotate=False, generator=gen)
    seeds = torch.randint(20, (2,), generator=torch.Generator().manual_seed(1))
    centred, center = minmax_normalize(xyz, scale=False)
    # the reference keeps every point, ordered by distance to the seed, and only translates them
    for i in range(2):
        order = (xyz[i] - xyz[i, seeds[i]]).square().sum(-1).argsort(stable=True)
        torch.testing.assert_close(view.points[i], centred[i, order])
    torch.testing.assert_close(view.box_center, center)
    assert (view.angle == 0).all()
    with pytest.raises(ValueError, match="crop_rate_min"):
        decoupled_view(xyz, 0.0)

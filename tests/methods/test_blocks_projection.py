"""Depth projection for the image teachers: pixels and depths of hand-built clouds, clipping, range, resizing."""

from __future__ import annotations

import math

import pytest
import torch

from methods.blocks.projection import (
    DEPTH_FLOOR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    depth_images,
    to_teacher_input,
    view_rotations,
)


def _depth(z: float) -> float:
    return DEPTH_FLOOR + (1 - DEPTH_FLOOR) * (z + 1) / 2


def test_one_view_pixels_nearest_point_and_clipping() -> None:
    # size 4: column floor((x + 1) * 2), row floor((1 - y) * 2)
    cloud = torch.tensor([[
        [0.1, 0.6, 0.5],  # col 2, row 0, depth 0.775 (nearest of the two in this pixel)
        [0.2, 0.7, -0.5],  # col 2, row 0, depth 0.325: hidden
        [-0.9, -0.1, -1.0],  # col 0, row 2, the far plane: DEPTH_FLOOR
        [1.0, -1.0, 0.0],  # the closed edge: col 3, row 3, depth 0.55
        [1.5, 0.0, 0.9],  # x outside [-1, 1]: dropped
        [0.0, -1.2, 0.9],  # y outside: dropped
    ]])  # fmt: skip
    out = depth_images(cloud, views=1, size=4, densify=1)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 0, 2] = 0.775
    expected[0, 0, 2, 0] = DEPTH_FLOOR
    expected[0, 0, 3, 3] = 0.55
    torch.testing.assert_close(out, expected)


def test_four_views_rotate_about_y() -> None:
    # p = (0.6, 0, 0.3); view v rotates by v * pi / 2: x' = x cos - z sin, z' = x sin + z cos; y = 0 -> row 2
    cloud = torch.tensor([[[0.6, 0.0, 0.3]]])
    out = depth_images(cloud, views=4, size=4, densify=1)
    cols_depths = [(3, _depth(0.3)), (1, _depth(0.6)), (0, _depth(-0.3)), (2, _depth(-0.6))]
    expected = torch.zeros(1, 4, 4, 4)
    for v, (col, d) in enumerate(cols_depths):
        expected[0, v, 2, col] = d
    torch.testing.assert_close(out, expected)
    assert out[0, 1, 2, 1] == pytest.approx(0.82)  # view 1 turns the point towards the viewer


def test_rotations_match_the_pointcloud_rotate_convention() -> None:
    rot = view_rotations(4)
    torch.testing.assert_close(rot[0], torch.eye(3))
    p = torch.tensor([1.0, 2.0, 3.0])
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    torch.testing.assert_close(p @ rot[1], torch.tensor([1 * c - 3 * s, 2.0, 1 * s + 3 * c]))


def test_densify_spreads_a_point_over_its_3x3_neighbourhood() -> None:
    cloud = torch.tensor([[[0.1, 0.6, 0.5], [-0.9, -0.9, -1.0]]])  # (row 0, col 2) 0.775 and (row 3, col 0) 0.1
    out = depth_images(cloud, views=1, size=4)[0, 0]
    expected = torch.tensor([
        [0.0, 0.775, 0.775, 0.775],
        [0.0, 0.775, 0.775, 0.775],
        [0.1, 0.1, 0.0, 0.0],
        [0.1, 0.1, 0.0, 0.0],
    ])  # fmt: skip
    torch.testing.assert_close(out, expected)


def test_batch_range_and_background() -> None:
    gen = torch.Generator().manual_seed(0)
    cloud = torch.nn.functional.normalize(torch.randn(3, 256, 3, generator=gen), dim=-1) * 0.99
    out = depth_images(cloud, views=3, size=16)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert (out == 0).any() and (out >= DEPTH_FLOOR).any()
    # each cloud's images depend on that cloud only
    torch.testing.assert_close(out[1:2], depth_images(cloud[1:2], views=3, size=16))
    far = depth_images(torch.full((1, 8, 3), 2.0), views=2, size=8)
    assert (far == 0).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="B, N, 3"):
        depth_images(torch.zeros(4, 3), views=1, size=4)
    with pytest.raises(ValueError, match="densify odd"):
        depth_images(torch.zeros(1, 4, 3), views=1, size=4, densify=2)
    with pytest.raises(ValueError, match="views must be"):
        depth_images(torch.zeros(1, 4, 3), views=0, size=4)


def test_to_teacher_input_resizes_replicates_and_normalises() -> None:
    depth = torch.zeros(2, 3, 8, 8)
    depth[1, 2] = 0.5  # cloud 1, view 2 -> image 1 * 3 + 2 = 5
    out = to_teacher_input(depth)
    assert out.shape == (6, 3, 224, 224)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[5, :, 100, 7], (0.5 - mean) / std)
    torch.testing.assert_close(out[0, :, 0, 0], -mean / std)
    custom = to_teacher_input(depth, size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    torch.testing.assert_close(custom, (depth.reshape(6, 1, 8, 8).expand(-1, 3, -1, -1) - 0.5) / 0.5)

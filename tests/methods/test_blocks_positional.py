"""Sinusoidal positional embedding: layout and values against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from methods.blocks.positional import sinusoidal_embedding, sinusoidal_frequencies


def test_frequencies() -> None:
    torch.testing.assert_close(sinusoidal_frequencies(4), torch.tensor([1.0, 10000**-0.25, 10000**-0.5, 10000**-0.75]))


def test_layout_per_coordinate_sin_then_cos() -> None:
    # 2 coordinates, width 8: F = 2 frequencies (1, 0.01) per coordinate
    coords = torch.tensor([[0.5, -2.0]])
    out = sinusoidal_embedding(coords, 8)[0]
    w = [1.0, 0.01]
    expected = [
        math.sin(0.5 * w[0]),
        math.sin(0.5 * w[1]),
        math.cos(0.5 * w[0]),
        math.cos(0.5 * w[1]),
        math.sin(-2.0 * w[0]),
        math.sin(-2.0 * w[1]),
        math.cos(-2.0 * w[0]),
        math.cos(-2.0 * w[1]),
    ]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_batched_shapes_and_zero() -> None:
    out = sinusoidal_embedding(torch.zeros(2, 5, 6), 384)
    assert out.shape == (2, 5, 384)
    block = torch.cat([torch.zeros(32), torch.ones(32)])  # sin 0 = 0, cos 0 = 1 for each of the 6 coordinates
    torch.testing.assert_close(out[1, 3], block.repeat(6))


def test_width_must_fit_the_coordinates() -> None:
    with pytest.raises(ValueError, match="multiple of 2 x 6"):
        sinusoidal_embedding(torch.zeros(1, 6), 100)

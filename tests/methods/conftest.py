"""Fixtures of the method tests: a seeded global RNG and a tiny random cloud."""

from __future__ import annotations

import pytest
import torch
from methods_support import TINY_POINTS


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def cloud() -> torch.Tensor:
    """(2, TINY_POINTS, 3) random points in the unit cube."""
    return torch.rand(2, TINY_POINTS, 3)

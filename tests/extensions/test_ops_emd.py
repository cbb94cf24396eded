"""Earth mover's distance: the exact Hungarian oracle against brute force, the approximation against the oracle."""

from __future__ import annotations

import itertools

import pytest
import torch

from extensions import ops


def _brute_force(a: torch.Tensor, b: torch.Tensor, cost: str) -> float:
    d = ((a[:, None] - b[None]) ** 2).sum(-1)
    c = d.sqrt() if cost == "euclidean" else d
    n = a.shape[0]
    return min(sum(c[i, p[i]].item() for i in range(n)) for p in itertools.permutations(range(n))) / n


@pytest.mark.parametrize("cost", ["euclidean", "sqeuclidean"])
def test_exact_matches_brute_force(cost):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 6, 3, generator=gen, dtype=torch.float64), torch.rand(3, 6, 3, generator=gen,
                                                                               dtype=torch.float64)
    got = ops.earth_movers_distance(a, b, cost=cost, method="exact")
    expected = torch.tensor([_brute_force(a[i], b[i], cost) for i in range(3)], dtype=torch.float64)
    torch.testing.assert_close(got, expected)


def test_exact_is_zero_for_a_permutation_and_symmetric():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(2, 40, 3, generator=gen)
    b = a[:, torch.randperm(40, generator=gen)]
    assert ops.earth_movers_distance(a, b, method="exact").abs().max() < 1e-6
    c = torch.rand(2, 40, 3, generator=gen)
    torch.testing.assert_close(ops.earth_movers_distance(a, c, method="exact"),
                               ops.earth_movers_distance(c, a, method="exact"))


@pytest.mark.parametrize("n", [8, 64, 256])
def test_approx_is_a_tight_upper_bound_of_exact(n):
    gen = torch.Generator().manual_seed(n)
    a, b = torch.rand(4, n, 3, generator=gen), torch.rand(4, n, 3, generator=gen)
    exact = ops.earth_movers_distance(a, b, method="exact")
    approx = ops.earth_movers_distance(a, b, method="approx")
    ratio = approx / exact
    assert (ratio > 1 - 1e-4).all(), ratio  # a feasible plan never beats the optimum
    assert (ratio < 1.35).all(), ratio  # measured 1.07-1.26 on uniform clouds of 8-256 points


def test_approx_handles_unequal_sizes_and_near_identity():
    gen = torch.Generator().manual_seed(2)
    a = torch.rand(2, 100, 3, generator=gen)
    assert ops.earth_movers_distance(a, a + 1e-4).max() < 1e-3
    value = ops.earth_movers_distance(a, torch.rand(2, 37, 3, generator=gen))
    assert value.shape == (2,) and torch.isfinite(value).all() and (value > 0).all()


@pytest.mark.parametrize("method", ["approx", "exact"])
def test_emd_gradients_are_finite_with_coincident_points(method):
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(2, 10, 3, generator=gen, dtype=torch.float64)
    b = a.clone()
    b[:, 5:] += 0.1
    a.requires_grad_()
    ops.earth_movers_distance(a, b, method=method).sum().backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_emd_argument_errors():
    a = torch.rand(1, 4, 3)
    with pytest.raises(ValueError, match="cost"):
        ops.earth_movers_distance(a, a, cost="l1")
    with pytest.raises(ValueError, match="method"):
        ops.earth_movers_distance(a, a, method="sinkhorn")
    with pytest.raises(ValueError, match="equal size"):
        ops.earth_movers_distance(a, torch.rand(1, 5, 3), method="exact")

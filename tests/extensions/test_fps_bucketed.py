"""Furthest point sampling on large clouds against the reference, index for index.

The CPU backend switches to its bucketed (kd-tree) kernel for clouds of at least 2048 points sampled down to at
least 256 (``kBucketMinPoints`` / ``kBucketMinSamples`` in extensions/csrc/cpu/fps.h), so every case here samples at
least 256 points from at least 2048. The inputs aim at what could break an exact bucketed FPS: ties (duplicates,
integer lattices where many squared distances are equal), degenerate buckets (planes, lines, a single repeated
point), rounding (clouds far from the origin), lopsided splits (clusters of very different sizes), float64,
m == N and a non-zero start.
"""

from __future__ import annotations

import pytest
import torch

from extensions import ops, reference


def _check(xyz: torch.Tensor, m: int, backend: str, start: int = 0, skip_origin: bool = False) -> None:
    got = ops.furthest_point_sample(xyz, m, start=start, skip_origin=skip_origin, backend=backend)
    want = reference.furthest_point_sample(xyz, m, start, skip_origin)
    assert got.dtype == torch.long and got.shape == want.shape
    if not torch.equal(got.cpu(), want.cpu()):
        row, col = (got.cpu() != want.cpu()).nonzero()[0].tolist()
        pytest.fail(f"cloud {row}: first differing sample {col}: got {got[row, col]}, want {want[row, col]}")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("b,n,m", [(4, 2048, 256), (2, 3000, 700), (1, 8192, 1024), (3, 8192, 300), (1, 20000, 400)])
def test_random_clouds(backend, device, make_cloud, b, n, m):
    _check(make_cloud(b, n, torch.float32, device, seed=n + m), m, backend)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_duplicates_and_start(backend, device, make_cloud, dtype):
    xyz = make_cloud(2, 5000, dtype, device, seed=7, duplicates=True)
    _check(xyz, 1000, backend, start=4321)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_few_distinct_points(backend, device, dtype):
    """300 distinct points repeated over 4096 slots: after 300 samples every distance is 0 and index 0 repeats."""
    gen = _gen(1)
    distinct = torch.rand(2, 300, 3, generator=gen, dtype=torch.float64)
    pick = torch.randint(0, 300, (2, 4096), generator=gen)
    xyz = torch.stack([distinct[i, pick[i]] for i in range(2)]).to(device=device, dtype=dtype)
    _check(xyz, 512, backend, start=17)


def test_integer_lattice_ties(backend, device):
    """A shuffled 16^3 lattice: squared distances are small integers, so nearly every step has tied candidates."""
    axis = torch.arange(16, dtype=torch.float32)
    grid = torch.cartesian_prod(axis, axis, axis)
    xyz = torch.stack([grid[torch.randperm(len(grid), generator=_gen(s))] for s in range(2)]).to(device)
    _check(xyz, 1500, backend)


@pytest.mark.parametrize("shape", ["plane", "line", "point"])
def test_degenerate_boxes(backend, device, shape):
    xyz = torch.rand(2, 3000, 3, generator=_gen(2))
    xyz[..., 2] = 0.25
    if shape in ("line", "point"):
        xyz[..., 1] = -3.0
    if shape == "point":
        xyz[..., 0] = 1.5
    _check(xyz.to(device), 600, backend, start=5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_far_from_origin_and_clustered(backend, device, dtype):
    """A tight cluster, a wide one and a few outliers, all shifted by 1000: rounding in p - q matters here."""
    gen = _gen(3)
    tight = torch.randn(2, 3000, 3, generator=gen, dtype=torch.float64) * 1e-3
    wide = torch.randn(2, 1500, 3, generator=gen, dtype=torch.float64) * 5.0
    outliers = torch.rand(2, 20, 3, generator=gen, dtype=torch.float64) * 400.0
    xyz = torch.cat([tight, wide, outliers], 1) + 1000.0
    xyz = xyz[:, torch.randperm(xyz.shape[1], generator=gen)]
    _check(xyz.to(device=device, dtype=dtype), 800, backend)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_full_permutation(backend, device, make_cloud, dtype):
    xyz = make_cloud(1, 2500, dtype, device, seed=11)
    got = ops.furthest_point_sample(xyz, 2500, start=2499, backend=backend)
    assert sorted(got[0].tolist()) == list(range(2500))
    _check(xyz, 2500, backend, start=2499)


def test_float64_large(backend, device, make_cloud):
    _check(make_cloud(2, 9000, torch.float64, device, seed=5), 600, backend, start=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("skip_origin", [False, True])
def test_points_near_the_origin(backend, device, make_cloud, dtype, skip_origin):
    """A cloud in [-0.05, 0.05]^3: about one point in eight is skipped; duplicates among them."""
    xyz = make_cloud(2, 4096, dtype, device, seed=21, duplicates=True, near_origin=True)
    _check(xyz, 700, backend, start=3, skip_origin=skip_origin)


def test_a_dense_ball_at_the_origin_is_skipped_leaf_by_leaf(backend, device):
    """3000 points inside the skipped ball (whole leaves of them) around 100 kept points: after the first pick only
    kept points come, then the lowest kept index repeats once they are all used."""
    gen = _gen(4)
    ball = (torch.rand(1, 3000, 3, generator=gen) - 0.5) * 0.03  # |p|^2 <= 3 * 0.015^2 < 1e-3
    kept = torch.rand(1, 100, 3, generator=gen) + 0.2
    xyz = torch.cat([ball, kept], 1)[:, torch.randperm(3100, generator=gen)].to(device)
    got = ops.furthest_point_sample(xyz, 300, skip_origin=True, backend=backend).cpu()
    kept_idx = (xyz.cpu().square().sum(-1) > 1e-3).nonzero()[:, 1]
    assert sorted(got[0, 1:101].tolist()) == kept_idx.tolist()
    assert (got[0, 101:] == kept_idx.min()).all()
    _check(xyz, 300, backend, start=0, skip_origin=True)


def test_every_point_skipped(backend, device):
    """Nothing to pick after the first sample: index 0 repeats (the kernel's besti = 0), whatever the start."""
    xyz = ((torch.rand(2, 2500, 3, generator=_gen(6)) - 0.5) * 0.03).to(device)
    got = ops.furthest_point_sample(xyz, 256, start=7, skip_origin=True, backend=backend).cpu()
    assert (got[:, 0] == 7).all() and (got[:, 1:] == 0).all()
    _check(xyz, 256, backend, start=7, skip_origin=True)

"""Every compiled op against the pure-PyTorch reference: several sizes, float32 and float64, duplicate points,
m == N, k larger than the neighbours available, empty batches and non-contiguous inputs."""

from __future__ import annotations

import pytest
import torch

from extensions import ops, reference

DTYPES = [torch.float32, torch.float64]
SIZES = [(1, 1), (3, 17), (2, 200), (4, 1030)]  # (B, N): single point, below / above one SIMD block, many blocks


def _noncontig(x: torch.Tensor) -> torch.Tensor:
    """Same values, non-contiguous layout (a transposed copy viewed back)."""
    y = x.transpose(0, 1).contiguous().transpose(0, 1)
    assert not y.is_contiguous() or x.shape[0] <= 1 or x.shape[1] <= 1
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,n", SIZES)
@pytest.mark.parametrize("duplicates", [False, True])
@pytest.mark.parametrize("skip_origin", [False, True])
def test_fps_matches_reference(backend, device, make_cloud, dtype, b, n, duplicates, skip_origin):
    xyz = make_cloud(b, n, dtype, device, seed=n, duplicates=duplicates, near_origin=skip_origin)
    for m in sorted({1, min(n, 7), n // 2, n}):
        if m == 0:
            continue
        for start in (0, n - 1):
            got = ops.furthest_point_sample(xyz, m, start=start, skip_origin=skip_origin, backend=backend)
            assert got.dtype == torch.long and got.shape == (b, m)
            want = reference.furthest_point_sample(xyz, m, start, skip_origin)
            assert torch.equal(got, want), (m, start)


@pytest.mark.parametrize("skip_origin,expected", [(False, [0, 1, 4, 0, 0]), (True, [0, 1, 4, 1, 1])])
def test_fps_full_permutation_and_duplicates(backend, device, skip_origin, expected):
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0], [0.5, 0, 0]]], device=device)
    got = ops.furthest_point_sample(xyz, 5, skip_origin=skip_origin, backend=backend)
    # 0, then farthest 1 (lowest of the tied 1 and 2), then 4 (d=0.25), then only zeros are left: 0 wins the tie;
    # skipping the origin, 0 and 3 are out of the race and the lowest other index, 1, repeats
    assert got.tolist() == [expected]
    assert torch.equal(got, reference.furthest_point_sample(xyz, 5, 0, skip_origin))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (5, 17, 17), (64, 300, 32), (33, 1030, 16), (8, 40, 0)])
@pytest.mark.parametrize("duplicates", [False, True])
def test_knn_matches_reference(backend, device, make_cloud, dtype, m, n, k, duplicates):
    ref = make_cloud(3, n, dtype, device, seed=n + k, duplicates=duplicates)
    query = torch.cat([ref[:, : min(m, n) // 2], make_cloud(3, m - min(m, n) // 2, dtype, device, seed=m)], 1)
    idx, dist = ops.knn(query, ref, k, backend=backend)
    ref_idx, ref_dist = reference.knn(query, ref, k)
    assert idx.dtype == torch.long and idx.shape == dist.shape == (3, m, k)
    assert torch.equal(dist, ref_dist)
    assert torch.equal(idx, ref_idx)  # ties (duplicates) resolved by the lowest index on both sides


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("radius", [0.0, 0.05, 0.3, 2.0])
@pytest.mark.parametrize("k", [1, 8, 300])  # 300 > N: more slots than points
def test_ball_query_matches_reference(backend, device, make_cloud, dtype, radius, k):
    xyz = make_cloud(2, 257, dtype, device, seed=1, duplicates=True)
    centers = torch.cat([xyz[:, :20], make_cloud(2, 20, dtype, device, seed=2) * 3 - 1], 1)  # some far outside
    got = ops.ball_query(radius, k, xyz, centers, backend=backend)
    assert got.shape == (2, 40, k) and got.dtype == torch.long
    assert torch.equal(got, reference.ball_query(radius, k, xyz, centers))


def test_ball_query_semantics(backend, device):
    xyz = torch.tensor([[[0.0, 0, 0], [0.5, 0, 0], [0.1, 0, 0], [5, 5, 5]]], device=device)
    centers = torch.tensor([[[0.0, 0, 0], [9.0, 9, 9], [0.45, 0, 0]]], device=device)
    got = ops.ball_query(0.2, 4, xyz, centers, backend=backend)
    assert got.tolist() == [[[0, 2, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", [(1, 1), (17, 3), (200, 513), (1030, 64)])
@pytest.mark.parametrize("duplicates", [False, True])
def test_chamfer_matches_reference(backend, device, make_cloud, dtype, n, m, duplicates):
    a = make_cloud(3, n, dtype, device, seed=n, duplicates=duplicates)
    b = make_cloud(3, m, dtype, device, seed=m + 1, duplicates=duplicates)
    d_ab, d_ba = ops.chamfer_distance(a, b, backend=backend)
    r_ab, r_ba = reference.chamfer_distance(a, b)
    assert torch.equal(d_ab, r_ab) and torch.equal(d_ba, r_ba)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3, 67])
def test_gather_group_interpolate_match_reference(backend, device, make_cloud, dtype, c):
    gen = torch.Generator().manual_seed(c)
    feats = torch.randn(2, 50, c, generator=gen, dtype=dtype).to(device)
    idx2 = torch.randint(0, 50, (2, 70), generator=gen).to(device)
    idx3 = torch.randint(0, 50, (2, 9, 5), generator=gen).to(device)
    assert torch.equal(ops.gather_points(feats, idx2, backend=backend), reference.gather_points(feats, idx2))
    assert torch.equal(ops.group_points(feats, idx3, backend=backend), reference.group_points(feats, idx3))
    unknown, known = make_cloud(2, 30, dtype, device, seed=3), make_cloud(2, 50, dtype, device, seed=4)
    nn_idx, nn_d2 = ops.three_nn(unknown, known, backend=backend)
    assert torch.equal(nn_idx, reference.three_nn(unknown, known)[0])
    w = ops.interpolation_weights(nn_d2)
    torch.testing.assert_close(ops.three_interpolate(feats, nn_idx, w, backend=backend),
                               reference.three_interpolate(feats, nn_idx, w))


def test_empty_batch(backend, device):
    empty = torch.zeros(0, 10, 3, device=device)
    assert ops.furthest_point_sample(empty, 4, backend=backend).shape == (0, 4)
    idx, dist = ops.knn(torch.zeros(0, 5, 3, device=device), empty, 3, backend=backend)
    assert idx.shape == dist.shape == (0, 5, 3)
    assert ops.ball_query(0.1, 4, empty, torch.zeros(0, 5, 3, device=device), backend=backend).shape == (0, 5, 4)
    d_ab, d_ba = ops.chamfer_distance(empty, torch.zeros(0, 7, 3, device=device), backend=backend)
    assert d_ab.shape == (0, 10) and d_ba.shape == (0, 7)
    feats = torch.zeros(0, 10, 4, device=device)
    assert ops.gather_points(feats, torch.zeros(0, 6, dtype=torch.long, device=device), backend=backend).shape == (
        0, 6, 4)


def test_non_contiguous_inputs(backend, device, make_cloud):
    xyz = _noncontig(make_cloud(4, 300, torch.float32, device, seed=5))
    query = xyz[:, ::7]  # strided view
    got = ops.furthest_point_sample(xyz, 50, skip_origin=True, backend=backend)
    assert torch.equal(got, reference.furthest_point_sample(xyz, 50, skip_origin=True))
    assert torch.equal(ops.knn(query, xyz, 9, backend=backend)[1], reference.knn(query, xyz, 9)[1])
    assert torch.equal(ops.chamfer_distance(query, xyz, backend=backend)[0], reference.chamfer_distance(query, xyz)[0])
    feats = make_cloud(4, 300, torch.float64, device, seed=6).transpose(1, 2).contiguous().transpose(1, 2)[:, :, :2]
    idx = torch.randint(0, 300, (4, 11), device=device)
    assert torch.equal(ops.gather_points(feats, idx, backend=backend), reference.gather_points(feats, idx))


def test_out_of_range_index_raises(backend, device):
    feats = torch.zeros(1, 4, 2, device=device)
    if backend == "cuda":
        pytest.skip("CUDA kernels do not validate indices (device-side asserts would poison the context)")
    with pytest.raises(RuntimeError, match="out of range"):
        ops.gather_points(feats, torch.tensor([[0, 4]], device=device), backend=backend)

"""Backward passes of Chamfer, gather, group and interpolate on every backend: float64 gradcheck on small inputs,
and compiled gradients equal to the reference's autograd gradients."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from extensions import ops

ALL_BACKENDS = ["torch", "cpp", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request: pytest.FixtureRequest) -> str:
    """Every backend, the reference included (compiled ones via the ``backend`` fixture's checks)."""
    if request.param == "torch":
        return "torch"
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if request.param == "cpp":
        request.getfixturevalue("cpp_built")
    return request.param


def _dev(name: str) -> torch.device:
    return torch.device("cuda" if name == "cuda" else "cpu")


def _leaf(*shape: int, device: torch.device, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=gen, dtype=torch.float64).to(device).requires_grad_()


def test_chamfer_gradcheck(any_backend):
    dev = _dev(any_backend)
    a, b = _leaf(2, 7, 3, device=dev, seed=0), _leaf(2, 5, 3, device=dev, seed=1)
    assert gradcheck(lambda x, y: ops.chamfer_distance(x, y, backend=any_backend), (a, b))


def test_chamfer_single_direction_gradcheck(any_backend):
    dev = _dev(any_backend)
    a, b = _leaf(1, 6, 3, device=dev, seed=2), _leaf(1, 9, 3, device=dev, seed=3)
    assert gradcheck(lambda x, y: ops.chamfer_distance(x, y, backend=any_backend)[1], (a, b))


def test_gather_and_group_gradcheck(any_backend):
    dev = _dev(any_backend)
    feats = _leaf(2, 6, 4, device=dev, seed=4)
    idx2 = torch.tensor([[0, 5, 5, 2], [1, 1, 1, 3]], device=dev)  # repeats exercise the scatter-add
    idx3 = torch.tensor([[[0, 1], [5, 5]], [[2, 2], [3, 0]]], device=dev)
    assert gradcheck(lambda f: ops.gather_points(f, idx2, backend=any_backend), (feats,))
    assert gradcheck(lambda f: ops.group_points(f, idx3, backend=any_backend), (feats,))


def test_three_interpolate_gradcheck(any_backend):
    dev = _dev(any_backend)
    feats, weight = _leaf(2, 5, 3, device=dev, seed=5), _leaf(2, 4, 3, device=dev, seed=6)
    idx = torch.tensor([[[0, 1, 2], [4, 4, 0], [1, 2, 3], [3, 3, 3]], [[0, 0, 0], [1, 2, 4], [2, 1, 0], [4, 3, 2]]],
                       device=dev)
    assert gradcheck(lambda f, w: ops.three_interpolate(f, idx, w, backend=any_backend), (feats, weight))


def test_compiled_gradients_equal_reference(backend, device, make_cloud):
    a = make_cloud(3, 300, torch.float64, device, seed=7).requires_grad_()
    b = make_cloud(3, 200, torch.float64, device, seed=8).requires_grad_()
    grads = []
    for name in ("torch", backend):
        d_ab, d_ba = ops.chamfer_distance(a, b, backend=name)
        grads.append(torch.autograd.grad((d_ab * 2).sum() + d_ba.square().sum(), (a, b)))
    for ref_grad, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, ref_grad)


def test_knn_and_fps_outputs_carry_no_graph(backend, device, make_cloud):
    xyz = make_cloud(1, 20, torch.float32, device, seed=9).requires_grad_()
    idx, dist = ops.knn(xyz, xyz, 3, backend=backend)
    assert not dist.requires_grad and not idx.requires_grad
    assert not ops.furthest_point_sample(xyz, 4, backend=backend).requires_grad

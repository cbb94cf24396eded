"""Shared fixtures for the point-op tests: the compiled backends under test and random inputs.

The compiled CPU backend is built once per machine (cached by ``extensions.build``) and shared by every test. Its
tests are skipped only when no C++ compiler exists; a compiler that fails to build the sources fails the tests.
CUDA tests run only where torch sees a GPU.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from extensions import build


def _cpp_reason() -> str | None:
    if shutil.which("c++") is None and shutil.which("g++") is None:
        return "no C++ compiler on this machine"
    return None


@pytest.fixture(scope="session")
def cpp_built() -> bool:
    """Builds (or loads from the cache) the CPU ops once per session; fails loudly when the build breaks."""
    reason = _cpp_reason()
    if reason:
        pytest.skip(reason)
    build.build("cpu")
    assert build.ensure("cpu"), build.status("cpu")
    return True


@pytest.fixture(params=["cpp", pytest.param("cuda", marks=pytest.mark.gpu)])
def backend(request: pytest.FixtureRequest) -> str:
    """A compiled backend name; its tests run on that backend's device."""
    if request.param == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        assert build.ensure("cuda"), build.status("cuda")
    else:
        request.getfixturevalue("cpp_built")
    return request.param


@pytest.fixture
def device(backend: str) -> torch.device:
    """Device on which the backend under test runs."""
    return torch.device("cuda" if backend == "cuda" else "cpu")


@pytest.fixture(scope="session")
def make_cloud():
    """The :func:`_cloud` factory."""
    return _cloud


def _cloud(
    b: int, n: int, dtype: torch.dtype, device: torch.device, seed: int, duplicates: bool = False,
    near_origin: bool = False,
) -> torch.Tensor:
    """Random (b, n, 3) points in the unit cube; with ``duplicates`` about a third are copies of other points; with
    ``near_origin`` the cube is [-0.05, 0.05]^3, so that about 13% of the points lie in the ball that FPS
    ``skip_origin`` skips (|p|^2 <= 1e-3, radius 0.0316), and point n // 2 is the origin itself."""
    gen = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, n, 3, generator=gen, dtype=torch.float64)
    if near_origin:
        pts = (pts - 0.5) * 0.1
        pts[:, n // 2] = 0.0
    if duplicates and n > 1:
        src = torch.randint(0, n, (b, n // 3), generator=gen)
        dst = torch.randint(0, n, (b, n // 3), generator=gen)
        pts.scatter_(1, dst.unsqueeze(-1).expand(-1, -1, 3), pts.gather(1, src.unsqueeze(-1).expand(-1, -1, 3)))
    return pts.to(device=device, dtype=dtype)

"""Shared benchmark set-up: every benchmark module runs with its own ``THREADS`` torch threads (default 2, the CI
machine's cores), restored afterwards, so timings in one file never depend on another file's setting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

DEFAULT_THREADS = 2


@pytest.fixture(scope="module", autouse=True)
def _module_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(int(getattr(request.module, "THREADS", DEFAULT_THREADS)))
    yield
    torch.set_num_threads(previous)

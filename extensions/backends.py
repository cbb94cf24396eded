"""Backend selection for :mod:`extensions.ops`.

Names: ``"torch"`` (pure-PyTorch reference, any device and dtype), ``"cpp"`` (compiled C++/OpenMP, CPU tensors),
``"cuda"`` (compiled CUDA, GPU tensors). Compiled backends handle float32/float64 points and features; anything
else goes to the reference.

Rules, per call:
* an explicit ``backend=`` argument is strict: it raises :class:`BackendUnavailable` when it cannot be honoured
  (tests and benchmarks rely on that, so they never compare the reference with itself);
* otherwise ``BENCH_OPS=torch|cpp|cuda`` forces one: ``cpp`` covers CPU tensors and ``cuda`` GPU tensors, tensors
  on the other device use the reference, and a forced backend that fails to build falls back to the reference with
  one warning;
* unset (or ``auto``): the compiled backend of the tensor's device when it builds, else the reference.

``BENCH_FPS_SKIP_ORIGIN=1|0`` (default 1, as pointnet2_ops' kernel): whether ``furthest_point_sample`` skips points
with |p|^2 <= 1e-3 when a call does not say (:func:`fps_skip_origin`). It is read on every call, so the value set
in the parent (:func:`set_fps_skip_origin`) reaches spawned pool workers and Slurm tasks, which inherit the
environment; RunRecords store it as ``env.ops_fps_skip_origin``.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any

import torch

from extensions import build

log = logging.getLogger("extensions.ops")

BACKENDS = ("torch", "cpp", "cuda")
_ALIASES = {"": "auto", "auto": "auto", "torch": "torch", "reference": "torch", "cpp": "cpp", "cpu": "cpp",
            "cuda": "cuda"}
_COMPILED_DTYPES = (torch.float32, torch.float64)
FPS_SKIP_ORIGIN_ENV = "BENCH_FPS_SKIP_ORIGIN"
_SWITCH = {"1": True, "true": True, "on": True, "yes": True, "0": False, "false": False, "off": False, "no": False}
_logged: set[str] = set()


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run this call (not built, wrong device or dtype)."""


def requested() -> str:
    """The ``BENCH_OPS`` setting, normalised to ``auto|torch|cpp|cuda`` (ValueError for anything else)."""
    raw = os.environ.get("BENCH_OPS", "").strip().lower()
    if raw not in _ALIASES:
        raise ValueError(f"BENCH_OPS={raw!r} is not one of torch, cpp, cuda (or auto)")
    return _ALIASES[raw]


def fps_skip_origin() -> bool:
    """``BENCH_FPS_SKIP_ORIGIN`` as a bool (unset or empty: True, as the reference kernel); ValueError for a value
    that is not one of the switches below."""
    raw = os.environ.get(FPS_SKIP_ORIGIN_ENV, "").strip().lower()
    if raw == "":
        return True
    if raw not in _SWITCH:
        raise ValueError(f"{FPS_SKIP_ORIGIN_ENV}={raw!r} is not one of 1/0, true/false, on/off, yes/no")
    return _SWITCH[raw]


def set_fps_skip_origin(enabled: bool) -> None:
    """Set the process default (and, through the environment, that of every process started after this call)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"fps_skip_origin must be a bool, got {enabled!r}")
    os.environ[FPS_SKIP_ORIGIN_ENV] = "1" if enabled else "0"


def _native(device: torch.device) -> str | None:
    return {"cpu": "cpp", "cuda": "cuda"}.get(device.type)


def _kind(backend: str) -> str:
    return "cpu" if backend == "cpp" else "cuda"


def resolve(device: torch.device | str, dtype: torch.dtype | None, backend: str | None = None) -> str:
    """Backend that runs an op on tensors of ``device``/``dtype`` (None: mixed dtypes) under this module's rules."""
    device = torch.device(device)
    compiled_ok = dtype in _COMPILED_DTYPES
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "torch":
            return backend
        if _native(device) != backend or not compiled_ok:
            raise BackendUnavailable(f"backend {backend!r} cannot run on {device.type} tensors of dtype {dtype}")
        if not build.ensure(_kind(backend)):
            raise BackendUnavailable(f"backend {backend!r} is not available: {build.status(_kind(backend))}")
        return backend
    wanted = requested()
    native = _native(device)
    if wanted == "torch" or native is None or not compiled_ok or wanted not in ("auto", native):
        return "torch"
    return native if build.ensure(_kind(native)) else "torch"


def library(backend: str) -> ModuleType | Any:
    """The ``torch.ops`` namespace of a compiled backend."""
    return torch.ops.pointbench_cpu if backend == "cpp" else torch.ops.pointbench_cuda


def default_device() -> torch.device:
    """The device runs use by default: the GPU when torch sees one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe(device: torch.device | str | None = None) -> str:
    """Backend for float32 tensors on ``device`` (default: :func:`default_device`); logged once per value."""
    device = torch.device(device) if device is not None else default_device()
    name = resolve(device, torch.float32)
    if name not in _logged:
        _logged.add(name)
        log.info("point ops backend: %s (device %s, BENCH_OPS=%s)", name, device.type, requested())
    return name

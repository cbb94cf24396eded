"""Build the compiled point-op backends with ``torch.utils.cpp_extension`` (JIT, cached) and load them.

* CPU ops (``torch.ops.pointbench_cpu``): g++ with OpenMP; built lazily on first use, or ahead of time with
  ``python -m extensions.build`` (what the README's install step runs).
* CUDA ops (``torch.ops.pointbench_cuda``): built only when torch sees a GPU and a CUDA toolkit is installed.
* ``python -m extensions.build --check-cuda`` compiles the CUDA sources with nvcc for sm_90 without linking or
  running them (the check that works on GPU-less machines that have nvcc).

Builds are cached under ``$BENCH_OPS_CACHE`` (default ``~/.cache/pointbench/ops``) in a folder keyed by a hash of
the sources, the flags, the torch and Python versions and the CPU, so an edit or an upgrade rebuilds and nothing
stale is ever loaded. Loading never raises: a failed build logs one warning and the ops fall back to the reference.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

CSRC = Path(__file__).resolve().parent / "csrc"
CPU_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp"]
CUDA_FLAGS = ["-O3", "--fmad=false"]
_LOCK = threading.Lock()
_STATE: dict[str, bool | str] = {}  # kind -> True (loaded) | error message


class BuildError(RuntimeError):
    """A compiled backend could not be built or loaded."""


def cache_root() -> Path:
    """Folder holding every cached build (``$BENCH_OPS_CACHE`` or ``~/.cache/pointbench/ops``)."""
    return Path(os.environ.get("BENCH_OPS_CACHE") or Path.home() / ".cache" / "pointbench" / "ops").expanduser()


def sources(kind: str) -> list[Path]:
    """Translation units of one backend: ``"cpu"`` or ``"cuda"``."""
    folder = CSRC / kind
    return sorted(folder.glob("*.cpp")) + sorted(folder.glob("*.cu"))


def _cpu_signature() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        return next((line for line in info.splitlines() if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor()


def build_key(kind: str) -> str:
    """Hash of everything that changes the binary: sources, headers, flags, torch/Python versions, CPU features."""
    digest = hashlib.sha256()
    for path in sorted(CSRC.rglob("*")):
        if path.suffix in {".cpp", ".cu", ".h", ".cuh"}:
            digest.update(path.relative_to(CSRC).as_posix().encode())
            digest.update(path.read_bytes())
    extra = [kind, torch.__version__, str(torch.version.cuda), sys.version, platform.machine(), _cpu_signature()]
    digest.update("\n".join(extra + CPU_FLAGS + CUDA_FLAGS).encode())
    return digest.hexdigest()[:16]


def _notify(message: str) -> None:
    print(f"[pointbench] {message}", file=sys.stderr, flush=True)


def build(kind: str, verbose: bool = False) -> Path:
    """Compile (if not cached) and load one backend into ``torch.ops``; returns the shared library path.

    Raises :class:`BuildError` with the compiler's message when it fails.
    """
    from torch.utils import cpp_extension

    name = f"pointbench_{kind}"
    folder = cache_root() / f"{name}-{build_key(kind)}"
    library = folder / f"{name}.so"
    if not library.exists():
        eta = "~20 s" if kind == "cpu" else "~2-3 min"
        _notify(f"compiling pointbench {kind.upper()} ops (one time, {eta}) into {folder} ...")
    started = time.perf_counter()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if library.exists():  # a cached build: load it, without torch's build baton (see _compile_lock)
            torch.ops.load_library(str(library))
            return library
        with _compile_lock(folder):
            if library.exists():  # another process compiled it while this one waited
                torch.ops.load_library(str(library))
                return library
            _compile(cpp_extension, name, kind, folder, verbose)
    except Exception as err:  # unwritable cache, compiler or ninja missing, compile error, load error
        last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise BuildError(f"building pointbench {kind} ops failed: {last}") from err
    if verbose:
        _notify(f"{kind} ops ready in {time.perf_counter() - started:.1f} s ({library})")
    return library


@contextmanager
def _compile_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<folder>/.compile.lock`` around a compile, released by the kernel when its holder
    dies. torch's own baton (``<folder>/lock``, a file whose mere existence means "someone is building") is never
    released by a process killed while holding it, and every later load of the extension then waits forever (seen
    when a test SIGKILLed a pool worker during its first op). Under this flock nobody else can hold the baton, so a
    baton found here is stale and is removed."""
    with open(folder / ".compile.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (folder / "lock").unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile(cpp_extension, name: str, kind: str, folder: Path, verbose: bool) -> None:
    """``cpp_extension.load`` of one backend into ``folder`` (ninja; loads the library into ``torch.ops``)."""
    cpp_extension.load(
        name=name,
        sources=[str(s) for s in sources(kind)],
        extra_cflags=CPU_FLAGS if kind == "cpu" else ["-O3"],
        extra_cuda_cflags=CUDA_FLAGS,
        extra_ldflags=["-fopenmp"] if kind == "cpu" else [],
        build_directory=str(folder),
        with_cuda=kind == "cuda",
        is_python_module=False,
        verbose=verbose,
    )


def ensure(kind: str) -> bool:
    """Load one backend once per process; on failure warn once and return False (never raises)."""
    with _LOCK:
        if kind not in _STATE:
            if kind == "cuda" and not cuda_buildable():
                _STATE[kind] = "no CUDA device or no CUDA toolkit"
            else:
                try:
                    build(kind)
                    _STATE[kind] = True
                except BuildError as err:
                    _STATE[kind] = str(err)
                    warnings.warn(f"{err}; falling back to the PyTorch reference ops", RuntimeWarning, stacklevel=3)
        return _STATE[kind] is True


def status(kind: str) -> str:
    """``"loaded"``, ``"not built"`` or the reason the last attempt failed."""
    state = _STATE.get(kind)
    return "loaded" if state is True else "not built" if state is None else str(state)


def cuda_buildable() -> bool:
    """True when torch sees a GPU and a CUDA toolkit (nvcc) was found."""
    from torch.utils.cpp_extension import CUDA_HOME

    return torch.cuda.is_available() and CUDA_HOME is not None


def _cuda_include(cuda_home: str | None) -> Path:
    """The toolkit's include folder: the first of ``CUDA_HOME``, ``$CUDA_PATH`` and /usr/local/cuda that has
    ``cuda_runtime.h`` (torch takes ``CUDA_HOME`` = /usr/local from an nvcc wrapper in /usr/local/bin)."""
    for root in (cuda_home, os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_runtime.h").exists():
            return Path(root) / "include"
    return Path(cuda_home or "/usr/local/cuda") / "include"


def check_cuda_sources(arch: str = "sm_90") -> list[tuple[str, bool, float, str]]:
    """Compile every CUDA source with nvcc (``-c``, no link, no run) and the CUDA binding with the host compiler.

    Returns ``(file, ok, seconds, message)`` rows. Works without a GPU and with a CPU-only torch, whose headers
    include ATen/c10's CUDA headers.
    """
    from torch.utils.cpp_extension import CUDA_HOME, include_paths

    nvcc = Path(CUDA_HOME or "/usr/local/cuda") / "bin" / "nvcc"
    includes = [f"-I{p}" for p in include_paths()] + [f"-I{_cuda_include(CUDA_HOME)}"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # CPU-only torch wheels lack this CMake-generated header; CUDA wheels ship it with exactly this content.
        shim = Path(tmp) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        shim.parent.mkdir(parents=True)
        shim.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        includes.append(f"-I{tmp}")
        for src in sources("cuda"):
            if src.suffix == ".cu":
                cmd = [str(nvcc), "-c", f"-arch={arch}", "-std=c++17", *CUDA_FLAGS, str(src), "-o", f"{tmp}/x.o"]
            else:
                cmd = ["c++", "-std=c++20", "-fsyntax-only", "-O2", *includes, str(src)]
            started = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            rows.append((src.name, proc.returncode == 0, time.perf_counter() - started, proc.stderr.strip()[-2000:]))
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m extensions.build [--cuda] [--check-cuda] [-v]``: prebuild (exit 1 when a build fails)."""
    parser = argparse.ArgumentParser(description="Prebuild the pointbench compiled point ops.")
    parser.add_argument("--cuda", action="store_true", help="also build the CUDA ops (needs a GPU and nvcc)")
    parser.add_argument("--check-cuda", action="store_true", help="only compile-check the CUDA sources with nvcc")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.check_cuda:
        rows = check_cuda_sources()
        for name, ok, seconds, message in rows:
            print(f"{'ok  ' if ok else 'FAIL'} {name} ({seconds:.1f} s)" + ("" if ok else f"\n{message}"))
        return 0 if all(ok for _, ok, _, _ in rows) else 1
    kinds = ["cpu"] + (["cuda"] if args.cuda or cuda_buildable() else [])
    for kind in kinds:
        try:
            print(f"pointbench {kind} ops: {build(kind, verbose=args.verbose)}")
        except BuildError as err:
            print(err, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

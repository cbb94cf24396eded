"""The environment a result was produced in (stored in every RunRecord and MLflow run)."""

from __future__ import annotations

import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

REPO_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD of the checkout, with a ``+dirty`` suffix when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Commit, versions, device, ops backend and FPS ``skip_origin`` setting, threads per process and ``world_size``
    (DDP processes, 1 without)."""
    from extensions import ops

    device = torch.device(device)
    info: dict[str, Any] = {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "ops_backend": ops.backend_name(device),
        "ops_fps_skip_origin": ops.fps_skip_origin(),  # pointnet2_ops' FPS quirk (BENCH_FPS_SKIP_ORIGIN, default on)
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(),
        "world_size": dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1,
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
    return info

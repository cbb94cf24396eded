"""What a masked point model reconstructs, as a figure: clean input | masked input | reconstruction.

``write_reconstruction_figure(result, path)`` draws one sample of a ``reconstruct(...)`` result dict (keys
``clean`` (B, N, 3), ``masked`` (B, V, 3) visible points, ``reconstruction`` (B, R, 3) generated points, optional
``centers`` (B, G, 3)) as three 3-D scatter panels with matplotlib (Agg backend, no display needed).

Command line (Point-MaDi's ancestral DDPM sampler, ``PointMaDi.reconstruct``)::

    python -m methods.blocks.recon_figure --ckpt runs/pretrain/.../ckpt-last.pth --out fig.png \
        [--profile demo|paper] [--steps 50] [--shape chair | --cloud points.npy] [--seed 0]

The model size comes from ``methods/configs/point_madi.yaml`` under ``--profile`` (it must match the checkpoint);
the checkpoint may be ours or the authors' (``base_model`` / ``module.`` wrappers are stripped, strict load).
``--cloud`` reads an (N, 3) ``.npy`` or whitespace ``.txt`` file; otherwise a synthetic ``--shape`` is drawn.
Clouds are centred and scaled into the unit sphere (``pc_norm``) and cut to the profile's pre-training npoints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

PANELS = (("clean", "clean input", "tab:gray"), ("masked", "masked input (visible patches)", "tab:blue"))


def write_reconstruction_figure(result: dict[str, Tensor], path: str | Path, index: int = 0) -> Path:
    """Write sample ``index`` of ``result`` as a 3-panel PNG/PDF (by suffix) at ``path``; return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 4))
    panels = [*PANELS, ("reconstruction", "visible + sampled patches", "tab:red")]
    for i, (key, title, color) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        if key == "reconstruction":
            _scatter(ax, result["masked"][index], "tab:blue")
        _scatter(ax, result[key][index], color)
        if key == "reconstruction" and "centers" in result:
            _scatter(ax, result["centers"][index], "black", size=12)
        ax.set_title(title)
        ax.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _scatter(ax: Any, points: Tensor, color: str, size: float = 2.0) -> None:
    xyz = points.detach().cpu().numpy()
    ax.scatter(xyz[:, 0], xyz[:, 2], xyz[:, 1], s=size, c=color, depthshade=False)  # y is up in ShapeNet
    ax.set_box_aspect((1, 1, 1))
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-1, 1)


def _load_cloud(args: argparse.Namespace, npoints: int) -> Tensor:
    rng = np.random.default_rng(args.seed)
    if args.cloud:
        path = Path(args.cloud)
        xyz = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
        xyz = np.asarray(xyz, dtype=np.float32)[:, :3]
    else:
        from bench.data.synthetic.shapes import make_shape

        xyz, _ = make_shape(args.shape, rng, max(npoints, 2048))
    xyz = xyz - xyz.mean(axis=0)
    xyz = xyz / np.linalg.norm(xyz, axis=1).max()
    pick = rng.choice(len(xyz), npoints, replace=len(xyz) < npoints)
    return torch.from_numpy(np.ascontiguousarray(xyz[pick], dtype=np.float32)).unsqueeze(0)


def main(argv: list[str] | None = None) -> int:
    """CLI entry (see the module docstring)."""
    from omegaconf import OmegaConf

    from bench.checkpoints import read_state_dict
    from bench.config import resolve
    from methods.point_madi import PointMaDi

    parser = argparse.ArgumentParser(prog="python -m methods.blocks.recon_figure", description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True, help="Point-MaDi pre-training checkpoint (ours or the authors')")
    parser.add_argument("--out", required=True, help="figure path (.png, .pdf, ...)")
    parser.add_argument("--profile", default="paper", help="model size: the point_madi.yaml profile (paper, demo)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps per diffusion (0 = all 2000)")
    parser.add_argument("--shape", default="chair", help="synthetic shape family when no --cloud is given")
    parser.add_argument("--cloud", default=None, help="(N, 3) .npy or .txt point file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run = OmegaConf.to_object(resolve("scanobjectnn", "point_madi", profile=args.profile))
    model = PointMaDi(run.method).eval()
    model.load_state_dict(read_state_dict(args.ckpt), strict=True)
    torch.manual_seed(args.seed)
    xyz = _load_cloud(args, run.pretrain.npoints)
    result = model.reconstruct(xyz, steps=args.steps or None, generator=torch.Generator().manual_seed(args.seed))
    print(write_reconstruction_figure(result, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

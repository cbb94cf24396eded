"""Generated implicit shapes (:class:`bench.api.ShapeFields`) -> grids, meshes and surface points.

One path for every consumer: a method's ``generate`` (points for the generation suite) and the conditional
protocol (meshes for Chamfer / F-score) both call :func:`field_volumes` and :func:`extract_meshes`.

Conventions: the grid is :func:`bench.metrics.reconstruction.grid_points` (``resolution`` points per axis over
[-bound, bound], ``indexing='ij'``, so ``volume[i, j, k]`` is the value at (x_i, y_j, z_k)); marching cubes at the
fields' ``level`` (0 on occupancy logits, i.e. p = 0.5 as 3DShape2VecSet; the UDF level for distance fields);
queries in chunks of at most ``chunk`` points over all shapes (bounded memory: a 128^3 grid never goes to the
decoder at once). A shape whose level set is empty (an untrained or collapsed model) gets the ``points`` grid
points of largest logit (smallest distance) instead, and is counted in :attr:`SurfaceSamples.empty`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from bench.api import ShapeFields
from bench.errors import ConfigError
from bench.metrics.reconstruction import grid_points, marching_cubes, sample_surface

BACKENDS = ("pymcubes", "skimage")


@dataclass
class MeshConfig:
    """Field -> mesh -> points: the grid, its bound, the query chunk and the marching-cubes backend."""

    resolution: int = 64  # grid points per axis (3DShape2VecSet evaluates 129)
    bound: float = 1.05  # the grid spans [-bound, bound]^3: the [-1, 1] frame and a margin
    chunk: int = 65536  # query points per decoder call, over all shapes together
    backend: str = "pymcubes"  # pymcubes (3DShape2VecSet) | skimage

    def check(self, key: str = "mesh") -> None:
        if self.resolution < 2 or self.bound <= 0 or self.chunk < 1:
            raise ConfigError(f"{key}: resolution >= 2, bound > 0 and chunk >= 1 are needed, got {self}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"{key}.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


@dataclass
class SurfaceSamples:
    """``points`` (n, P, 3) float32 surface samples; ``empty``: shapes that had no level set (fallback points)."""

    points: np.ndarray
    empty: int = 0
    meshes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def query_chunked(fields: ShapeFields, points: torch.Tensor, chunk: int) -> np.ndarray:
    """(n, Q) float32 field values at ``points`` (n, Q, 3), at most ``chunk`` points per call over all n shapes."""
    per = max(1, chunk // max(points.shape[0], 1))
    out = np.empty(points.shape[:2], np.float32)
    for start in range(0, points.shape[1], per):
        out[:, start : start + per] = fields.query(points[:, start : start + per]).detach().float().cpu().numpy()
    return out


def field_volumes(fields: ShapeFields, resolution: int, bound: float, chunk: int) -> np.ndarray:
    """(n, R, R, R) float32 field values on the grid (:func:`query_chunked` over the grid, shared by the shapes)."""
    grid = torch.from_numpy(np.ascontiguousarray(grid_points(resolution, bound), dtype=np.float32))
    values = query_chunked(fields, grid.unsqueeze(0).expand(fields.n, -1, -1), chunk)
    return values.reshape(fields.n, resolution, resolution, resolution)


Mesh = tuple[np.ndarray, np.ndarray]  # (vertices (V, 3), faces (F, 3))


def extract_meshes(volumes: np.ndarray, level: float, bound: float, backend: str) -> list[Mesh]:
    """Marching cubes of each volume at ``level`` in world coordinates (empty arrays for an empty level set)."""
    return [marching_cubes(volume, level, bound, backend=backend) for volume in volumes]


def fallback_points(volume: np.ndarray, fields: ShapeFields, bound: float, count: int) -> np.ndarray:
    """The ``count`` grid points most inside (largest logit) or nearest the surface (smallest distance)."""
    values = volume.reshape(-1)
    order = np.argsort(-values if fields.kind == "occupancy" else values, kind="stable")
    grid = grid_points(volume.shape[0], bound)
    picks = order[np.arange(count) % len(order)]
    return grid[picks].astype(np.float32)


def fields_to_points(fields: ShapeFields, count: int, mesh: MeshConfig, seed: int) -> SurfaceSamples:
    """``count`` uniform samples on each shape's mesh (seed ``seed + i`` for shape i), or the fallback points."""
    volumes = field_volumes(fields, mesh.resolution, mesh.bound, mesh.chunk)
    meshes = extract_meshes(volumes, fields.level, mesh.bound, mesh.backend)
    clouds, empty = [], 0
    for i, (verts, faces) in enumerate(meshes):
        if len(faces) == 0:
            empty += 1
            clouds.append(fallback_points(volumes[i], fields, mesh.bound, count))
        else:
            clouds.append(np.asarray(sample_surface(verts, faces, count, seed + i), np.float32))
    return SurfaceSamples(np.stack(clouds), empty, meshes)

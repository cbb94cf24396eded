"""Simulated RGB-D scans for the ScanObjectNN stand-in: partial views, background clutter, perturbations.

Conventions: Y up. An object is first sampled complete (:func:`make_shape`, centred, max norm 1) and scaled to
stand on the floor; the camera looks at it from a random azimuth and an elevation of 10-45 degrees, and a
point is kept when its surface faces the camera (back-face culling: a rough visibility test, no occlusion by
other parts). objonly is re-centred on the visible object's bounding box and divided by its max norm; objbg (object
plus clutter) likewise over all its points, so every variant starts inside the unit sphere (hardest is then
perturbed).
"""

from __future__ import annotations

import math

import numpy as np

from bench.data.synthetic.shapes import make_shape
from bench.data.transforms import rotation_y


def visible_mask(xyz: np.ndarray, normal: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """Points whose normal faces the camera at ``eye``."""
    return ((eye - xyz) * normal).sum(1) > 0


def random_eye(rng: np.random.Generator, centre: np.ndarray, distance: float) -> np.ndarray:
    az, el = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(10, 45))
    return centre + distance * np.array([math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)])


def _pick(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n rows of ``points``: without replacement when there are enough, else with replacement plus tiny jitter."""
    if len(points) >= n:
        return points[rng.choice(len(points), n, replace=False)]
    extra = points[rng.choice(len(points), n - len(points))] + rng.normal(0, 0.003, (n - len(points), 3))
    return np.concatenate([points, extra])


def _clutter(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, eye: np.ndarray, n: int) -> np.ndarray:
    """n background points: a floor patch, and maybe a wall fragment behind and a neighbouring object's piece."""
    size = float((hi - lo).max())
    centre = (lo + hi) / 2
    pieces = []
    floor = rng.uniform(-0.9, 0.9, (3 * n, 2)) * size + centre[[0, 2]]
    pieces.append(np.stack([floor[:, 0], np.full(len(floor), lo[1]), floor[:, 1]], 1))
    away = centre - eye
    away[1] = 0
    away /= np.linalg.norm(away) + 1e-9
    if rng.random() < 0.6:  # wall behind the object, facing the camera
        side = np.array([-away[2], 0.0, away[0]])
        s, h = rng.uniform(-0.9, 0.9, 2 * n) * size, rng.uniform(0, 1.2, 2 * n) * (hi[1] - lo[1])
        base = centre + away * (size * rng.uniform(0.55, 0.9))
        pieces.append(base + s[:, None] * side + (h + lo[1] - centre[1])[:, None] * np.array([0, 1.0, 0]))
    if rng.random() < 0.5:  # a neighbouring object, of which the crop keeps a slice
        other, _ = make_shape("box" if rng.random() < 0.5 else "table", rng, n)
        offset = np.cross(away, [0, 1.0, 0]) * size * rng.choice([-1, 1]) * rng.uniform(0.6, 0.9)
        pieces.append(other * size * 0.5 + centre + offset)
    cloud = np.concatenate(pieces)
    keep = (np.abs(cloud - centre) <= size * 0.75).all(1)  # the crop around the object
    return _pick(cloud[keep] if keep.any() else cloud, n, rng)


def _unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre on the bounding-box centre, divide by the max norm."""
    centred = points - (points.min(0) + points.max(0)) / 2
    return centred / float(np.linalg.norm(centred, axis=1).max())


def scan_object(family: str, rng: np.random.Generator, n: int = 2048) -> dict[str, np.ndarray]:
    """One object scanned once: {"objonly": (n,3), "objbg": (n,3), "hardest": (n,3)} float32, same view.

    objonly = visible object points; objbg = the same view with 20-30% of the points replaced by background
    clutter; hardest = objbg rotated about Y by U[0, 2π), scaled per axis U[0.85, 1.15], translated
    U[-0.2, 0.2]^3 and jittered (sigma 0.01, clipped at 0.03): a PB_T50_RS-like perturbation.
    """
    xyz, normal = make_shape(family, rng, 3 * n, common=True)
    xyz = xyz - [0.0, xyz[:, 1].min(), 0.0]
    lo, hi = xyz.min(0), xyz.max(0)
    eye = random_eye(rng, (lo + hi) / 2, rng.uniform(2.5, 4.0))
    visible = xyz[visible_mask(xyz, normal, eye)]
    visible = visible if len(visible) >= 64 else xyz
    obj = _pick(visible, n, rng)
    n_bg = int(round(n * rng.uniform(0.2, 0.3)))
    bg = np.concatenate([obj[: n - n_bg], _clutter(rng, lo, hi, eye, n_bg)])
    vlo, vhi = obj.min(0), obj.max(0)
    centre = (vlo + vhi) / 2
    scale = float(np.linalg.norm(obj - centre, axis=1).max())
    obj, bg = (obj - centre) / scale, (bg - centre) / scale
    bg = _unit_sphere(bg)  # the whole scan (object + clutter) fits the unit sphere, as the objects alone do
    hard = bg @ rotation_y(rng.uniform(0, 2 * math.pi)) * rng.uniform(0.85, 1.15, 3) + rng.uniform(-0.2, 0.2, 3)
    hard = hard + np.clip(rng.normal(0, 0.01, hard.shape), -0.03, 0.03)
    out = {"objonly": obj, "objbg": bg[rng.permutation(n)], "hardest": hard[rng.permutation(n)]}
    return {k: v.astype(np.float32) for k, v in out.items()}

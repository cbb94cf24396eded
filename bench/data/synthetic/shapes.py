"""Procedural shapes for the synthetic stand-in: parametric surfaces sampled uniformly by area, with normals.

Conventions: Y is up, objects stand on the floor y = 0 before :func:`make_shape` centres them. Every
surface samples points uniformly by area (triangles by area then barycentric; surfaces of revolution by
inverse-CDF or rejection on the area element), so density does not betray the parametrisation. Families
compose primitives with per-instance random proportions (a table is a top plus legs, a lamp a base, a stem
and a shade, ...) so classes are distinguishable but overlap in parts and sizes.

Solids (the exact occupancy of :mod:`.occupancy`): every surface has ``contains(points) -> bool`` (local frame,
closed set: points on the boundary count as inside) and ``bounds() -> (lo, hi)`` (its local bounding box), and a
:class:`Part` maps them to the object frame. An open surface bounds the solid its closed version would: an
``open_top`` box the full box (the convex hull of its corners), an uncapped frustum the solid frustum, a half
ellipsoid the half solid, a partial torus the tube over its ring arc. Their samples then miss the dropped faces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Cloud = tuple[np.ndarray, np.ndarray]  # (xyz (n, 3), normal (n, 3)), float32


class Mesh:
    """Triangles (T, 3, 3); normals point away from ``inside`` (fine for the convex pieces used here)."""

    def __init__(self, tris: np.ndarray, inside: np.ndarray | None = None) -> None:
        self.tris = np.asarray(tris, dtype=np.float64)
        cross = np.cross(self.tris[:, 1] - self.tris[:, 0], self.tris[:, 2] - self.tris[:, 0])
        self.areas = np.linalg.norm(cross, axis=1) / 2
        normals = cross / np.maximum(2 * self.areas[:, None], 1e-12)
        centre = self.tris.reshape(-1, 3).mean(0) if inside is None else np.asarray(inside, dtype=np.float64)
        flip = ((self.tris.mean(1) - centre) * normals).sum(1) < 0
        self.normals = np.where(flip[:, None], -normals, normals)
        self.area = float(self.areas.sum())

    def sample(self, n: int, rng: np.random.Generator) -> Cloud:
        t = rng.choice(len(self.tris), size=n, p=self.areas / self.area)
        u, v = rng.random((2, n))
        swap = u + v > 1
        u, v = np.where(swap, 1 - u, u), np.where(swap, 1 - v, v)
        a, b, c = self.tris[t, 0], self.tris[t, 1], self.tris[t, 2]
        return a + u[:, None] * (b - a) + v[:, None] * (c - a), self.normals[t]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) -> (n,) bool: inside the convex hull of the triangle corners, boundary included (exact for the
        convex pieces used here; an open box counts as the closed one)."""
        if not hasattr(self, "_planes"):
            from scipy.spatial import ConvexHull  # here, not at import: loading the plug-ins stays free of scipy

            self._planes = ConvexHull(self.tris.reshape(-1, 3)).equations  # rows (n_x, n_y, n_z, d): n.p + d <= 0
        pts = np.asarray(points, dtype=np.float64)
        return (pts @ self._planes[:, :3].T + self._planes[:, 3] <= 1e-12).all(axis=1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        corners = self.tris.reshape(-1, 3)
        return corners.min(0), corners.max(0)


def box_mesh(sx: float, sy: float, sz: float, open_top: bool = False) -> Mesh:
    """Axis-aligned box of size (sx, sy, sz) centred at the origin; ``open_top`` drops the +Y face."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * [sx / 2, sy / 2, sz / 2]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]  # -x +x -y +y -z +z
    if open_top:
        faces.pop(3)
    tris = [corners[[f[0], f[1], f[2]]] for f in faces] + [corners[[f[0], f[2], f[3]]] for f in faces]
    return Mesh(np.stack(tris), inside=np.zeros(3))


class Frustum:
    """Surface of revolution about Y from radius r0 at y = -h/2 to r1 at y = +h/2, with optional caps."""

    def __init__(self, r0: float, r1: float, h: float, bottom: bool = True, top: bool = True) -> None:
        self.r0, self.r1, self.h = r0, r1, h
        slant = math.hypot(h, r0 - r1)
        self.parts = [math.pi * (r0 + r1) * slant, math.pi * r0**2 * bottom, math.pi * r1**2 * top]
        self.area = float(sum(self.parts))

    def sample(self, n: int, rng: np.random.Generator) -> Cloud:
        k_side, k_bot, k_top = rng.multinomial(n, np.array(self.parts) / self.area)
        r0, r1, h = self.r0, self.r1, self.h
        s = rng.random(k_side)  # radius along the slant is linear, area density ~ r(t): inverse CDF
        t = s if abs(r1 - r0) < 1e-9 else (np.sqrt(r0**2 + s * (r1**2 - r0**2)) - r0) / (r1 - r0)
        r, phi = r0 + (r1 - r0) * t, rng.uniform(0, 2 * math.pi, k_side)
        side = np.stack([r * np.cos(phi), -h / 2 + h * t, r * np.sin(phi)], 1)
        side_n = np.stack([h * np.cos(phi), np.full(k_side, r0 - r1), h * np.sin(phi)], 1) / math.hypot(h, r0 - r1)
        clouds = [(side, side_n), _disk(k_bot, r0, -h / 2, -1.0, rng), _disk(k_top, r1, h / 2, 1.0, rng)]
        return np.concatenate([c[0] for c in clouds]), np.concatenate([c[1] for c in clouds])

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) -> (n,) bool: |y| <= h/2 and radius about Y <= the linear radius at y (caps or not)."""
        pts = np.asarray(points, dtype=np.float64)
        t = pts[:, 1] / self.h + 0.5
        radius = self.r0 + (self.r1 - self.r0) * t
        return (np.abs(pts[:, 1]) <= self.h / 2) & (np.hypot(pts[:, 0], pts[:, 2]) <= radius)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.r0, self.r1)
        return np.array([-r, -self.h / 2, -r]), np.array([r, self.h / 2, r])


def _disk(n: int, r: float, y: float, ny: float, rng: np.random.Generator) -> Cloud:
    rad, phi = r * np.sqrt(rng.random(n)), rng.uniform(0, 2 * math.pi, n)
    pts = np.stack([rad * np.cos(phi), np.full(n, y), rad * np.sin(phi)], 1)
    return pts, np.tile([0.0, ny, 0.0], (n, 1))


class Ellipsoid:
    """Ellipsoid with semi-axes (a, b, c); ``half`` = +1 / -1 keeps the upper / lower half (about Y)."""

    def __init__(self, a: float, b: float, c: float, half: int = 0) -> None:
        self.axes = np.array([a, b, c])
        p = 1.6075  # Knud Thomsen's approximation of the surface area
        mean = ((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3
        self.area = 4 * math.pi * mean ** (1 / p) / (2 if half else 1)
        self.half = half

    def sample(self, n: int, rng: np.random.Generator) -> Cloud:
        out: list[np.ndarray] = []
        inv = 1 / self.axes
        while sum(len(o) for o in out) < n:  # rejection on the area element |D^-1 u| of the unit sphere map
            u = rng.normal(size=(2 * n + 8, 3))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            w = np.linalg.norm(u * inv, axis=1) / inv.max()
            out.append(u[rng.random(len(u)) < w])
        u = np.concatenate(out)[:n]
        if self.half:
            u[:, 1] = self.half * np.abs(u[:, 1])
        normal = u * inv
        return u * self.axes, normal / np.linalg.norm(normal, axis=1, keepdims=True)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) -> (n,) bool: sum (p / axes)^2 <= 1, and half * y >= 0 for a half ellipsoid."""
        pts = np.asarray(points, dtype=np.float64)
        inside = ((pts / self.axes) ** 2).sum(axis=1) <= 1
        return inside & (self.half * pts[:, 1] >= 0) if self.half else inside

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = -self.axes.copy(), self.axes.copy()
        if self.half:
            (lo if self.half > 0 else hi)[1] = 0.0
        return lo, hi


class Torus:
    """Torus about Y with ring radius R and tube radius r, ring angle limited to [start, start + arc)."""

    def __init__(self, big: float, small: float, arc: float = 2 * math.pi, start: float = 0.0) -> None:
        self.big, self.small, self.arc, self.start = big, small, arc, start
        self.area = float(arc * small * 2 * math.pi * big)

    def sample(self, n: int, rng: np.random.Generator) -> Cloud:
        thetas: list[np.ndarray] = []
        while sum(len(t) for t in thetas) < n:  # tube angle density ~ (R + r cos theta)
            th = rng.uniform(0, 2 * math.pi, 2 * n + 8)
            keep = rng.random(len(th)) * (self.big + self.small) < self.big + self.small * np.cos(th)
            thetas.append(th[keep])
        th, phi = np.concatenate(thetas)[:n], self.start + rng.uniform(0, self.arc, n)
        normal = np.stack([np.cos(th) * np.cos(phi), np.sin(th), np.cos(th) * np.sin(phi)], 1)
        ring = np.stack([self.big * np.cos(phi), np.zeros(n), self.big * np.sin(phi)], 1)
        return ring + self.small * normal, normal

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) -> (n,) bool: within ``small`` of the ring circle, at a ring angle atan2(z, x) in the arc."""
        pts = np.asarray(points, dtype=np.float64)
        radial = np.hypot(pts[:, 0], pts[:, 2])
        inside = (radial - self.big) ** 2 + pts[:, 1] ** 2 <= self.small**2
        if self.arc >= 2 * math.pi:
            return inside
        angle = np.mod(np.arctan2(pts[:, 2], pts[:, 0]) - self.start, 2 * math.pi)
        return inside & (angle <= self.arc)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The full torus's box (a partial torus gets this box too: a bound, not tight)."""
        r = self.big + self.small
        return np.array([-r, -self.small, -r]), np.array([r, self.small, r])


Surface = Mesh | Frustum | Ellipsoid | Torus
#: rotations (row-vector convention) taking the local Y axis of a surface of revolution to x / y / z
_AXES = {
    "y": np.eye(3),
    "x": np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    "z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
}


@dataclass
class Part:
    """A surface placed in the object: local points are mapped by ``p @ rot + at`` (row vectors)."""

    surface: Surface
    at: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) object-frame points -> (n,) bool, inside the surface's solid: local = (p - at) @ rot^T."""
        local = (np.asarray(points, dtype=np.float64) - np.asarray(self.at)) @ np.asarray(self.rot).T
        return self.surface.contains(local)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Object-frame bounding box of the local box's 8 corners mapped (exact for the axis rotations used)."""
        lo, hi = self.surface.bounds()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        placed = corners @ np.asarray(self.rot) + np.asarray(self.at)
        return placed.min(0), placed.max(0)


def box(sx: float, sy: float, sz: float, at: tuple[float, float, float], open_top: bool = False) -> Part:
    return Part(box_mesh(sx, sy, sz, open_top), at)


def cyl(r0: float, h: float, at: tuple[float, float, float], r1: float | None = None, axis: str = "y",
        bottom: bool = True, top: bool = True) -> Part:  # fmt: skip
    """Cylinder (or frustum when ``r1`` is given) with its axis along ``axis``, centred at ``at``."""
    return Part(Frustum(r0, r0 if r1 is None else r1, h, bottom, top), at, _AXES[axis])


def ellipsoid(a: float, b: float, c: float, at: tuple[float, float, float], half: int = 0) -> Part:
    return Part(Ellipsoid(a, b, c, half), at)


def torus(big: float, small: float, at: tuple[float, float, float], arc: float, start: float = 0.0,
          axis: str = "y") -> Part:  # fmt: skip
    """Torus arc; with ``axis="z"`` the ring lies in the XY plane at points (R cos a, -R sin a, 0)."""
    return Part(Torus(big, small, arc, start), at, _AXES[axis])


def sample_parts(parts: list[Part], n: int, rng: np.random.Generator) -> Cloud:
    """n points over all parts, split by area (multinomial), each part sampled uniformly, then shuffled."""
    areas = np.array([p.surface.area for p in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    xyz, nrm = [], []
    for part, k in zip(parts, counts, strict=True):
        if k:
            p, q = part.surface.sample(int(k), rng)
            xyz.append(p @ part.rot + np.asarray(part.at))
            nrm.append(q @ part.rot)
    perm = rng.permutation(n)
    return np.concatenate(xyz)[perm].astype(np.float32), np.concatenate(nrm)[perm].astype(np.float32)


#: per-axis bounding-box extents :func:`common_box` draws (uniform, then the max-norm scaling): one range for
#: every family, so the box's aspect says nothing about the class
COMMON_EXTENTS = (0.45, 1.0)


def common_box(xyz: np.ndarray, normal: np.ndarray, rng: np.random.Generator) -> Cloud:
    """The class-independent normalisation: scale each axis so the bounding box gets extents drawn from
    U[COMMON_EXTENTS]^3 whatever the family (normals by the inverse scale, renormalised). Proportions between an
    object's parts survive; the object's overall aspect, height and size, which any random feature reads off, do
    not tell the classes apart."""
    extents = np.maximum(np.ptp(xyz, axis=0), 1e-6)
    scale = rng.uniform(*COMMON_EXTENTS, 3) / extents
    normal = normal / scale
    return (xyz * scale).astype(np.float32), (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32)


def make_shape(family: str, rng: np.random.Generator, n: int, common: bool = False) -> Cloud:
    """One random instance of ``family``: n points + unit normals, centred on its bounding box, max norm 1.

    ``common``: first apply :func:`common_box` (the classification and pre-training stand-ins do; the generation,
    occupancy, part and room stand-ins keep the families' own proportions)."""
    from bench.data.synthetic.families import FAMILIES

    xyz, normal = sample_parts(FAMILIES[family](rng), n, rng)
    if common:
        xyz, normal = common_box(xyz, normal, rng)
    xyz -= (xyz.max(0) + xyz.min(0)) / 2
    xyz /= np.linalg.norm(xyz, axis=1).max()
    return xyz.astype(np.float32), normal


FamilyFn = Callable[[np.random.Generator], list[Part]]

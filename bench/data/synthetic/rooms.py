"""S3DIS-style synthetic rooms in the preprocessed per-room format the S3DIS loader reads
(``stanford_indoor3d/Area_<a>_<room>.npy``, (N, 7) ``x y z r g b label``, z up, minimum corner at 0; see
:mod:`bench.data.s3dis`).

A room is a box (floor, ceiling, four walls) with furniture placed on the floor and against the walls; points are
sampled uniformly over every surface (one density per room), jittered by 5 mm, and coloured by class with noise.
Labels are learnable from xyz alone: each class has its own height band or shape (tables at 0.75 m, chairs with
seats at 0.45 m and backs, sofas, 2 m bookcases with shelves, boards 2 cm in front of a wall, windows and doors
recessed into the walls with the wall cut away behind them, a beam under the ceiling, a column in a corner,
small clutter boxes). Every room of a size holds the same number of points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.s3dis import CLASS_NAMES, FOLDER
from bench.data.synthetic.writers import standin_writer
from bench.io import atomic_write

L = {name: i for i, name in enumerate(CLASS_NAMES)}
#: mean rgb per class (0..255)
COLOURS = np.array([
    [230, 230, 225], [120, 100, 80], [200, 195, 185], [170, 170, 160], [185, 180, 170], [150, 190, 230],
    [140, 90, 50], [160, 120, 70], [60, 60, 70], [120, 40, 40], [110, 80, 50], [245, 245, 250], [90, 140, 90],
], dtype=np.float64)  # fmt: skip
ROOM_TYPES = ("office", "conferenceRoom", "hallway", "storage", "lobby", "pantry", "WC", "copyRoom")


@dataclass(frozen=True)
class RoomsSize:
    """Rooms per area (Areas 1..6), points per room and the range of the room's side lengths in metres."""

    rooms_per_area: tuple[int, int, int, int, int, int]
    points: int
    side: tuple[float, float]


ROOM_SIZES = {
    "tiny": RoomsSize((1, 1, 1, 1, 2, 1), 5000, (2.2, 3.0)),
    "demo": RoomsSize((1, 1, 1, 1, 2, 1), 8000, (3.0, 4.0)),
}

# a rectangle: (origin (3,), edge u (3,), edge v (3,), label); u and v orthogonal
Rect = tuple[np.ndarray, np.ndarray, np.ndarray, int]


def _rect(origin, u, v, label: int) -> Rect:
    return np.asarray(origin, float), np.asarray(u, float), np.asarray(v, float), label


def box(lo, hi, label: int, bottom: bool = False) -> list[Rect]:
    """The faces of an axis-aligned box (no bottom face unless asked: it rests on something)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    dx, dy, dz = np.diag(hi - lo)
    faces = [_rect(lo + dz * 1, dx, dy, label), _rect(lo, dx, dz, label), _rect(lo + dy, dx, dz, label),
             _rect(lo, dy, dz, label), _rect(lo + dx, dy, dz, label)]  # fmt: skip
    return faces + ([_rect(lo, dx, dy, label)] if bottom else [])


def _wall_item(rng, wall: int, w: float, d: float, width: float, z0: float, z1: float, offset: float):
    """(wall, start, end along the wall, plane coordinate, z0, z1) of a ``width`` wide item on wall ``wall``
    (0: y=0, 1: y=d, 2: x=0, 3: x=w), ``offset`` metres from the wall plane (positive: into the room)."""
    length = w if wall < 2 else d
    start = rng.uniform(0.2, max(length - width - 0.2, 0.21))
    plane = {0: offset, 1: d - offset, 2: offset, 3: w - offset}[wall]
    return wall, start, start + width, plane, z0, z1


def _wall_rect(item, label: int) -> Rect:
    wall, a0, a1, plane, z0, z1 = item
    if wall < 2:
        return _rect([a0, plane, z0], [a1 - a0, 0, 0], [0, 0, z1 - z0], label)
    return _rect([plane, a0, z0], [0, a1 - a0, 0], [0, 0, z1 - z0], label)


def furniture(rng: np.random.Generator, w: float, d: float, h: float) -> tuple[list[Rect], list[tuple]]:
    """Surfaces of the objects and the wall openings (items whose wall area is cut away)."""
    rects: list[Rect] = []
    openings = [_wall_item(rng, 0, w, d, 0.9, 0.0, 2.1, -0.06)]  # door, recessed
    rects.append(_wall_rect(openings[0], L["door"]))
    if rng.random() < 0.8:
        openings.append(_wall_item(rng, 1, w, d, min(1.4, w - 0.5), 0.9, 2.1, -0.12))  # window, recessed
        rects.append(_wall_rect(openings[-1], L["window"]))
    if rng.random() < 0.7:
        openings.append(_wall_item(rng, 2, w, d, min(1.8, d - 0.5), 0.9, 1.9, 0.02))  # board, on the wall
        rects.append(_wall_rect(openings[-1], L["board"]))
    if rng.random() < 0.6:
        y0 = rng.uniform(0.3, d - 1.2)
        rects += box([w - 0.35, y0, 0.0], [w, y0 + 0.9, 1.9], L["bookcase"])
        rects += [_rect([w - 0.35, y0, z], [0.35, 0, 0], [0, 0.9, 0], L["bookcase"]) for z in (0.45, 0.9, 1.35)]
    if rng.random() < 0.5:
        rects += box([0.0, d - 0.4, 0.0], [0.4, d, h], L["column"])
    if rng.random() < 0.5:
        y0 = rng.uniform(0.5, d - 0.8)
        rects += box([0.0, y0, h - 0.35], [w, y0 + 0.3, h], L["beam"])
    tx, ty = rng.uniform(0.5, max(w - 1.5, 0.55)), rng.uniform(0.8, max(d - 1.4, 0.85))
    rects += box([tx, ty, 0.72], [tx + 1.2, ty + 0.7, 0.76], L["table"], bottom=True)
    for lx, ly in ((tx, ty), (tx + 1.15, ty), (tx, ty + 0.65), (tx + 1.15, ty + 0.65)):
        rects += box([lx, ly, 0.0], [lx + 0.05, ly + 0.05, 0.72], L["table"])
    for k in range(int(rng.integers(2, 5))):
        rects += chair(tx + 0.1 + 0.55 * (k % 2), ty - 0.55 if k < 2 else ty + 0.8, back_low=k < 2)
    if w > 2.9 and rng.random() < 0.5:
        sx = rng.uniform(0.5, w - 2.4)
        rects += box([sx, d - 0.85, 0.0], [sx + 1.8, d - 0.05, 0.42], L["sofa"])
        rects += box([sx, d - 0.25, 0.42], [sx + 1.8, d - 0.05, 0.85], L["sofa"])
    for _ in range(int(rng.integers(2, 5))):
        s = rng.uniform(0.1, 0.3, size=3)
        on_table = rng.random() < 0.5
        x0, y0 = (tx + rng.uniform(0, 0.9), ty + rng.uniform(0, 0.4)) if on_table else rng.uniform(0.1, [w - 0.4, 0.6])
        z0 = 0.76 if on_table else 0.0
        rects += box([x0, y0, z0], [x0 + s[0], y0 + s[1], z0 + s[2]], L["clutter"])
    return rects, openings


def chair(x: float, y: float, back_low: bool) -> list[Rect]:
    """Seat at 0.45 m, four legs, a back along the side away from the table."""
    rects = box([x, y, 0.42], [x + 0.45, y + 0.45, 0.46], L["chair"], bottom=True)
    for lx, ly in ((x, y), (x + 0.41, y), (x, y + 0.41), (x + 0.41, y + 0.41)):
        rects += box([lx, ly, 0.0], [lx + 0.04, ly + 0.04, 0.42], L["chair"])
    by = y if back_low else y + 0.41
    return rects + box([x, by, 0.46], [x + 0.45, by + 0.04, 0.9], L["chair"])


def shell(w: float, d: float, h: float) -> list[Rect]:
    """Floor, ceiling and the four walls."""
    walls = [_rect([0, y, 0], [w, 0, 0], [0, 0, h], L["wall"]) for y in (0, d)]
    walls += [_rect([x, 0, 0], [0, d, 0], [0, 0, h], L["wall"]) for x in (0, w)]
    return [_rect([0, 0, z], [w, 0, 0], [0, d, 0], L["floor" if z == 0 else "ceiling"]) for z in (0, h)] + walls


def _in_opening(xyz: np.ndarray, label: np.ndarray, openings: list[tuple], w: float, d: float) -> np.ndarray:
    """Wall points that lie behind a door, window or board (cut away, as a scanner would not see them)."""
    cut = np.zeros(len(xyz), bool)
    for wall, a0, a1, _, z0, z1 in openings:
        on_wall = np.abs(xyz[:, wall // 2 ^ 1] - (0.0, d, 0.0, w)[wall]) < 1e-6
        a = xyz[:, 0] if wall < 2 else xyz[:, 1]
        cut |= (label == L["wall"]) & on_wall & (a > a0) & (a < a1) & (xyz[:, 2] > z0) & (xyz[:, 2] < z1)
    return cut


def sample_rects(rects: list[Rect], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points spread over the rectangles in proportion to their areas (multinomial counts)."""
    areas = np.array([np.linalg.norm(u) * np.linalg.norm(v) for _, u, v, _ in rects])
    counts = rng.multinomial(n, areas / areas.sum())
    xyz = np.concatenate([o + rng.random((c, 1)) * u + rng.random((c, 1)) * v
                          for (o, u, v, _), c in zip(rects, counts, strict=True)])  # fmt: skip
    label = np.repeat([r[3] for r in rects], counts)
    return xyz, label


def make_room(rng: np.random.Generator, points: int, side: tuple[float, float]) -> np.ndarray:
    """One room as the preprocessed (points, 7) float64 array ``x y z r g b label``."""
    w, d = rng.uniform(*side, size=2)
    h = rng.uniform(2.6, 3.1)
    rects, openings = furniture(rng, w, d, h)
    rects = shell(w, d, h) + rects
    xyz, label = sample_rects(rects, int(points * 1.3), rng)  # over-draw, then cut the openings and trim
    keep = ~_in_opening(xyz, label, openings, w, d)
    order = rng.permutation(np.flatnonzero(keep))[:points]
    xyz, label = xyz[order] + rng.normal(0, 0.005, (len(order), 3)), label[order]
    rgb = np.clip(np.round(COLOURS[label] + rng.normal(0, 12, (len(label), 3))), 0, 255)
    xyz -= xyz.min(axis=0)
    return np.concatenate([xyz, rgb, label[:, None].astype(np.float64)], axis=1)


@standin_writer("s3dis", stream=4)
def write_rooms(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """Write ``<root>/stanford_indoor3d/Area_<a>_<type>_<k>.npy`` for every room of ``size``; return the paths."""
    spec = ROOM_SIZES[size]
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for area, count in enumerate(spec.rooms_per_area, start=1):
        for k in range(count):
            room = make_room(rng, spec.points, spec.side)
            path = folder / f"Area_{area}_{ROOM_TYPES[k % len(ROOM_TYPES)]}_{k // len(ROOM_TYPES) + 1}.npy"
            atomic_write(path, lambda handle, r=room: np.save(handle, r))
            written.append(path)
    return written

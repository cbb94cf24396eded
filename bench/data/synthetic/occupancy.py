"""ShapeNet occupancy stand-in: procedural shapes with EXACT occupancy, written in the Occupancy Networks layout
that :mod:`bench.data.shapenet_occ` reads (``ShapeNet/<synset>/<model>/{points,pointcloud,points_near,depth}.npz``
and ``ShapeNet/<synset>/{train,val,test}.lst``).

- Categories (:data:`OCC_CATEGORIES`): airplane, car, chair and table, whose families (:mod:`.families`) are made
  only of closed solid primitives (closed boxes, capped cylinders, full ellipsoids), so the union of the parts'
  solids is a watertight solid. Families with open surfaces (bins, bowls, bathtubs, mugs, ... : open-top boxes,
  uncapped frustums, half ellipsoids, partial tori) are not used: their surface does not bound the solid
  ``contains`` gives them (:mod:`.shapes`).
- Sizes (:data:`OCC_SIZES`): shapes per category (train, val, test) and points per file; tiny (6, 2, 3), demo
  (48, 8, 16). ONet's files hold 100k points each.
- Occupancy: inside iff inside the solid of at least one part (``Part.contains``: closed sets, local frame
  ``(p - at) @ rot^T``). It is evaluated on the float16 coordinates as stored, mapped back to the family frame in
  float64, so every stored label is exact for its stored point.
- Normalisation: ONet's ``loc`` = the centre of the exact bounding box of the union (from the primitives, not from a
  sample), ``scale`` = its longest side; stored coordinates are ``(p - loc) / scale`` (bbox centred, longest side
  1). This equals :func:`.shapes.make_shape`'s normalisation (centre the bbox, divide by the max norm) followed by
  ONet's: centring and uniform scalings compose, only the final longest side matters.
- ``pointcloud.npz``: surface points uniform by area on the union's boundary (:func:`sample_union_surface`) with
  their outward unit normals. ``points.npz``: uniform volume points in [-0.55, 0.55]^3 (ONet ``points_padding``
  0.1). ``points_near.npz``: surface points + N(0, 0.01^2) per coordinate (3DShape2VecSet's near samples, ONet
  units). Points float16, occupancies ``np.packbits``, ``loc`` float32 (3,), ``scale`` float32 ().
- ``depth.npz``: ``depth`` (V, H, W) float16 from :func:`bench.data.render.depth_images` (V = ``views`` fixed views
  about y, densify 3) of ``render`` surface points in the data set frame (ONet x 2, :data:`FRAME_SCALE`) times
  :data:`RENDER_SCALE` = 1/sqrt(2), so that every point of the [-1, 1]^3 frame stays in the view cube at every
  angle; also ``angles`` (V,) float32 radians (2 pi v / V) and ``render_scale``.
- Model ids are 32-hex (``rng.bytes(16).hex()``); list files hold the ids in drawing order. Every file is written
  atomically (:mod:`bench.io`), npz files uncompressed with fixed member dates; the writer draws from its own
  stream 8, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data import shapenet_occ
from bench.data.render import depth_images
from bench.data.synthetic.families import FAMILIES
from bench.data.synthetic.shapes import Part
from bench.data.synthetic.writers import standin_writer
from bench.io import atomic_write_bytes, atomic_write_text

#: stand-in category -> (synset, family of :data:`.families.FAMILIES`)
OCC_CATEGORIES: dict[str, tuple[str, str]] = {
    "airplane": ("02691156", "airplane"), "car": ("02958343", "car"), "chair": ("03001627", "chair"),
    "table": ("04379243", "table"),
}  # fmt: skip
#: half side of ONet's volume-point cube (unit cube padded by 0.1)
VOLUME_BOUND = 0.55
#: std of the near-surface offsets, ONet units (3DShape2VecSet)
NEAR_SIGMA = 0.01
#: depth renders: the data set frame scaled by this (|x|, |z| <= 1 then stays within radius 1 at every view)
RENDER_SCALE = 1 / math.sqrt(2)
#: family-frame offset (metres) along the normal that decides whether a sampled point lies on the union boundary
SURFACE_EPS = 1e-5


@dataclass(frozen=True)
class OccSize:
    """Shapes per category (train, val, test) and the point counts of each file."""

    counts: tuple[int, int, int]
    surface: int  # pointcloud.npz points
    volume: int  # points.npz points
    near: int  # points_near.npz points
    render: int  # surface points splatted into the depth images
    views: int  # depth images per shape
    image: int  # depth image side (px)


OCC_SIZES: dict[str, OccSize] = {
    "tiny": OccSize((6, 2, 3), surface=512, volume=1024, near=512, render=4096, views=3, image=64),
    "demo": OccSize((48, 8, 16), surface=4096, volume=8192, near=4096, render=12288, views=3, image=64),
}


def union_contains(parts: list[Part], points: np.ndarray) -> np.ndarray:
    """(n, 3) family-frame points -> (n,) bool: inside (or on) the solid of at least one part."""
    pts = np.asarray(points, dtype=np.float64)
    inside = np.zeros(len(pts), dtype=bool)
    for part in parts:
        inside |= part.contains(pts)
    return inside


def union_bounds(parts: list[Part]) -> tuple[np.ndarray, np.ndarray]:
    """The exact bounding box (lo, hi) of the union of the parts (from the primitives' own boxes)."""
    boxes = [part.bounds() for part in parts]
    return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)


def _boundary_mask(parts: list[Part], owner: np.ndarray, xyz: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Which samples of part ``owner`` lie on the union's boundary.

    Kept iff ``p + eps n`` (just outside, along the outward normal) is in no other part's solid, which drops the
    points inside another part and the contact faces (a leg's top under a seat); and, for a face shared with an
    EARLIER part in the same orientation (``p - eps n`` inside it, ``p + eps n`` not), only the earlier part's
    sample is kept, so coplanar overlapping faces are not sampled twice."""
    outside, inside = xyz + SURFACE_EPS * normal, xyz - SURFACE_EPS * normal
    keep = np.ones(len(xyz), dtype=bool)
    for j, part in enumerate(parts):
        others = owner != j
        keep &= ~(others & part.contains(outside))
        keep &= ~((owner > j) & part.contains(inside))
    return keep


def sample_union_surface(parts: list[Part], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform by area on the boundary of the union of the parts' solids, with outward unit normals
    (float64, family frame): draw by area over the parts (multinomial), keep the boundary points
    (:func:`_boundary_mask`), repeat until n are kept, shuffle."""
    areas = np.array([part.surface.area for part in parts])
    xyz_kept, normal_kept, total = [], [], 0
    while total < n:
        counts = rng.multinomial(2 * (n - total) + 16, areas / areas.sum())
        xyz, normal, owner = [], [], []
        for j, (part, k) in enumerate(zip(parts, counts, strict=True)):
            if k:
                p, q = part.surface.sample(int(k), rng)
                xyz.append(p @ part.rot + np.asarray(part.at))
                normal.append(q @ part.rot)
                owner.append(np.full(int(k), j))
        xyz_all, normal_all, owner_all = np.concatenate(xyz), np.concatenate(normal), np.concatenate(owner)
        keep = _boundary_mask(parts, owner_all, xyz_all, normal_all)
        xyz_kept.append(xyz_all[keep])
        normal_kept.append(normal_all[keep])
        total += int(keep.sum())
    order = rng.permutation(total)[:n]
    return np.concatenate(xyz_kept)[order], np.concatenate(normal_kept)[order]


@dataclass
class OccupancyShape:
    """One shape: its parts (family frame) and ONet's normalisation ``onet = (family - loc) / scale``."""

    parts: list[Part]
    loc: np.ndarray
    scale: float

    @classmethod
    def of(cls, parts: list[Part]) -> OccupancyShape:
        lo, hi = union_bounds(parts)
        return cls(parts, (lo + hi) / 2, float((hi - lo).max()))

    def to_onet(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=np.float64) - self.loc) / self.scale

    def occupancy(self, onet_points: np.ndarray) -> np.ndarray:
        """(n, 3) ONet-frame points -> (n,) bool exact occupancy (family frame p = q * scale + loc)."""
        return union_contains(self.parts, np.asarray(onet_points, dtype=np.float64) * self.scale + self.loc)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    """An uncompressed ``.npz`` (what ``np.savez`` writes, ``np.load`` reads) with every member dated 1980-01-01,
    so the bytes depend on the arrays only (``np.savez`` stamps the current time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buffer.getvalue()


def _query_file(shape: OccupancyShape, points: np.ndarray) -> bytes:
    """points.npz / points_near.npz bytes: float16 points, packbits occupancy of the stored (rounded) points."""
    stored = points.astype(np.float16)
    occupancy = shape.occupancy(stored.astype(np.float64))
    return _npz_bytes(points=stored, occupancies=np.packbits(occupancy), loc=shape.loc.astype(np.float32),
                      scale=np.float32(shape.scale))  # fmt: skip


def shape_files(shape: OccupancyShape, spec: OccSize, rng: np.random.Generator) -> dict[str, bytes]:
    """The four files of one shape (file name -> npz bytes), drawn from ``rng`` in a fixed order."""
    surface, normal = sample_union_surface(shape.parts, spec.surface, rng)
    surface = shape.to_onet(surface)
    loc, scale = shape.loc.astype(np.float32), np.float32(shape.scale)
    volume = rng.uniform(-VOLUME_BOUND, VOLUME_BOUND, (spec.volume, 3))
    near_index = rng.choice(spec.surface, size=spec.near, replace=spec.near > spec.surface)
    near = surface[near_index] + rng.normal(0.0, NEAR_SIGMA, (spec.near, 3))
    dense, _ = sample_union_surface(shape.parts, spec.render, rng)
    frame = shape.to_onet(dense) * shapenet_occ.FRAME_SCALE * RENDER_SCALE
    depth = depth_images(torch.from_numpy(frame.astype(np.float32))[None], spec.views, spec.image)[0].numpy()
    angles = (2 * np.pi * np.arange(spec.views) / spec.views).astype(np.float32)
    return {
        shapenet_occ.SURFACE_FILE: _npz_bytes(points=surface.astype(np.float16), normals=normal.astype(np.float16),
                                              loc=loc, scale=scale),
        shapenet_occ.POINTS_FILE: _query_file(shape, volume),
        shapenet_occ.NEAR_FILE: _query_file(shape, near),
        shapenet_occ.DEPTH_FILE: _npz_bytes(depth=depth.astype(np.float16), angles=angles,
                                            render_scale=np.float32(RENDER_SCALE)),
    }  # fmt: skip


@standin_writer("shapenet_occ", stream=8)
def write_shapenet_occ(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """Per category (:data:`OCC_CATEGORIES` order) and split, fresh shapes in their model folders, then the three
    list files of the category."""
    spec = OCC_SIZES[size]
    written: list[Path] = []
    for synset, family in OCC_CATEGORIES.values():
        folder = shapenet_occ.synset_dir(root, synset)
        for split, count in zip(shapenet_occ.ShapeNetOcc.splits, spec.counts, strict=True):
            ids = []
            for _ in range(count):
                shape = OccupancyShape.of(FAMILIES[family](rng))
                files = shape_files(shape, spec, rng)
                model = rng.bytes(16).hex()
                written += [atomic_write_bytes(folder / model / name, data) for name, data in files.items()]
                ids.append(model)
            written.append(atomic_write_text(shapenet_occ.list_path(root, synset, split), "\n".join(ids) + "\n"))
    return written

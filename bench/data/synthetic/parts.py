"""ShapeNetPart stand-in: procedural objects whose points carry the part they were sampled from, written in the
official ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` layout (see :mod:`bench.data.shapenetpart`).

Each generator returns (local part index, primitive) pairs; the local index k of a category maps to the official
global part id ``SEG_CLASSES[category][k]`` (e.g. Table: 0 top -> 47, 1 leg -> 48, 2 support -> 49). Part
semantics follow the official ShapeNetPart part names where the stand-in has them (Airplane body / wing / tail /
engine, Lamp base / shade / canopy / tube, ...). Labels are learnable: a part is a separate primitive with its
own position and shape. Points per shape vary (as real shapes do), so whole-shape evaluation sees uneven sizes.
The synset list, the 16 category names and the 50 part ranges are the official ones; the stand-in fills only
the categories of its size. Units as :mod:`.families` (Y up, standing on y = 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data import shapenetpart as spp
from bench.data.synthetic.shapes import Part, box, cyl, ellipsoid, torus
from bench.data.synthetic.writers import standin_writer

Gen = np.random.Generator
Labelled = list[tuple[int, Part]]


def airplane(rng: Gen) -> Labelled:
    """0 body, 1 wing, 2 tail (stabiliser + fin), 3 engine (one under each wing)."""
    length, rad = rng.uniform(1.0, 1.5), rng.uniform(0.06, 0.11)
    span, chord, fin = rng.uniform(1.0, 1.8), rng.uniform(0.18, 0.32), rng.uniform(0.15, 0.3)
    wx, ez = rng.uniform(-0.08, 0.08), span * rng.uniform(0.2, 0.3)
    er = rng.uniform(0.035, 0.05)
    return [
        (0, ellipsoid(length / 2, rad, rad, (0, 0.3, 0))),
        (1, box(chord, 0.02, span, (wx, 0.3, 0))),
        (2, box(chord * 0.5, 0.015, span * 0.35, (-length / 2 + 0.1, 0.3 + rad * 0.5, 0))),
        (2, box(chord * 0.6, fin, 0.015, (-length / 2 + 0.1, 0.3 + fin / 2, 0))),
        (3, cyl(er, chord * 0.9, (wx + 0.05, 0.3 - er - 0.02, ez), axis="x")),
        (3, cyl(er, chord * 0.9, (wx + 0.05, 0.3 - er - 0.02, -ez), axis="x")),
    ]


def bag(rng: Gen) -> Labelled:
    """0 handle (an arc over the top), 1 body."""
    w, h, d = rng.uniform(0.3, 0.5), rng.uniform(0.25, 0.4), rng.uniform(0.1, 0.18)
    return [(1, box(w, h, d, (0, h / 2, 0))),
            (0, torus(w * rng.uniform(0.2, 0.35), 0.012, (0, h, 0), math.pi, start=math.pi, axis="z"))]


def chair(rng: Gen) -> Labelled:
    """0 back, 1 seat, 2 leg, 3 arm (only some chairs have arms)."""
    w, d, sh, t = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.08)
    bh, lt = rng.uniform(0.35, 0.6), rng.uniform(0.03, 0.05)
    out: Labelled = [(1, box(w, t, d, (0, sh - t / 2, 0))), (0, box(w, bh, 0.05, (0, sh + bh / 2, -d / 2 + 0.025)))]
    x, z, lh = w / 2 - lt / 2, d / 2 - lt / 2, sh - t
    out += [(2, box(lt, lh, lt, (sx * x, lh / 2, sz * z))) for sx in (-1, 1) for sz in (-1, 1)]
    if rng.random() < 0.5:
        out += [(3, box(0.04, 0.03, d * 0.8, (sx * (w / 2 - 0.02), sh + 0.2, 0))) for sx in (-1, 1)]
    return out


def guitar(rng: Gen) -> Labelled:
    """0 head, 1 neck, 2 body (two lobes), standing along Y."""
    br, nl = rng.uniform(0.15, 0.22), rng.uniform(0.4, 0.55)
    body = [(2, ellipsoid(br, br * 1.1, 0.05, (0, br * 1.1, 0))),
            (2, ellipsoid(br * 0.8, br * 0.8, 0.05, (0, br * 2.4, 0)))]
    top = br * 3.0
    return body + [(1, box(0.05, nl, 0.03, (0, top + nl / 2, 0))),
                   (0, box(0.08, 0.16, 0.035, (0, top + nl + 0.08, 0)))]


def knife(rng: Gen) -> Labelled:
    """0 blade, 1 handle, lying along X."""
    bl, hl = rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.14)
    return [(0, box(bl, rng.uniform(0.025, 0.05), 0.004, (bl / 2, 0.02, 0))),
            (1, cyl(0.013, hl, (-hl / 2, 0.02, 0), axis="x"))]


def lamp(rng: Gen) -> Labelled:
    """0 base, 1 lampshade, 2 canopy (the bulb holder under the shade), 3 tube (the stem)."""
    br, sh, r0, hh = rng.uniform(0.08, 0.18), rng.uniform(0.3, 1.2), rng.uniform(0.12, 0.25), rng.uniform(0.15, 0.3)
    top = 0.03 + sh
    return [
        (0, cyl(br, 0.03, (0, 0.015, 0))),
        (3, cyl(0.012, sh, (0, 0.03 + sh / 2, 0))),
        (2, cyl(0.03, 0.05, (0, top + 0.025, 0))),
        (1, cyl(r0, hh, (0, top + hh / 2 - 0.02, 0), r1=r0 * rng.uniform(0.4, 0.75), bottom=False, top=False)),
    ]


def laptop(rng: Gen) -> Labelled:
    """0 keyboard (the base slab), 1 screen (tilted back)."""
    w, d = rng.uniform(0.3, 0.4), rng.uniform(0.2, 0.28)
    tilt = rng.uniform(0.15, 0.45)
    screen = box(w, d, 0.01, (0, d / 2 * math.cos(tilt), -d / 2 - d / 2 * math.sin(tilt)))
    c, s = math.cos(tilt), math.sin(tilt)
    screen.rot = np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    return [(0, box(w, 0.015, d, (0, 0.0075, 0))), (1, screen)]


def mug(rng: Gen) -> Labelled:
    """0 handle, 1 body."""
    r, h = rng.uniform(0.04, 0.06), rng.uniform(0.08, 0.13)
    return [(1, cyl(r, h, (0, h / 2, 0), top=False)),
            (0, torus(h * 0.3, 0.008, (r, h / 2, 0), math.pi, start=-math.pi / 2, axis="z"))]


def rocket(rng: Gen) -> Labelled:
    """0 body, 1 fin, 2 nose, standing along Y."""
    r, h, nose = rng.uniform(0.05, 0.08), rng.uniform(0.5, 0.8), rng.uniform(0.1, 0.2)
    fin = rng.uniform(0.08, 0.14)
    out: Labelled = [(0, cyl(r, h, (0, h / 2, 0))), (2, cyl(r, nose, (0, h + nose / 2, 0), r1=0.005, bottom=False))]
    out += [(1, box(fin, fin * 1.5, 0.01, (r + fin / 2, fin * 0.75, 0))),
            (1, box(fin, fin * 1.5, 0.01, (-r - fin / 2, fin * 0.75, 0))),
            (1, box(0.01, fin * 1.5, fin, (0, fin * 0.75, r + fin / 2))),
            (1, box(0.01, fin * 1.5, fin, (0, fin * 0.75, -r - fin / 2)))]
    return out


def table(rng: Gen) -> Labelled:
    """0 top, 1 leg, 2 support (a stretcher frame between the legs, on some tables)."""
    w, d, h, t = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.1), rng.uniform(0.6, 0.9), rng.uniform(0.03, 0.07)
    lt, inset = rng.uniform(0.03, 0.08), rng.uniform(0, 0.1)
    x, z, lh = w / 2 - lt / 2 - inset, d / 2 - lt / 2 - inset, h - t
    out: Labelled = [(0, box(w, t, d, (0, h - t / 2, 0)))]
    out += [(1, box(lt, lh, lt, (sx * x, lh / 2, sz * z))) for sx in (-1, 1) for sz in (-1, 1)]
    if rng.random() < 0.6:
        y = lh * rng.uniform(0.2, 0.4)
        out += [(2, box(2 * x, 0.03, 0.03, (0, y, sz * z))) for sz in (-1, 1)]
    return out


GENERATORS: dict[str, Callable[[Gen], Labelled]] = {
    "Airplane": airplane, "Bag": bag, "Chair": chair, "Guitar": guitar, "Knife": knife, "Lamp": lamp,
    "Laptop": laptop, "Mug": mug, "Rocket": rocket, "Table": table,
}  # fmt: skip


@dataclass(frozen=True)
class PartStandin:
    """Shapes per filled category (train, val, test) and the points per shape (P drawn from [points, 1.25 P]).
    Every other filled category gets one more train and test shape, so Cls. and Inst. mIoU differ."""

    categories: tuple[str, ...]
    counts: tuple[int, int, int]
    points: int

    def split_counts(self, k: int) -> tuple[int, int, int]:
        """(train, val, test) shapes of the k-th filled category."""
        train, val, test = self.counts
        return train + k % 2, val, test + k % 2


PART_SIZES = {
    "tiny": PartStandin(("Airplane", "Lamp", "Mug", "Table"), (3, 1, 2), 256),
    "demo": PartStandin(tuple(GENERATORS), (10, 2, 4), 1024),
}


def sample_labelled(parts: Labelled, n: int, rng: Gen) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n points over all parts split by area, each part uniform: (xyz (n,3), normal (n,3), local part (n,))."""
    areas = np.array([p.surface.area for _, p in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    xyz, nrm, lab = [], [], []
    for (label, part), k in zip(parts, counts, strict=True):
        if k:
            p, q = part.surface.sample(int(k), rng)
            xyz.append(p @ part.rot + np.asarray(part.at))
            nrm.append(q @ part.rot)
            lab.append(np.full(int(k), label))
    perm = rng.permutation(n)
    return np.concatenate(xyz)[perm], np.concatenate(nrm)[perm], np.concatenate(lab)[perm]


def labelled_shape(category: str, rng: Gen, n: int) -> np.ndarray:
    """One instance of ``category`` as the (n, 7) rows of its txt file: x y z nx ny nz global part id."""
    xyz, normal, local = sample_labelled(GENERATORS[category](rng), n, rng)
    xyz = xyz - (xyz.max(0) + xyz.min(0)) / 2
    xyz /= np.linalg.norm(xyz, axis=1).max()
    parts = np.asarray(spp.SEG_CLASSES[category])
    return np.concatenate([xyz, normal, parts[local][:, None]], axis=1)


@standin_writer("shapenetpart", stream=5)
def write_shapenetpart(root: Path, size: str, rng: Gen) -> list[Path]:
    """The stand-in below ``root``: category file (all 16), txt shapes, and the three shuffled split lists."""
    spec = PART_SIZES[size]
    synsets = dict(spp.CATEGORIES)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    written = []
    for k, category in enumerate(spec.categories):
        for split, count in zip(lists, spec.split_counts(k), strict=True):
            for _ in range(count):
                rows = labelled_shape(category, rng, int(rng.integers(spec.points, spec.points * 5 // 4 + 1)))
                shape_id = rng.bytes(16).hex()
                path = spp.shape_path(root, synsets[category], shape_id)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savetxt(path, rows, fmt=["%.5f"] * 6 + ["%d"])
                lists[split].append(f"shape_data/{synsets[category]}/{shape_id}")
                written.append(path)
    text = "".join(f"{name}\t{synset}\n" for name, synset in spp.CATEGORIES)
    written.append(_write(spp.category_file(root), text))
    for split, entries in lists.items():
        order = rng.permutation(len(entries))  # official lists are shuffled
        written.append(_write(spp.split_json(root, split), json.dumps([entries[i] for i in order])))
    return written


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path

"""Shape families of the synthetic stand-in: each draws one instance's parts with random proportions.

Units are roughly metres, Y up, objects standing on y = 0 and centred on x = z = 0. The same families serve
ScanObjectNN (partial scans), ModelNet40 (complete shapes with normals) and ShapeNet-55 (complete shapes), so
pre-training on the ShapeNet stand-in sees the shapes the downstream stand-ins are made of.
"""

from __future__ import annotations

import math

import numpy as np

from bench.data.synthetic.shapes import FamilyFn, Part, box, cyl, ellipsoid, torus

Gen = np.random.Generator


def _legs(w: float, d: float, h: float, t: float, inset: float = 0.0) -> list[Part]:
    """Four square legs of thickness t and height h under a w x d footprint."""
    x, z = w / 2 - t / 2 - inset, d / 2 - t / 2 - inset
    return [box(t, h, t, (sx * x, h / 2, sz * z)) for sx in (-1, 1) for sz in (-1, 1)]


def table(rng: Gen) -> list[Part]:
    w, d, h, t = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.1), rng.uniform(0.6, 0.9), rng.uniform(0.03, 0.07)
    if rng.random() < 0.3:  # round pedestal table
        r = d * 0.7
        return [cyl(r, t, (0, h - t / 2, 0)), cyl(0.05, h - t, (0, (h - t) / 2, 0)), cyl(r * 0.5, 0.03, (0, 0.015, 0))]
    return [box(w, t, d, (0, h - t / 2, 0))] + _legs(w, d, h - t, rng.uniform(0.03, 0.08), rng.uniform(0, 0.1))


def desk(rng: Gen) -> list[Part]:
    w, d, h, t = rng.uniform(1.1, 1.7), rng.uniform(0.55, 0.8), rng.uniform(0.7, 0.8), 0.04
    side = rng.uniform(0.03, 0.06)
    parts = [box(w, t, d, (0, h - t / 2, 0)), box(w - 2 * side, 0.3, 0.02, (0, h - 0.2, -d / 2 + 0.05))]
    parts.append(box(side, h - t, d, (-w / 2 + side / 2, (h - t) / 2, 0)))
    if rng.random() < 0.5:
        parts.append(box(side, h - t, d, (w / 2 - side / 2, (h - t) / 2, 0)))
    else:  # drawer block
        dw = rng.uniform(0.35, 0.5)
        parts.append(box(dw, h - t, d, (w / 2 - dw / 2, (h - t) / 2, 0)))
    return parts


def chair(rng: Gen) -> list[Part]:
    w, d, sh, t = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.55), rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.08)
    bh = rng.uniform(0.35, 0.6)
    parts = [box(w, t, d, (0, sh - t / 2, 0)), box(w, bh, 0.05, (0, sh + bh / 2, -d / 2 + 0.025))]
    return parts + _legs(w, d, sh - t, rng.uniform(0.03, 0.05))


def sofa(rng: Gen) -> list[Part]:
    w, d, bh = rng.uniform(1.5, 2.4), rng.uniform(0.8, 1.0), rng.uniform(0.35, 0.5)
    back, arm, ah = rng.uniform(0.65, 0.9), rng.uniform(0.12, 0.25), rng.uniform(0.5, 0.7)
    return [
        box(w, bh, d, (0, bh / 2, 0)),
        box(w, back, 0.2, (0, back / 2, -d / 2 + 0.1)),
        box(arm, ah, d, (-w / 2 + arm / 2, ah / 2, 0)),
        box(arm, ah, d, (w / 2 - arm / 2, ah / 2, 0)),
    ]


def bed(rng: Gen) -> list[Part]:
    length, w, mh = rng.uniform(1.9, 2.2), rng.uniform(1.0, 1.8), rng.uniform(0.35, 0.6)
    hb = rng.uniform(0.8, 1.3)
    parts = [box(w, mh, length, (0, mh / 2, 0)), box(w, hb, 0.06, (0, hb / 2, -length / 2 - 0.03))]
    if rng.random() < 0.5:
        parts.append(box(w, mh + 0.1, 0.05, (0, (mh + 0.1) / 2, length / 2 + 0.025)))
    return parts + [ellipsoid(w * 0.3, 0.07, 0.2, (0, mh + 0.05, -length / 2 + 0.3))]


def shelf(rng: Gen) -> list[Part]:
    w, h, d, t = rng.uniform(0.6, 1.2), rng.uniform(1.0, 2.0), rng.uniform(0.25, 0.4), rng.uniform(0.02, 0.04)
    parts = [box(t, h, d, (sx * (w / 2 - t / 2), h / 2, 0)) for sx in (-1, 1)]
    parts.append(box(w, h, 0.01, (0, h / 2, -d / 2)))
    boards = int(rng.integers(3, 7))
    return parts + [box(w - 2 * t, t, d, (0, y, 0)) for y in np.linspace(t / 2, h - t / 2, boards)]


def cabinet(rng: Gen) -> list[Part]:
    w, h, d = rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.7), rng.uniform(0.4, 0.6)
    parts = [box(w, h - 0.08, d, (0, 0.08 + (h - 0.08) / 2, 0)), box(w - 0.05, 0.08, d - 0.05, (0, 0.04, 0))]
    hy = rng.uniform(0.5, 0.8) * h
    return parts + [cyl(0.012, 0.15, (sx * 0.05, hy, d / 2 + 0.02)) for sx in (-1, 1)]


def crate(rng: Gen) -> list[Part]:
    sx, sy, sz = rng.uniform(0.3, 0.6, 3)
    return [box(sx, sy, sz, (0, sy / 2, 0)), box(sx + 0.03, 0.04, sz + 0.03, (0, sy + 0.02, 0))]


def trash_bin(rng: Gen) -> list[Part]:
    h = rng.uniform(0.4, 0.75)
    if rng.random() < 0.3:
        s = rng.uniform(0.25, 0.4)
        return [box(s, h, s * rng.uniform(0.7, 1.0), (0, h / 2, 0), open_top=True)]
    r0 = rng.uniform(0.13, 0.22)
    return [cyl(r0, h, (0, h / 2, 0), r1=r0 * rng.uniform(1.0, 1.3), top=False)]


def bag(rng: Gen) -> list[Part]:
    a, b, c = rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.3), rng.uniform(0.08, 0.15)
    handle = torus(a * rng.uniform(0.4, 0.7), 0.015, (0, 2 * b * 0.9, 0), math.pi, start=math.pi, axis="z")
    return [ellipsoid(a, b, c, (0, b, 0)), handle]


def pillow(rng: Gen) -> list[Part]:
    a, c = rng.uniform(0.25, 0.4), rng.uniform(0.18, 0.3)
    b = rng.uniform(0.05, 0.1)
    return [ellipsoid(a, b, c, (0, b, 0))]


def display(rng: Gen) -> list[Part]:
    w = rng.uniform(0.45, 0.8)
    sh, neck = w * rng.uniform(0.5, 0.7), rng.uniform(0.08, 0.2)
    return [
        box(w, sh, 0.04, (0, 0.02 + neck + sh / 2, 0)),
        box(0.05, neck + 0.05, 0.03, (0, 0.02 + neck / 2, -0.03)),
        box(w * rng.uniform(0.3, 0.5), 0.02, 0.18, (0, 0.01, -0.03)),
    ]


def door(rng: Gen) -> list[Part]:
    w, h, t = rng.uniform(0.75, 1.0), rng.uniform(1.9, 2.2), rng.uniform(0.04, 0.06)
    parts = [box(w, h, t, (0, h / 2, 0)), ellipsoid(0.03, 0.03, 0.03, (w / 2 - 0.08, h * 0.47, t / 2 + 0.04))]
    if rng.random() < 0.5:  # frame
        f = 0.06
        parts += [box(f, h + f, t * 2, (sx * (w / 2 + f / 2), (h + f) / 2, 0)) for sx in (-1, 1)]
        parts.append(box(w + 2 * f, f, t * 2, (0, h + f / 2, 0)))
    return parts


def sink(rng: Gen) -> list[Part]:
    ph, r = rng.uniform(0.6, 0.8), rng.uniform(0.2, 0.28)
    if rng.random() < 0.5:  # vanity with a basin
        w, d = rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.55)
        return [box(w, ph, d, (0, ph / 2, 0)), cyl(r * 0.8, 0.15, (0, ph + 0.075, 0), r1=r, top=False)]
    return [cyl(0.07, ph, (0, ph / 2, 0), r1=0.1), cyl(r * 0.6, 0.18, (0, ph + 0.09, 0), r1=r, top=False)]


def toilet(rng: Gen) -> list[Part]:
    bh, r = rng.uniform(0.35, 0.45), rng.uniform(0.17, 0.22)
    tw, th = rng.uniform(0.35, 0.5), rng.uniform(0.3, 0.45)
    return [
        cyl(0.12, bh, (0, bh / 2, 0.03), r1=0.16),
        ellipsoid(r, 0.12, r * 1.35, (0, bh + 0.02, 0.05), half=-1),
        cyl(r * 1.05, 0.03, (0, bh + 0.035, 0.05)),
        box(tw, th, 0.18, (0, bh + th / 2, -r * 1.35 - 0.05)),
    ]


def lamp(rng: Gen) -> list[Part]:
    br, sh = rng.uniform(0.08, 0.18), rng.uniform(0.3, 1.4)
    r0 = rng.uniform(0.12, 0.25)
    hh = rng.uniform(0.15, 0.3)
    return [
        cyl(br, 0.03, (0, 0.015, 0)),
        cyl(0.012, sh, (0, 0.03 + sh / 2, 0)),
        cyl(r0, hh, (0, 0.03 + sh + hh / 2 - 0.05, 0), r1=r0 * rng.uniform(0.4, 0.75), bottom=False, top=False),
    ]


def mug(rng: Gen) -> list[Part]:
    r, h = rng.uniform(0.04, 0.06), rng.uniform(0.08, 0.13)
    handle = torus(h * 0.3, 0.008, (r, h / 2, 0), math.pi, start=-math.pi / 2, axis="z")  # arc on the +x side
    return [cyl(r, h, (0, h / 2, 0), top=False), handle]


def bottle(rng: Gen) -> list[Part]:
    r, h = rng.uniform(0.03, 0.05), rng.uniform(0.14, 0.25)
    sh, nh = rng.uniform(0.03, 0.06), rng.uniform(0.03, 0.07)
    return [
        cyl(r, h, (0, h / 2, 0), top=False),
        cyl(r, sh, (0, h + sh / 2, 0), r1=0.013, bottom=False, top=False),
        cyl(0.013, nh, (0, h + sh + nh / 2, 0), bottom=False),
    ]


def bowl(rng: Gen) -> list[Part]:
    r = rng.uniform(0.08, 0.15)
    depth = r * rng.uniform(0.4, 0.8)
    return [ellipsoid(r, depth, r, (0, depth, 0), half=-1), cyl(r * 0.4, 0.01, (0, 0.005, 0))]


def bathtub(rng: Gen) -> list[Part]:
    length, w, h = rng.uniform(1.4, 1.8), rng.uniform(0.65, 0.9), rng.uniform(0.4, 0.6)
    return [box(w, h, length, (0, h / 2, 0), open_top=True), box(w + 0.08, 0.03, length + 0.08, (0, h, 0))]


def cone(rng: Gen) -> list[Part]:
    r, h = rng.uniform(0.15, 0.4), rng.uniform(0.3, 0.9)
    return [cyl(r, h, (0, h / 2, 0), r1=0.0, top=False)]


def airplane(rng: Gen) -> list[Part]:
    length, rad = rng.uniform(1.0, 1.5), rng.uniform(0.06, 0.11)
    span, chord = rng.uniform(1.0, 1.8), rng.uniform(0.18, 0.32)
    fin = rng.uniform(0.15, 0.3)
    return [
        ellipsoid(length / 2, rad, rad, (0, 0.3, 0)),
        box(chord, 0.02, span, (rng.uniform(-0.08, 0.08), 0.3, 0)),
        box(chord * 0.5, 0.015, span * 0.35, (-length / 2 + 0.1, 0.3 + rad * 0.5, 0)),
        box(chord * 0.6, fin, 0.015, (-length / 2 + 0.1, 0.3 + fin / 2, 0)),
    ]


def car(rng: Gen) -> list[Part]:
    length, w, bh = rng.uniform(1.6, 2.2), rng.uniform(0.7, 0.9), rng.uniform(0.25, 0.35)
    ch, cl, wr = rng.uniform(0.2, 0.3), length * rng.uniform(0.4, 0.6), rng.uniform(0.1, 0.15)
    parts = [box(length, bh, w, (0, wr + bh / 2, 0)), box(cl, ch, w * 0.9, (-length * 0.05, wr + bh + ch / 2, 0))]
    x = length / 2 - wr * 1.6
    return parts + [cyl(wr, 0.08, (sx * x, wr, sz * w / 2), axis="z") for sx in (-1, 1) for sz in (-1, 1)]


FAMILIES: dict[str, FamilyFn] = {
    "table": table, "desk": desk, "chair": chair, "sofa": sofa, "bed": bed, "shelf": shelf, "cabinet": cabinet,
    "box": crate, "bin": trash_bin, "bag": bag, "pillow": pillow, "display": display, "door": door, "sink": sink,
    "toilet": toilet, "lamp": lamp, "mug": mug, "bottle": bottle, "bowl": bowl, "bathtub": bathtub, "cone": cone,
    "airplane": airplane, "car": car,
}  # fmt: skip

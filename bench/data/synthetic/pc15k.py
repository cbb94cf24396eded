"""ShapeNetCore.v2.PC15k stand-in: procedural airplanes, chairs and cars in the official PC15k layout
``ShapeNetCore.v2.PC15k/<synset>/{train,val,test}/<32 hex>.npy`` (see :mod:`bench.data.shapenet15k`).

- Sizes (:data:`PC15K_SIZES`, shapes per category and split, points per file): tiny (train 6, val 4, test 4) x
  1024 points; demo (train 48, val 24, test 24) x 3072 points (the official files hold 15000).
- Shapes follow ShapeNetCore.v2's convention: centred at their bounding-box centre and scaled so the bounding-box
  diagonal is 1; Y up (the :mod:`.families` convention). Each shape is a fresh random instance of its family
  (proportions, part sizes and positions vary), so a category has within-class variety, and the three families
  are distinct, so the categories are distinguishable: a generator can be trained on ``train`` and scored
  against ``val``.
- Model stems are ShapeNet-like 32-hex ids (``rng.bytes(16).hex()``). Files are float32 ``.npy`` written
  atomically (:mod:`bench.io`). The writer draws from its own stream, so the same seed gives byte-identical files
  and writing this set never changes another set's files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data import shapenet15k
from bench.data.synthetic.shapes import make_shape
from bench.data.synthetic.writers import standin_writer
from bench.io import atomic_write

#: stand-in size -> ((train, val, test) shapes per category, points per file)
PC15K_SIZES: dict[str, tuple[tuple[int, int, int], int]] = {
    "tiny": ((6, 4, 4), 1024),
    "demo": ((48, 24, 24), 3072),
}
#: category -> shape family of :func:`bench.data.synthetic.shapes.make_shape`
PC15K_FAMILIES = {"airplane": "airplane", "chair": "chair", "car": "car"}


def unit_diagonal(xyz: np.ndarray) -> np.ndarray:
    """ShapeNetCore.v2 normalisation: centre at the bounding-box centre, scale to a bounding-box diagonal of 1."""
    xyz = np.asarray(xyz, dtype=np.float64)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    return ((xyz - (lo + hi) / 2) / np.linalg.norm(hi - lo)).astype(np.float32)


def _save_npy(path: Path, xyz: np.ndarray) -> Path:
    return atomic_write(path, lambda handle: np.save(handle, xyz, allow_pickle=False))


@standin_writer("shapenet15k", stream=6)
def write_pc15k(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """The airplane, chair and car folders below ``root``: per category and split, fresh shapes as (P, 3) float32
    ``<32 hex>.npy`` files (category by category, split by split, shape by shape from ``rng``)."""
    counts, points = PC15K_SIZES[size]
    written = []
    for category, synset in shapenet15k.CATEGORIES.items():
        for split, count in zip(shapenet15k.ShapeNet15k.splits, counts, strict=True):
            folder = shapenet15k.split_dir(root, synset, split)
            for _ in range(count):
                xyz, _ = make_shape(PC15K_FAMILIES[category], rng, points)
                written.append(_save_npy(folder / f"{rng.bytes(16).hex()}.npy", unit_diagonal(xyz)))
    return written

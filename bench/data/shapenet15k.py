"""ShapeNetCore.v2.PC15k (PointFlow / PVD / LION generation data) and the generation normalisation helpers.

Layout below the data root (reference/generation.md 1.1): ``ShapeNetCore.v2.PC15k/<synset>/{train,val,test}/
<model>.npy``, one (15000, 3) float32 array per shape officially (any P >= 1 is accepted; exactly 3 columns).

- Variants: one category (``airplane``, ``chair``, ``car``: :data:`CATEGORIES`) or ``all``, every synset folder
  present below the PC15k folder, in sorted order. Splits: ``train``, ``val``, ``test`` (the official folders).
- Reference set: PointFlow, PVD and LION score samples against the **``val``** split, which their papers call
  "test" (PointFlow ``get_datasets``: ``split='val'``). Reference sizes (LION ``get_ref_num``): airplane 405,
  chair 662, car 352; the sample set has the same size as the reference set.
- Files: the sorted ``*.npy`` names of each split folder, synset by synset; ``id`` = ``"<synset>/<model stem>"``.
- ``label`` = index of the synset in :data:`bench.data.shapenet55.SYNSETS` (the 55 sorted ShapeNet synset ids) for
  every variant, so labels agree with ShapeNet-55 pre-training; ``class_names`` are the 55 names in that order.
- Raw points are returned. PointFlow's per-shape point split (``[:10000]`` train points, ``[10000:]`` test points),
  the 2048-point subsets (:func:`subsample`) and the normalisations (:data:`NORMALISATIONS`) are left to the caller.

Normalisations (1.2; numbers under one are not comparable with numbers under the other):

- ``"global"`` (PointFlow default, LION Table 1): :func:`global_stats` of the category's *train* clouds, applied to
  train and reference alike with :func:`normalize_global`; samples and references are de-normalised
  (:func:`denormalize_global`) before the metrics, so metrics are in raw ShapeNet units.
- ``"box"`` (DPM ``shape_bbox``, LION Table 2): :func:`normalize_box`, per shape, on samples and references right
  before the metrics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import PointCloudDataset, Sample, check_points
from bench.data.shapenet55 import SYNSET_NAMES, SYNSETS
from bench.errors import DataError
from bench.registry import DATASETS

FOLDER = Path("ShapeNetCore.v2.PC15k")
#: the three generation categories of PointFlow / PVD / LION and their synset ids
CATEGORIES: dict[str, str] = {"airplane": "02691156", "chair": "03001627", "car": "02958343"}
#: the normalisation conventions of the generation protocol (see the module docstring)
NORMALISATIONS = ("global", "box")


def pc15k_dir(root: Path) -> Path:
    """The PC15k folder below the data root."""
    return Path(root) / FOLDER


def split_dir(root: Path, synset: str, split: str) -> Path:
    """``<root>/ShapeNetCore.v2.PC15k/<synset>/<split>``."""
    return pc15k_dir(root) / synset / split


def present_synsets(root: Path) -> list[str]:
    """The synset folders present below the PC15k folder, sorted (hidden entries and plain files are skipped)."""
    folder = pc15k_dir(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def variant_synsets(root: Path, variant: str) -> list[str]:
    """The synsets a variant reads: its category's synset, or (``all``) every synset folder present."""
    return present_synsets(root) if variant == "all" else [CATEGORIES[variant]]


def split_files(root: Path, synset: str, split: str) -> list[Path]:
    """The sorted ``*.npy`` files of one split folder (DataError naming the folder when it is absent)."""
    folder = split_dir(root, synset, split)
    if not folder.is_dir():
        raise DataError(f"ShapeNetCore.v2.PC15k split folder not found: expected {folder}.")
    return sorted((p for p in folder.glob("*.npy") if p.is_file()), key=lambda p: p.name)


@DATASETS.register("shapenet15k")
class ShapeNet15k(PointCloudDataset):
    """ShapeNetCore.v2.PC15k shapes of one category or all; label = synset index in the sorted 55-synset list."""

    name = "shapenet15k"
    source = "the Google Drive link in PointFlow's README, https://github.com/stevenygd/PointFlow"
    variants: ClassVar[tuple[str, ...]] = ("airplane", "chair", "car", "all")
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    class_names: ClassVar[list[str]] = [SYNSET_NAMES[s] for s in SYNSETS]

    def __init__(self, root: Path, split: str, variant: str = "airplane", **options: Any) -> None:
        super().__init__(root, split, variant, **options)
        synsets = variant_synsets(self.root, variant)
        if not synsets:
            raise DataError(f"no synset folders found: expected {pc15k_dir(self.root)}/<synset>/{split}/*.npy.")
        self.files: list[Path] = []
        labels: list[int] = []
        for synset in synsets:
            if synset not in SYNSET_NAMES:
                raise DataError(f"{pc15k_dir(self.root) / synset}: not one of the 55 ShapeNet synset ids.")
            files = split_files(self.root, synset, split)
            self.files += files
            labels += [SYNSETS.index(synset)] * len(files)
        if not self.files:
            raise DataError(f"no .npy files in the {split} split: expected "
                            f"{split_dir(self.root, synsets[0], split)}/<model>.npy.")  # fmt: skip
        self.labels = np.array(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int) -> Sample:
        i = self._check_index(i)
        path = self.files[i]
        try:
            points = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({exc}).") from None
        xyz = check_points(points, path)
        if xyz.shape[1] != 3:
            raise DataError(f"{path}: expected a (P, 3) point array, got shape {xyz.shape}.")
        return {"xyz": xyz, "label": np.asarray(self.labels[i], dtype=np.int64), "id": self.sample_id(i)}

    def sample_id(self, i: int) -> str:
        """``<synset>/<model stem>``."""
        path = self.files[self._check_index(i)]
        return f"{path.parent.parent.name}/{path.stem}"

    @classmethod
    def expected_files(cls, root: Path, variant: str = "airplane") -> list[Path]:
        if variant == "all":
            return [pc15k_dir(root)]
        return [split_dir(root, CATEGORIES[variant], split) for split in cls.splits]

    @classmethod
    def light_check(cls, root: Path, variant: str = "airplane") -> tuple[list[str], dict[str, int | None]]:
        """Samples per split (summed over the variant's synsets); a problem per absent or empty split folder."""
        synsets = variant_synsets(root, variant)
        problems = [] if synsets else [f"no synset folders in {pc15k_dir(root)}"]
        problems += [f"{pc15k_dir(root) / s} is not one of the 55 ShapeNet synset ids" for s in synsets
                     if s not in SYNSET_NAMES]  # fmt: skip
        counts: dict[str, int | None] = {}
        for split in cls.splits:
            counts[split] = 0
            for synset in synsets:
                folder = split_dir(root, synset, split)
                n = len(split_files(root, synset, split)) if folder.is_dir() else 0
                if not n:
                    problems.append(f"{folder} holds no .npy files" if folder.is_dir() else f"{folder} is missing")
                counts[split] += n
        return problems, counts


# --- normalisation helpers (pure numpy) ----------------------------------------------------------------------


def _as_clouds(clouds: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(clouds)
    if arr.ndim < 2 or arr.shape[-1] != 3 or arr.shape[-2] == 0:
        raise DataError(f"{what}: expected (..., P, 3) point clouds with P >= 1, got shape {arr.shape}.")
    return arr


def _float_dtype(arr: np.ndarray) -> np.dtype:
    """The dtype results keep: the input's float dtype, float32 for integer input."""
    return np.result_type(arr.dtype, np.float32)


def global_stats(clouds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PointFlow ``datasets.py`` (``ShapeNet15kPointClouds``, ``normalize_per_shape=False``) global statistics of
    a set of clouds ``(n, P, 3)``: the per-axis mean of all points of the set, shape (1, 1, 3), and ONE scalar std
    of all coordinates of the set flattened (``all_points.reshape(-1).std()``, numpy's population std), shape
    (1, 1, 1). Computed in float64. PointFlow takes them from the *train* split and reuses them for the reference
    set (and for de-normalising samples)."""
    arr = _as_clouds(clouds, "global_stats").astype(np.float64)
    mean = arr.reshape(-1, 3).mean(axis=0).reshape(1, 1, 3)
    std = arr.reshape(-1).std().reshape(1, 1, 1)
    if not float(std[0, 0, 0]) > 0:
        raise DataError("global_stats: the clouds have zero spread (every coordinate is equal); cannot normalise.")
    return mean, std


def normalize_global(clouds: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """PointFlow global normalisation ``(clouds - mean) / std`` with :func:`global_stats`; keeps a float input's
    dtype (float32 stays float32)."""
    arr = np.asarray(clouds)
    return ((arr - mean) / std).astype(_float_dtype(arr))


def denormalize_global(clouds: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_global`, ``clouds * std + mean`` (PointFlow ``test.py``, PVD
    ``test_generation.py``: samples and references go back to raw units before the metrics)."""
    arr = np.asarray(clouds)
    return (arr * std + mean).astype(_float_dtype(arr))


def normalize_box(clouds: np.ndarray) -> np.ndarray:
    """Per-shape bounding-box normalisation (DPM ``test_gen.py`` ``--normalize shape_bbox``, LION Table 2
    ``normalize_shape_box``): each cloud ``(P, 3)`` of ``(..., P, 3)`` is centred at its bbox centre
    ``(min + max) / 2`` and divided by half its largest bbox extent, so it spans [-1, 1] on its longest axis.

    LION's ``compute_score(norm_box=True)`` further multiplies by 0.5 (clouds in [-0.5, 0.5]): a uniform scale on
    both sets, which changes the MMD values (CD by 1/4, EMD by 1/2) but not COV or 1-NNA. Keeps the input's float
    dtype; computed in float64."""
    arr = _as_clouds(clouds, "normalize_box")
    work = arr.astype(np.float64)
    lo, hi = work.min(axis=-2, keepdims=True), work.max(axis=-2, keepdims=True)
    scale = (hi - lo).max(axis=-1, keepdims=True) / 2
    if not (scale > 0).all():
        flat = np.flatnonzero(~(scale > 0).reshape(-1))
        raise DataError(f"normalize_box: cloud {int(flat[0])} has a zero-size bounding box (all points equal).")
    return ((work - (lo + hi) / 2) / scale).astype(_float_dtype(arr))


def subsample(cloud: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-point subset of a ``(P, C)`` cloud without replacement (``rng.permutation(P)[:n]``, as LION
    ``compute_score`` subsamples larger sample clouds); DataError naming n and P when P < n."""
    arr = np.asarray(cloud)
    count = int(arr.shape[0]) if arr.ndim else 0
    if n < 1 or count < n:
        raise DataError(f"subsample: cannot draw n={n} points without replacement from a cloud of P={count} points.")
    return arr[rng.permutation(count)[:n]]

"""ShapeNet occupancy data in the Occupancy Networks layout (wave2.md 2.3 and 4.4; ONet ``scripts/sample_mesh.py``
and ``im2mesh/data/fields.py``, read for the format only).

Layout below the data root: ``ShapeNet/<synset>/{train,val,test}.lst`` (one model id per line) and, per model,
``ShapeNet/<synset>/<model>/``:

- ``points.npz``: ``points`` (P, 3) float16 uniform volume points, ``occupancies`` the ``np.packbits`` of the P
  booleans (uint8, ceil(P / 8) bytes, big-endian bit order as ``np.unpackbits`` reads it), ``loc`` (3,), ``scale``
  ();
- ``pointcloud.npz``: ``points`` (S, 3) float16 surface points, ``normals`` (S, 3) float16, ``loc``, ``scale``;
- our optional additions: ``points_near.npz`` (the keys of points.npz: near-surface query points, as
  3DShape2VecSet's near samples) and ``depth.npz`` (``depth`` (V, H, W) float16 depth renders from fixed views).

Coordinates in the files are ONet's normalised frame: bounding box centred, longest side 1 (``loc`` / ``scale``
say how the mesh was moved there, ``(mesh - loc) / scale``); volume points fill the unit cube padded by 0.1,
[-0.55, 0.55]^3.

**Frame**: ``load`` maps every coordinate to the data set frame ``FRAME_SCALE * onet`` with :data:`FRAME_SCALE` = 2
(the 3DShape2VecSet frame: shapes in [-1, 1], volume points in [-1.1, 1.1]^3), so metric thresholds (F-score tau,
the marching-cubes grid bound) are in these units. ``loc`` / ``scale`` are not returned.

``load(i)``: ``xyz`` (S, 3) / ``normal`` (S, 3) float32, ``label`` (the synset's index in
:data:`bench.data.shapenet55.SYNSETS`), ``query`` (P, 3) float32, ``occupancy`` (P,) float32 0/1, plus
``near_query`` / ``near_occupancy`` when ``points_near.npz`` exists and ``view`` (V, H, W) float32 when
``depth.npz`` exists, and ``id`` = ``"<synset>/<model>"``. A split must be uniform (all models with or without the
optional files) for batches to collate; the ``random_queries`` transform fixes the query count, ``random_subset``
the surface count. Geometric augmentations (``rotate_y``, ``scale_translate``) move only ``xyz`` / ``normal``:
do not use them with queries.

Variants: ``all`` (every synset folder present, sorted; the default) and the stand-in categories by name
(:data:`CATEGORIES`). Splits: ``train``, ``val``, ``test``, the ``.lst`` files. Missing or corrupt files raise
DataError naming the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import PointCloudDataset, Sample, check_points, read_lines
from bench.data.shapenet55 import SYNSET_NAMES, SYNSETS
from bench.errors import DataError
from bench.registry import DATASETS

FOLDER = Path("ShapeNet")
#: ONet unit cube -> the data set frame (3DShape2VecSet's [-1, 1])
FRAME_SCALE = 2.0
POINTS_FILE, SURFACE_FILE, NEAR_FILE, DEPTH_FILE = "points.npz", "pointcloud.npz", "points_near.npz", "depth.npz"
#: the stand-in categories (variants by name) and their synsets
CATEGORIES: dict[str, str] = {"airplane": "02691156", "car": "02958343", "chair": "03001627", "table": "04379243"}


def occ_dir(root: Path) -> Path:
    """``<root>/ShapeNet``."""
    return Path(root) / FOLDER


def synset_dir(root: Path, synset: str) -> Path:
    return occ_dir(root) / synset


def list_path(root: Path, synset: str, split: str) -> Path:
    """``<root>/ShapeNet/<synset>/<split>.lst``."""
    return synset_dir(root, synset) / f"{split}.lst"


def present_synsets(root: Path) -> list[str]:
    """The synset folders below ``ShapeNet/``, sorted (hidden entries and plain files skipped)."""
    folder = occ_dir(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def variant_synsets(root: Path, variant: str) -> list[str]:
    return present_synsets(root) if variant == "all" else [CATEGORIES[variant]]


def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of one npz file; DataError naming the file when it is absent, unreadable or lacks one."""
    if not path.is_file():
        raise DataError(f"occupancy file not found: expected {path}.")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in keys if key not in data.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)} (has {', '.join(data.files)}).")
            return {key: data[key] for key in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}).") from None


def read_queries(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(points (P, 3) float32 in the data set frame, occupancy (P,) float32 0/1) of a points(-near).npz file."""
    data = read_npz(path, ("points", "occupancies"))
    points = check_points(data["points"], path)
    if points.shape[1] != 3:
        raise DataError(f"{path}: expected (P, 3) points, got shape {points.shape}.")
    packed = np.asarray(data["occupancies"])
    if packed.dtype == np.uint8 and packed.ndim == 1:  # np.packbits of P booleans
        bits = np.unpackbits(packed)
        if len(bits) < len(points) or len(packed) != -(-len(points) // 8):
            raise DataError(f"{path}: occupancies hold {len(packed)} packed bytes, expected {-(-len(points) // 8)} "
                            f"for {len(points)} points.")  # fmt: skip
        occupancy = bits[: len(points)]
    elif packed.dtype == bool and packed.shape == (len(points),):  # unpacked booleans (ONet without --packbits)
        occupancy = packed
    else:
        raise DataError(f"{path}: occupancies must be np.packbits bytes (uint8) or (P,) booleans, got "
                        f"{packed.dtype} {packed.shape}.")  # fmt: skip
    return points * np.float32(FRAME_SCALE), occupancy.astype(np.float32)


def read_surface(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(xyz (S, 3), normal (S, 3)) float32 of a pointcloud.npz file, xyz in the data set frame."""
    data = read_npz(path, ("points", "normals"))
    xyz, normal = check_points(data["points"], path), check_points(data["normals"], path)
    if xyz.shape[1] != 3 or normal.shape != xyz.shape:
        raise DataError(f"{path}: expected (S, 3) points and normals, got {xyz.shape} and {normal.shape}.")
    return xyz * np.float32(FRAME_SCALE), normal


def read_depth(path: Path) -> np.ndarray:
    """(V, H, W) float32 depth images of a depth.npz file."""
    depth = np.asarray(read_npz(path, ("depth",))["depth"])
    if depth.ndim != 3 or 0 in depth.shape or not np.issubdtype(depth.dtype, np.floating):
        raise DataError(f"{path}: expected (V, H, W) float depth images, got {depth.dtype} {depth.shape}.")
    return depth.astype(np.float32)


@DATASETS.register("shapenet_occ")
class ShapeNetOcc(PointCloudDataset):
    """ShapeNet shapes with occupancy query points in the ONet layout; label = synset index of the 55."""

    name = "shapenet_occ"
    source = ("the preprocessed ShapeNet of Occupancy Networks (its README: bash scripts/download_data.sh, "
              "73.4 GB), https://github.com/autonomousvision/occupancy_networks")
    variants: ClassVar[tuple[str, ...]] = ("all", *CATEGORIES)
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    class_names: ClassVar[list[str]] = [SYNSET_NAMES[s] for s in SYNSETS]

    def __init__(self, root: Path, split: str, variant: str = "all", **options: Any) -> None:
        super().__init__(root, split, variant, **options)
        synsets = variant_synsets(self.root, variant)
        if not synsets:
            raise DataError(f"no synset folders found: expected {occ_dir(self.root)}/<synset>/{split}.lst.")
        self.models: list[tuple[str, str]] = []  # (synset, model id)
        for synset in synsets:
            if synset not in SYNSET_NAMES:
                raise DataError(f"{synset_dir(self.root, synset)}: not one of the 55 ShapeNet synset ids.")
            self.models += [(synset, model) for model in read_lines(list_path(self.root, synset, split))]
        if not self.models:
            raise DataError(f"no models in the {split} split: {list_path(self.root, synsets[0], split)} is empty.")
        self.labels = np.array([SYNSETS.index(s) for s, _ in self.models], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.models)

    def model_dir(self, i: int) -> Path:
        synset, model = self.models[self._check_index(i)]
        return synset_dir(self.root, synset) / model

    def load(self, i: int) -> Sample:
        i = self._check_index(i)
        folder = self.model_dir(i)
        xyz, normal = read_surface(folder / SURFACE_FILE)
        query, occupancy = read_queries(folder / POINTS_FILE)
        sample: Sample = {"xyz": xyz, "normal": normal, "label": np.asarray(self.labels[i], dtype=np.int64),
                          "query": query, "occupancy": occupancy}  # fmt: skip
        if (folder / NEAR_FILE).exists():
            sample["near_query"], sample["near_occupancy"] = read_queries(folder / NEAR_FILE)
        if (folder / DEPTH_FILE).exists():
            sample["view"] = read_depth(folder / DEPTH_FILE)
        sample["id"] = self.sample_id(i)
        return sample

    def sample_id(self, i: int) -> str:
        """``<synset>/<model id>``."""
        synset, model = self.models[self._check_index(i)]
        return f"{synset}/{model}"

    @classmethod
    def expected_files(cls, root: Path, variant: str = "all") -> list[Path]:
        if variant == "all":
            return [occ_dir(root)]
        return [list_path(root, CATEGORIES[variant], split) for split in cls.splits]

    @classmethod
    def light_check(cls, root: Path, variant: str = "all") -> tuple[list[str], dict[str, int | None]]:
        """Models per split (summed over the variant's synsets); a problem per absent list or model folder."""
        synsets = variant_synsets(root, variant)
        problems = [] if synsets else [f"no synset folders in {occ_dir(root)}"]
        problems += [f"{synset_dir(root, s)} is not one of the 55 ShapeNet synset ids" for s in synsets
                     if s not in SYNSET_NAMES]  # fmt: skip
        counts: dict[str, int | None] = {}
        for split in cls.splits:
            counts[split] = 0
            for synset in synsets:
                path = list_path(root, synset, split)
                if not path.is_file():
                    problems.append(f"{path} is missing")
                    continue
                models = read_lines(path)
                absent = [m for m in models if not (synset_dir(root, synset) / m / POINTS_FILE).is_file()]
                if absent:
                    problems.append(f"{len(absent)} model(s) of {path} have no {POINTS_FILE}, first {absent[0]}")
                counts[split] += len(models)
        return problems, counts

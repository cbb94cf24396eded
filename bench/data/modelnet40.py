"""ModelNet40 from ``modelnet40_normal_resampled`` and its ``modelnet40_{split}_8192pts_fps.dat`` caches.

Layout below the data root (reference/protocols.md 1.2): ``ModelNet/modelnet40_normal_resampled/`` holding
``modelnet40_shape_names.txt`` (label = line index), ``modelnet40_{train,test}.txt`` (ids such as
``airplane_0001``), ``<class>/<id>.txt`` (comma-separated x,y,z,nx,ny,nz) and the caches. A cache is a pickle of
``[list of (P, 6) float32 arrays, list of (1,) int32 labels]``, read through the restricted unpickler.

The loader returns ``pc_normalize``d xyz (centroid, then max norm: unit sphere); normals are dropped unless
``use_normals=True``. The train-time point shuffle and the 1k/8k FPS are transforms, chosen by the suite.
Sample ids are the shape stems of ``modelnet40_<split>.txt`` (``airplane_0001``; the cache is built in list
order); when the list is absent or lists another number of shapes than the cache holds, the cache index path
``<cache file stem>/<index>`` (``modelnet40_train_8192pts_fps/17``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from bench.data.base import PointCloudDataset, Sample, check_points, pc_normalize, read_lines
from bench.data.pickle_io import dump_pickle, restricted_load
from bench.data.prepare import prepare_step
from bench.errors import BenchError, DataError
from bench.registry import DATASETS
from extensions import ops

CLASS_NAMES = [
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
]  # fmt: skip
FOLDER = Path("ModelNet") / "modelnet40_normal_resampled"
log = logging.getLogger(__name__)
#: seed of the generator that draws each shape's FPS start index when a cache is built
CACHE_SEED = 0


def cache_path(folder: Path, split: str, npoints: int = 8192) -> Path:
    """``<folder>/modelnet40_<split>_<npoints>pts_fps.dat`` (the reference's ``modelnet%d_%s_%dpts_fps.dat``)."""
    return Path(folder) / f"modelnet40_{split}_{npoints}pts_fps.dat"


def shape_txt(folder: Path, shape_id: str) -> Path:
    """``airplane_0001`` -> ``<folder>/airplane/airplane_0001.txt`` (class names may contain underscores)."""
    return Path(folder) / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt"


def read_shape_txt(path: Path) -> np.ndarray:
    """One resampled shape: (P, 6) float32 x,y,z,nx,ny,nz; missing, malformed or non-finite -> DataError."""
    if not path.is_file():
        raise DataError(f"ModelNet40 shape file not found: expected {path}.")
    try:
        points = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: cannot parse comma-separated x,y,z,nx,ny,nz lines ({_bad_line(path) or exc}).") \
            from None
    return check_points(points, path, width=6)[:, :6]


def _bad_line(path: Path) -> str | None:
    """Where a txt file stops being comma-separated numbers, as ``line N`` counted from 1 like an editor (numpy's
    own messages count rows from 0 for a bad value and from 1 for a changed column count), with its text."""
    width = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.strip().split(",")
            try:
                [float(field) for field in fields]
            except ValueError:
                return f"line {number} is not numbers: {line.strip()[:80]!r}"
            if width is not None and len(fields) != width:
                return f"line {number} has {len(fields)} values where the lines before have {width}"
            width = len(fields)
    return None


def build_modelnet_cache(folder: Path, split: str, npoints: int = 8192) -> Path:
    """Build ``modelnet40_<split>_<npoints>pts_fps.dat`` from the txt files of ``folder``; return its path.

    Each listed shape is reduced by furthest point sampling (``extensions.ops``, start index drawn from
    ``np.random.default_rng(CACHE_SEED)`` in list order) to ``npoints``. A file with ``npoints`` points or FEWER
    (the shared fixture has 2,500) is kept whole, in file order. Labels are line indices in
    ``modelnet40_shape_names.txt``. Works on any folder in this layout, whatever classes it lists; the
    pickle is written atomically.
    """
    folder = Path(folder)
    names = read_lines(folder / "modelnet40_shape_names.txt")
    ids = read_lines(folder / f"modelnet40_{split}.txt")
    rng = np.random.default_rng(CACHE_SEED)
    points, labels = [], []
    for shape_id in ids:
        cls = shape_id.rsplit("_", 1)[0]
        if cls not in names:
            raise DataError(
                f"{folder / f'modelnet40_{split}.txt'}: shape {shape_id} has class {cls!r}, which is not in "
                f"{folder / 'modelnet40_shape_names.txt'}."
            )
        pts = read_shape_txt(shape_txt(folder, shape_id))
        if len(pts) > npoints:
            start = int(rng.integers(len(pts)))
            # the reference builds the cache with its numpy farthest_point_sample (random start, no origin skip:
            # ModelNetDataset.py L29-50), not the pointnet2 kernel, so the skip stays off here whatever the setting
            idx = ops.furthest_point_sample(torch.from_numpy(pts[None, :, :3].copy()), npoints, start=start,
                                            skip_origin=False)
            pts = pts[idx[0].numpy()]
        points.append(np.ascontiguousarray(pts, dtype=np.float32))
        labels.append(np.array([names.index(cls)], dtype=np.int32))
    out = cache_path(folder, split, npoints)
    dump_pickle([points, labels], out)
    return out


@prepare_step("modelnet40", label="ModelNet40 cache")
def prepare_modelnet40(root: Path, options: dict[str, str]) -> list[Path]:
    """``bench data prepare [modelnet40]``: both splits' ``.dat`` caches from the txt layout below ``root``."""
    folder = Path(root) / FOLDER
    if not folder.exists():
        raise BenchError(f"nothing to prepare: {folder} does not exist.")
    return [build_modelnet_cache(folder, split) for split in ("train", "test")]


def read_cache(path: Path, num_classes: int = len(CLASS_NAMES)) -> tuple[list[np.ndarray], np.ndarray]:
    """Load and validate a ``.dat`` cache -> (list of (P, 6) float32, labels int64 (N,))."""
    obj = restricted_load(path)
    if not (isinstance(obj, (list, tuple)) and len(obj) == 2 and all(isinstance(x, (list, tuple)) for x in obj)):
        raise DataError(f"{path}: expected a pickle of [list of point arrays, list of labels].")
    points, labels = obj
    if len(points) != len(labels):
        raise DataError(f"{path}: {len(points)} point arrays but {len(labels)} labels.")
    checked = [check_points(p, path, index=i, width=6) for i, p in enumerate(points)]
    try:
        flat = np.array([int(np.asarray(lab).reshape(-1)[0]) for lab in labels], dtype=np.int64)
    except (IndexError, TypeError, ValueError):
        raise DataError(f"{path}: every label must be a (1,) integer array.") from None
    if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in 0..{num_classes - 1}, found {flat.min()}..{flat.max()}.")
    return checked, flat


@DATASETS.register("modelnet40")
class ModelNet40(PointCloudDataset):
    """ModelNet40 classification from the ``.dat`` cache (built from the txt files when missing).

    Options: ``use_normals`` (add ``normal``), ``npoints`` (cache size, 8192), ``folder`` (explicit
    ``modelnet40_normal_resampled`` folder instead of the one below the data root).
    """

    name = "modelnet40"
    source = ("modelnet40_normal_resampled (the PointNet++ resampled txt) from Point-BERT's DATASET.md, "
              "https://github.com/lulutang0608/Point-BERT, as Point-MAE's DATASET.md says")
    class_names: ClassVar[list[str]] = CLASS_NAMES
    option_defaults: ClassVar[dict[str, Any]] = {"use_normals": False, "npoints": 8192, "folder": None}

    def __init__(self, root: Path, split: str, variant: str = "default", **options: Any) -> None:
        super().__init__(root, split, variant, **options)
        folder = self.options["folder"]
        self.folder = Path(folder) if folder is not None else self.root / FOLDER
        self.path = cache_path(self.folder, split, self.options["npoints"])
        if not self.path.is_file():
            build_modelnet_cache(self.folder, split, self.options["npoints"])
        self.points, self.labels = read_cache(self.path)
        self.ids = self._read_ids()

    def _read_ids(self) -> list[str]:
        """The shape stems of ``modelnet40_<split>.txt``; index paths when it is absent or does not fit the cache."""
        listing = self.folder / f"modelnet40_{self.split}.txt"
        ids = read_lines(listing) if listing.is_file() else []
        if len(ids) == len(self.points):
            return ids
        if ids:
            log.warning("%s lists %d shapes but %s holds %d: sample ids are cache indices (%s/<index>); delete the "
                        "cache to rebuild it from the list.", listing, len(ids), self.path, len(self.points),
                        self.path.stem)  # fmt: skip
        return [f"{self.path.stem}/{i}" for i in range(len(self.points))]

    def __len__(self) -> int:
        return len(self.points)

    def sample_id(self, i: int) -> str:
        """The shape stem (``airplane_0001``), or ``<cache file stem>/<index>`` when the split has no list."""
        return self.ids[self._check_index(i)]

    def load(self, i: int) -> Sample:
        i = self._check_index(i)
        pts = self.points[i]
        sample = {"xyz": pc_normalize(pts[:, :3]), "label": np.asarray(self.labels[i], dtype=np.int64),
                  "id": self.ids[i]}
        if self.options["use_normals"]:
            sample["normal"] = np.ascontiguousarray(pts[:, 3:6])
        return sample

    @classmethod
    def expected_files(cls, root: Path, variant: str = "default") -> list[Path]:
        folder = Path(root) / FOLDER
        lists = [folder / "modelnet40_shape_names.txt"] + [folder / f"modelnet40_{s}.txt" for s in cls.splits]
        return lists + [cache_path(folder, s) for s in cls.splits]

    @classmethod
    def is_present(cls, root: Path, variant: str = "default") -> bool:
        """Present when the lists exist and each split has its cache or every txt it lists (cache buildable)."""
        folder = Path(root) / FOLDER
        if not all(p.is_file() for p in cls.expected_files(root, variant)[:3]):
            return False
        for split in cls.splits:
            if not cache_path(folder, split).is_file():
                ids = read_lines(folder / f"modelnet40_{split}.txt")
                if not all(shape_txt(folder, i).is_file() for i in ids):
                    return False
        return True

    @classmethod
    def light_check(cls, root: Path, variant: str = "default") -> tuple[list[str], dict[str, int | None]]:
        folder = Path(root) / FOLDER
        problems, counts = [], {}
        names = read_lines(folder / "modelnet40_shape_names.txt")
        if len(names) != len(CLASS_NAMES):
            problems.append(f"{folder / 'modelnet40_shape_names.txt'}: {len(names)} names, expected 40")
        for split in cls.splits:
            counts[split] = len(read_lines(folder / f"modelnet40_{split}.txt"))
            if not cache_path(folder, split).is_file():
                problems.append(f"{cache_path(folder, split)} missing: it will be built from the txt files")
        return problems, counts

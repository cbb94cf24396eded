"""ShapeNetPart (part segmentation) from ``shapenetcore_partanno_segmentation_benchmark_v0_normal``.

Layout below the data root (reference/protocols.md 1.5): ``<FOLDER>/synsetoffset2category.txt`` (``<Name>
<synset>`` per line, whitespace separated; category index = line order), ``<FOLDER>/<synset>/<id>.txt`` (7
whitespace-separated columns per point: x y z nx ny nz part_label) and
``<FOLDER>/train_test_split/shuffled_{train,val,test}_file_list.json`` (lists of ``shape_data/<synset>/<id>``).

Conventions (the reference ``PartNormalDataset``):
- splits ``trainval`` (train + val lists: what the papers train on), ``train``, ``val``, ``test``; shapes ordered
  by category (file order), then by id, as the reference lists each category folder sorted;
- ``xyz`` is ``pc_normalize``d over the WHOLE shape (centroid, max norm: unit sphere) before any resampling; the
  reference's random 2048-of-N draw with replacement is the ``resample`` transform, chosen by the suite;
- ``id`` is ``<synset>/<file stem>`` (``02691156/1a04e3eab45ca15dd86060f189eb133``);
- ``seg`` (N,) int64 global part ids (0-49, official ranges in :data:`SEG_CLASSES`), ``label`` = ``category``
  = the category index (int64); ``normal`` (N, 3) only with ``normals=True`` (the reference default is off);
- parsed shapes are cached in memory (``cache=True``, as the reference's 20000-shape cache) as float32 xyz and
  uint8 part ids;
- a malformed txt raises DataError naming the file and line; a part id outside the shape's category range too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data.base import PointCloudDataset, Sample, pc_normalize
from bench.errors import DataError
from bench.registry import DATASETS

FOLDER = Path("shapenetcore_partanno_segmentation_benchmark_v0_normal")
#: (name, synset) in the official ``synsetoffset2category.txt`` order: the category index is the position
CATEGORIES: list[tuple[str, str]] = [
    ("Airplane", "02691156"), ("Bag", "02773838"), ("Cap", "02954340"), ("Car", "02958343"),
    ("Chair", "03001627"), ("Earphone", "03261776"), ("Guitar", "03467517"), ("Knife", "03624134"),
    ("Lamp", "03636649"), ("Laptop", "03642806"), ("Motorbike", "03790512"), ("Mug", "03797390"),
    ("Pistol", "03948459"), ("Rocket", "04099429"), ("Skateboard", "04225987"), ("Table", "04379243"),
]  # fmt: skip
CATEGORY_NAMES: list[str] = [name for name, _ in CATEGORIES]
#: part counts per category in CATEGORIES order (``seg_classes`` of the reference ``segmentation/main.py``)
_PART_COUNTS = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)
_OFFSETS = np.concatenate([[0], np.cumsum(_PART_COUNTS)])
#: category name -> its global part ids (Airplane 0-3 ... Table 47-49)
SEG_CLASSES: dict[str, list[int]] = {
    name: list(range(int(_OFFSETS[i]), int(_OFFSETS[i + 1]))) for i, name in enumerate(CATEGORY_NAMES)
}
#: per category index, its part ids (the form the metrics and the protocol use)
CATEGORY_PARTS: list[list[int]] = [SEG_CLASSES[name] for name in CATEGORY_NAMES]
NUM_CATEGORIES, NUM_PARTS = len(CATEGORIES), int(_OFFSETS[-1])
SPLIT_LISTS = {"trainval": ("train", "val"), "train": ("train",), "val": ("val",), "test": ("test",)}
COLUMNS = 7


def split_json(root: Path, name: str) -> Path:
    return Path(root) / FOLDER / "train_test_split" / f"shuffled_{name}_file_list.json"


def category_file(root: Path) -> Path:
    return Path(root) / FOLDER / "synsetoffset2category.txt"


def shape_path(root: Path, synset: str, shape_id: str) -> Path:
    return Path(root) / FOLDER / synset / f"{shape_id}.txt"


def read_categories(root: Path) -> list[str]:
    """Synsets in file order; the file must list the 16 official categories in the official order."""
    path = category_file(root)
    if not path.is_file():
        raise DataError(f"ShapeNetPart category file not found: expected {path}.")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    for k, parts in enumerate(lines):
        expected = CATEGORIES[k] if k < NUM_CATEGORIES else None
        if len(parts) != 2 or tuple(parts) != expected:
            raise DataError(f"{path}, line {k + 1}: expected {' '.join(expected) if expected else 'no more lines'}"
                            f" (the 16 official categories in order), got {' '.join(parts)!r}.")
    if len(lines) != NUM_CATEGORIES:
        raise DataError(f"{path}: lists {len(lines)} categories, expected the {NUM_CATEGORIES} official ones.")
    return [synset for _, synset in lines]


def read_split(root: Path, name: str) -> list[tuple[str, str]]:
    """(synset, id) entries of ``shuffled_<name>_file_list.json`` (``shape_data/<synset>/<id>`` strings)."""
    path = split_json(root, name)
    if not path.is_file():
        raise DataError(f"ShapeNetPart split list not found: expected {path}.")
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable JSON list ({exc}).") from None
    out = []
    for k, entry in enumerate(entries if isinstance(entries, list) else [entries]):
        parts = entry.split("/") if isinstance(entry, str) else []
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise DataError(f"{path}: entry {k} is {entry!r}, expected 'shape_data/<synset>/<id>'.")
        out.append((parts[1], parts[2]))
    return out


def read_part_txt(path: Path, parts: list[int]) -> np.ndarray:
    """(P, 7) float32 rows of one shape; DataError naming the file and line when malformed or off-category."""
    if not path.is_file():
        raise DataError(f"ShapeNetPart shape file not found: expected {path}.")
    try:
        data = np.loadtxt(path, dtype=np.float32, ndmin=2)
        ok = data.shape[1] == COLUMNS and len(data) > 0 and bool(np.isfinite(data).all())
    except ValueError:
        ok = False
    labels = data[:, -1] if ok else None
    if ok and bool(np.all((labels == np.round(labels)) & (labels >= parts[0]) & (labels <= parts[-1]))):
        return data
    raise DataError(_first_bad_line(path, parts))


def _first_bad_line(path: Path, parts: list[int]) -> str:
    """The message for the first line of ``path`` that is not 6 finite floats and a part id of ``parts``."""
    lines = path.read_text(errors="replace").splitlines()
    for k, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != COLUMNS or not np.isfinite(values).all():
            return f"{path}, line {k}: expected {COLUMNS} numbers (x y z nx ny nz part), got {line.strip()[:80]!r}."
        if values[-1] != int(values[-1]) or int(values[-1]) not in parts:
            return (f"{path}, line {k}: part label {fields[-1]} is not one of this category's parts "
                    f"{parts[0]}-{parts[-1]}.")
    return f"{path}: no points (expected lines of {COLUMNS} numbers: x y z nx ny nz part)."


@DATASETS.register("shapenetpart")
class ShapeNetPart(PointCloudDataset):
    """ShapeNetPart shapes with per-point part labels; label = category index. Options ``normals``, ``cache``."""

    name = "shapenetpart"
    source = ("https://shapenet.cs.stanford.edu/media/shapenetcore_partanno_segmentation_benchmark_v0_normal.zip "
              "(the link in Point-MAE's DATASET.md)")
    splits: ClassVar[tuple[str, ...]] = tuple(SPLIT_LISTS)
    class_names: ClassVar[list[str]] = CATEGORY_NAMES
    option_defaults: ClassVar[dict[str, Any]] = {"normals": False, "cache": True}
    #: per category index, its global part ids (what the partseg protocol and metrics read)
    category_parts: ClassVar[list[list[int]]] = CATEGORY_PARTS

    def __init__(self, root: Path, split: str, variant: str = "default", **options: Any) -> None:
        super().__init__(root, split, variant, **options)
        synsets = read_categories(self.root)
        wanted = {entry for name in SPLIT_LISTS[split] for entry in read_split(self.root, name)}
        for synset, shape_id in wanted:
            if synset not in synsets:
                raise DataError(f"{split_json(self.root, SPLIT_LISTS[split][0])} (or its pair): shape "
                                f"shape_data/{synset}/{shape_id} has a synset that is not a ShapeNetPart category.")
        self.items = sorted(wanted, key=lambda e: (synsets.index(e[0]), e[1]))
        self.categories = np.array([synsets.index(s) for s, _ in self.items], dtype=np.int64)
        self._cache: dict[int, tuple[np.ndarray, ...]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def path(self, i: int) -> Path:
        synset, shape_id = self.items[self._check_index(i)]
        return shape_path(self.root, synset, shape_id)

    def load(self, i: int) -> Sample:
        i = self._check_index(i)
        if i not in self._cache:
            data = read_part_txt(self.path(i), CATEGORY_PARTS[int(self.categories[i])])
            arrays = (pc_normalize(data[:, :3]), data[:, 3:6].copy(), data[:, -1].astype(np.uint8))
            if not self.options["cache"]:
                return self._sample(i, arrays)
            self._cache[i] = arrays
        return self._sample(i, self._cache[i])

    def sample_id(self, i: int) -> str:
        """``<synset>/<file stem>``."""
        synset, shape_id = self.items[self._check_index(i)]
        return f"{synset}/{shape_id}"

    def _sample(self, i: int, arrays: tuple[np.ndarray, ...]) -> Sample:
        xyz, normal, seg = arrays
        label = np.asarray(int(self.categories[i]), dtype=np.int64)
        out = {"xyz": xyz, "seg": seg.astype(np.int64), "label": label, "category": label.copy(),
               "id": self.sample_id(i)}
        if self.options["normals"]:
            out["normal"] = normal
        return out

    @classmethod
    def expected_files(cls, root: Path, variant: str = "default") -> list[Path]:
        return [category_file(root)] + [split_json(root, name) for name in ("train", "val", "test")]

    @classmethod
    def light_check(cls, root: Path, variant: str = "default") -> tuple[list[str], dict[str, int | None]]:
        """Category file, split lists, and that every listed shape's txt exists (counts: trainval and test)."""
        read_categories(root)
        problems, counts = [], {}
        for split in ("trainval", "test"):
            entries = [e for name in SPLIT_LISTS[split] for e in read_split(root, name)]
            counts[split] = len(entries)
            absent = [e for e in entries if not shape_path(root, *e).is_file()]
            if absent:
                example = shape_path(root, *absent[0])
                problems.append(f"{len(absent)} shapes listed for {split} are missing, e.g. {example}")
        return problems, counts

"""Few-shot ModelNet40 (reference/protocols.md 1.4, 2.4): ``ModelNetFewshot/<way>way_<shot>shot/<fold>.pkl``.

A fold file is a pickle of ``{"train": [...], "test": [...]}``; each item is a tuple ``(points, new_label,
orig_label)``: ``points`` a (P, 6) float32 x,y,z,nx,ny,nz array taken from the ModelNet40 ``*_8192pts_fps.dat``
caches (P = 8192 on the real data), ``new_label`` in [0, way), ``orig_label`` the 0..39 ModelNet40 class. Files
are read through the restricted unpickler.

Folder spelling: the reference loader and generator build ``f"{way}way_{shot}shot"`` (``5way_10shot``), while
Point-BERT's DATASET.md draws ``5way10shot``; both are accepted (the underscore one first) and
:func:`write_folds` writes the underscore one.

Loader: ``pc_normalize`` on xyz (centroid, then max norm), normals dropped, label = ``new_label``. The suite's
classifier keeps 40 outputs like the reference (``cls_dim: 40``). Variants are the four settings; the fold is the
``fold`` option, which the finetune protocol sets from the job's seed (:attr:`ModelNetFewshot.seed_option`): in
the few-shot suite, seed k IS fold k. Sample ids are the index path ``<way>way_<shot>shot/<fold>/<split>/<index>``
(``5way_10shot/3/train/17``), whatever the folder spelling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.data import modelnet40
from bench.data.base import PointCloudDataset, Sample, check_points, pc_normalize
from bench.data.pickle_io import dump_pickle, restricted_load
from bench.data.prepare import prepare_step
from bench.errors import BenchError, DataError
from bench.registry import DATASETS

FOLDER = "ModelNetFewshot"
#: variant -> (way, shot), the four settings every paper reports
SETTINGS: dict[str, tuple[int, int]] = {
    "5way10shot": (5, 10), "5way20shot": (5, 20), "10way10shot": (10, 10), "10way20shot": (10, 20),
}  # fmt: skip
FOLDS = 10
#: test shapes per drawn class (reference generator ``eval_sample=20``)
TEST_PER_CLASS = 20

Item = tuple[np.ndarray, int, int]


def setting_dirs(root: Path, variant: str) -> list[Path]:
    """Candidate folders of a setting: the reference code's ``5way_10shot``, then DATASET.md's ``5way10shot``."""
    way, shot = SETTINGS[variant]
    base = Path(root) / FOLDER
    return [base / f"{way}way_{shot}shot", base / variant]


def fold_path(root: Path, variant: str, fold: int) -> Path:
    """``<root>/ModelNetFewshot/<setting>/<fold>.pkl`` in the first spelling that exists (the reference's if none)."""
    candidates = [folder / f"{fold}.pkl" for folder in setting_dirs(root, variant)]
    return next((p for p in candidates if p.is_file()), candidates[0])


def _as_int(value: Any, path: Path, where: str) -> int:
    try:
        arr = np.asarray(value)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError
        return int(arr.reshape(-1)[0])
    except (TypeError, ValueError):
        raise DataError(f"{path}, {where}: expected an integer label, got {value!r}.") from None


def read_fold(path: Path, way: int | None = None) -> dict[str, list[Item]]:
    """Load and validate one fold pickle -> {"train": items, "test": items} with (P, >=3) float32 points."""
    obj = restricted_load(path)
    if not (isinstance(obj, dict) and all(isinstance(obj.get(s), (list, tuple)) for s in ("train", "test"))):
        raise DataError(f'{path}: expected a pickle of {{"train": [...], "test": [...]}} (few-shot fold format).')
    out: dict[str, list[Item]] = {}
    for split in ("train", "test"):
        items = []
        for i, item in enumerate(obj[split]):
            where = f"{split} item {i}"
            if not (isinstance(item, (list, tuple)) and len(item) == 3):
                raise DataError(f"{path}, {where}: expected a (points, new_label, orig_label) tuple.")
            points = check_points(item[0], path, index=i, width=3)
            new, orig = _as_int(item[1], path, where), _as_int(item[2], path, where)
            if new < 0 or (way is not None and new >= way) or not 0 <= orig < len(modelnet40.CLASS_NAMES):
                raise DataError(f"{path}, {where}: labels ({new}, {orig}) outside [0, {way}) x [0, 40).")
            items.append((points, new, orig))
        out[split] = items
    return out


def make_fold(train: tuple[list[np.ndarray], np.ndarray], test: tuple[list[np.ndarray], np.ndarray], way: int,
              shot: int, rng: np.random.Generator, *, strict: bool = True, source: str = "") -> dict[str, list[Item]]:
    """One fold drawn like the reference generator: ``way`` classes at random among the train split's classes;
    per class (new label = draw order) ``shot`` random train shapes and ``TEST_PER_CLASS`` random test shapes;
    both lists shuffled. ``strict=False`` (the stand-in) clamps: all classes when fewer than ``way`` exist, and
    every shape of a class that has fewer than asked; ``strict=True`` raises DataError naming ``source``."""
    classes = np.unique(train[1])
    if strict and len(classes) < way:
        raise DataError(f"{source}: {len(classes)} classes present, a {way}-way fold needs {way}.")
    fold: dict[str, list[Item]] = {"train": [], "test": []}
    for new, orig in enumerate(rng.permutation(classes)[:way]):
        for split, (points, labels), count in (("train", train, shot), ("test", test, TEST_PER_CLASS)):
            members = np.flatnonzero(labels == orig)
            if strict and len(members) < count:
                raise DataError(f"{source}: class {int(orig)} has {len(members)} {split} shapes, the fold needs "
                                f"{count}.")  # fmt: skip
            fold[split] += [(points[i], new, int(orig)) for i in rng.permutation(members)[:count]]
    return {split: [items[k] for k in rng.permutation(len(items))] for split, items in fold.items()}


def write_folds(train_dat: Path, test_dat: Path, root: Path, seed: int = 0, strict: bool = True) -> list[Path]:
    """Every setting x fold from two ModelNet40 ``.dat`` caches into ``<root>/ModelNetFewshot/<way>way_<shot>shot/``.

    Fold f of (way, shot) draws from ``np.random.default_rng([seed, way, shot, f])``: deterministic, and each fold
    independent of the others (the reference generator used the unseeded ``random`` module).
    """
    train, test = modelnet40.read_cache(train_dat), modelnet40.read_cache(test_dat)
    written = []
    for variant, (way, shot) in SETTINGS.items():
        for fold in range(FOLDS):
            rng = np.random.default_rng([seed, way, shot, fold])
            items = make_fold(train, test, way, shot, rng, strict=strict, source=f"{train_dat} / {test_dat}")
            path = setting_dirs(root, variant)[0] / f"{fold}.pkl"
            dump_pickle(items, path)
            written.append(path)
    return written


def prepare_fewshot(root: Path, seed: int = 0) -> list[Path]:
    """``bench data prepare fewshot``: the folds from ``<root>/ModelNet/modelnet40_normal_resampled``'s caches
    (built from its txt files first when missing), strict counts (way classes, shot train + 20 test each)."""
    folder = Path(root) / modelnet40.FOLDER
    if not folder.is_dir():
        raise DataError(f"cannot prepare the few-shot folds: {folder} (ModelNet40) does not exist.")
    caches = []
    for split in ("train", "test"):
        path = modelnet40.cache_path(folder, split)
        caches.append(path if path.is_file() else modelnet40.build_modelnet_cache(folder, split))
    return write_folds(caches[0], caches[1], Path(root), seed=seed, strict=True)


@prepare_step("fewshot", label="few-shot fold")
def prepare_fewshot_step(root: Path, options: dict[str, str]) -> list[Path]:
    """``bench data prepare fewshot [seed=0]``: :func:`prepare_fewshot` with the draw seed given on the command."""
    seed = options.get("seed", "0")
    if not seed.isdigit():
        raise BenchError(f"seed={seed}: the few-shot draw seed must be a non-negative integer.")
    return prepare_fewshot(root, seed=int(seed))


@DATASETS.register("modelnet_fewshot")
class ModelNetFewshot(PointCloudDataset):
    """One fold of one few-shot setting. Options: ``fold`` (0..9), ``use_normals`` (add ``normal``)."""

    name = "modelnet_fewshot"
    source = ("the folds every paper uses, from Point-BERT's DATASET.md, https://github.com/lulutang0608/Point-BERT "
              "(or bench data prepare fewshot draws new ones)")
    variants: ClassVar[tuple[str, ...]] = tuple(SETTINGS)
    class_names: ClassVar[list[str]] = modelnet40.CLASS_NAMES
    option_defaults: ClassVar[dict[str, Any]] = {"fold": 0, "use_normals": False}
    #: the dataset option that the job's seed sets (the finetune protocol reads it): seed k is fold k
    seed_option: ClassVar[str] = "fold"

    def __init__(self, root: Path, split: str, variant: str = "5way10shot", **options: Any) -> None:
        super().__init__(root, split, variant, **options)
        fold = self.options["fold"]
        if not 0 <= fold < FOLDS:
            raise DataError(f"few-shot fold {fold} does not exist: folds are 0..{FOLDS - 1} (the suite's seeds).")
        self.path = fold_path(self.root, variant, fold)
        self.items = read_fold(self.path, way=SETTINGS[variant][0])[split]

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> Sample:
        points, new_label, _ = self.items[self._check_index(i)]
        sample = {"xyz": pc_normalize(points[:, :3]), "label": np.asarray(new_label, dtype=np.int64),
                  "id": self.sample_id(i)}
        if self.options["use_normals"]:
            if points.shape[1] < 6:
                raise DataError(f"{self.path}: use_normals needs (P, 6) points, got {points.shape}.")
            sample["normal"] = np.ascontiguousarray(points[:, 3:6])
        return sample

    def sample_id(self, i: int) -> str:
        """``<way>way_<shot>shot/<fold>/<split>/<index>``."""
        way, shot = SETTINGS[self.variant]
        return f"{way}way_{shot}shot/{self.options['fold']}/{self.split}/{self._check_index(i)}"

    @classmethod
    def expected_files(cls, root: Path, variant: str = "5way10shot") -> list[Path]:
        return [fold_path(root, variant, fold) for fold in range(FOLDS)]

    @classmethod
    def light_check(cls, root: Path, variant: str = "5way10shot") -> tuple[list[str], dict[str, int | None]]:
        """Counts of fold 0; a note when it holds fewer classes / shots than the setting (the clamped stand-in)."""
        way, shot = SETTINGS[variant]
        path = fold_path(root, variant, 0)
        fold = read_fold(path, way=way)
        problems = []
        for split, want in (("train", shot), ("test", TEST_PER_CLASS)):
            per_class = np.bincount([new for _, new, _ in fold[split]], minlength=way)
            held = per_class[per_class > 0]
            if (per_class != want).any():
                shapes = f"{held.min()}..{held.max()}" if held.size else "no"
                problems.append(f"{path}: {split} holds {held.size} classes with {shapes} shapes each, not {way} x "
                                f"{want} (the stand-in clamps to the classes and shapes it has)")  # fmt: skip
        return problems, {split: len(fold[split]) for split in cls.splits}

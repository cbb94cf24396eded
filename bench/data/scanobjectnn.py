"""ScanObjectNN (OBJ_BG, OBJ_ONLY, PB_T50_RS "hardest") from the official h5 files.

Layout below the data root (reference/protocols.md 1.3):
  ScanObjectNN/main_split/{training,test}_objectdataset.h5                          variant objbg
  ScanObjectNN/main_split_nobg/{training,test}_objectdataset.h5                     variant objonly
  ScanObjectNN/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5     variant hardest
Each h5 holds ``data`` (N, P, 3) (P = 2048 officially) and ``label`` (N,) in 0..14. Coordinates are returned
as stored: **no normalisation** (the reference applies no pc_norm to ScanObjectNN). The file is read once.
Sample ids are ``<h5 file stem>/<index>`` (``training_objectdataset_augmentedrot_scale75/17``): objbg and objonly
share stems, as their files hold the same objects in the same order.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from bench.data.base import PointCloudDataset, Sample
from bench.errors import DataError
from bench.registry import DATASETS

CLASS_NAMES = [
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
]  # fmt: skip
_FOLDERS = {"objbg": "main_split", "objonly": "main_split_nobg", "hardest": "main_split"}
_SUFFIX = {"objbg": "", "objonly": "", "hardest": "_augmentedrot_scale75"}
_STEM = {"train": "training", "test": "test"}


def h5_path(root: Path, variant: str, split: str) -> Path:
    """Exact path of the h5 file of ``variant`` / ``split`` below the data root."""
    name = f"{_STEM[split]}_objectdataset{_SUFFIX[variant]}.h5"
    return Path(root) / "ScanObjectNN" / _FOLDERS[variant] / name


def read_h5(path: Path, num_classes: int = len(CLASS_NAMES)) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one ScanObjectNN h5 -> (data float32 (N, P, 3), label int64 (N,))."""
    if not path.is_file():
        raise DataError(f"ScanObjectNN file not found: expected {path}.")
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in ("data", "label") if key not in f]
            if missing:
                raise DataError(
                    f"{path}: the h5 file has no {' or '.join(repr(k) for k in missing)} dataset "
                    f"(found keys: {sorted(f.keys())}); a ScanObjectNN file needs 'data' (N, P, 3) and 'label' (N,)."
                )
            data, label = np.asarray(f["data"]), np.asarray(f["label"])
    except OSError as exc:
        raise DataError(f"{path}: not a readable h5 file ({exc}).") from None
    if data.ndim != 3 or data.shape[2] != 3 or data.shape[1] == 0:
        raise DataError(f"{path}: 'data' must have shape (N, P, 3), got {data.shape}.")
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if label.shape != (data.shape[0],):
        raise DataError(f"{path}: 'label' must have shape ({data.shape[0]},) to match 'data', got {label.shape}.")
    if not np.issubdtype(data.dtype, np.number) or not np.issubdtype(label.dtype, np.number):
        raise DataError(f"{path}: 'data' and 'label' must be numeric, got {data.dtype} and {label.dtype}.")
    bad = np.flatnonzero(~np.isfinite(data).all(axis=(1, 2)))
    if bad.size:
        raise DataError(f"{path}: sample {int(bad[0])} has NaN or inf coordinates ({bad.size} such samples).")
    label = label.astype(np.int64)
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in 0..{num_classes - 1}, found {label.min()}..{label.max()}.")
    return data.astype(np.float32, copy=False), label


@DATASETS.register("scanobjectnn")
class ScanObjectNN(PointCloudDataset):
    """ScanObjectNN classification (15 classes), raw h5 coordinates, 2048 points per object officially."""

    name = "scanobjectnn"
    source = "https://hkust-vgd.github.io/scanobjectnn/ (the project page; the download follows its terms-of-use form)"
    variants: ClassVar[tuple[str, ...]] = ("objbg", "objonly", "hardest")
    class_names: ClassVar[list[str]] = CLASS_NAMES

    def __init__(self, root: Path, split: str, variant: str = "objbg", **options: object) -> None:
        super().__init__(root, split, variant, **options)
        self.path = h5_path(self.root, variant, split)
        self.data, self.labels = read_h5(self.path)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def load(self, i: int) -> Sample:
        i = self._check_index(i)
        return {"xyz": self.data[i], "label": np.asarray(self.labels[i], dtype=np.int64), "id": self.sample_id(i)}

    def sample_id(self, i: int) -> str:
        """``<h5 file stem>/<index>``."""
        return f"{self.path.stem}/{self._check_index(i)}"

    @classmethod
    def expected_files(cls, root: Path, variant: str = "objbg") -> list[Path]:
        return [h5_path(Path(root), variant, split) for split in cls.splits]

    @classmethod
    def light_check(cls, root: Path, variant: str = "objbg") -> tuple[list[str], dict[str, int | None]]:
        problems: list[str] = []
        counts: dict[str, int | None] = {}
        for split in cls.splits:
            path = h5_path(Path(root), variant, split)
            counts[split] = None
            try:
                with h5py.File(path, "r") as f:
                    if "data" not in f or "label" not in f:
                        problems.append(f"{path}: missing 'data' or 'label' (keys: {sorted(f.keys())})")
                        continue
                    shape, n_label = f["data"].shape, f["label"].shape[0]
            except OSError as exc:
                problems.append(f"{path}: not a readable h5 file ({exc})")
                continue
            if len(shape) != 3 or shape[2] != 3 or shape[0] != n_label:
                problems.append(f"{path}: 'data' {shape} and 'label' ({n_label},) do not fit (N, P, 3) / (N,)")
            counts[split] = int(shape[0])
        return problems, counts

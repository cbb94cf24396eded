"""Dataset contracts: raw point-cloud data sets, the transformed view the trainer reads, and the factory.

Conventions:
- ``root`` is the DATA ROOT; each set lives below it in its official layout (reference/protocols.md section 1).
- ``load(i)`` returns the raw sample as numpy: ``xyz`` float32 (N, 3), ``label`` int64 scalar array, plus
  ``normal`` float32 (N, 3) where the set has normals and they are asked for, and ``id`` (a ``str``): the
  sample's stable identifier in the official layout, a file stem or an index path (``<file stem>/<index>``), the
  same on every load and unique within a split (``sample_id(i)`` gives it without loading the arrays). Side data
  (:mod:`bench.data.side`) is keyed by it. Transforms pass it through unchanged; :func:`to_tensors` keeps it a
  ``str``, so the default collate gives a batch a list of ids.
- Randomness lives only in transforms: :class:`TransformedDataset` seeds one generator per sample with
  ``np.random.default_rng([seed, epoch, index])``, so a sample's augmentation does not depend on the worker
  count or the order in which samples are drawn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.errors import ConfigError, DataError
from bench.registry import DATASETS, did_you_mean

#: a raw or transformed sample: numpy arrays by key, plus the ``id`` str
Sample = dict[str, Any]
Transform = Callable[[Sample, np.random.Generator], Sample]


class PointCloudDataset(Dataset, ABC):
    """A raw data set in its official layout below a data root; subclasses register in ``DATASETS``.

    Hooks the protocols read (declared here with their defaults, so no caller probes for undeclared attributes):

    - ``seed_option``: the option the job's seed is passed as (few-shot: ``"fold"``, seed k is fold k); None: the
      seed sets no option.
    - ``category_parts``: per category index, its global part ids (ShapeNetPart); ``[]``: not a part data set.
    - :meth:`class_weights`: per-class loss weights from the split's labels (S3DIS: its ``labelweights``); None:
      unweighted.
    - :meth:`rooms`: ``(name, xyz, labels)`` of every whole scene of the split (S3DIS); the default raises
      DataError, the set has no rooms.
    - :meth:`sample_id`: the ``id`` of sample ``i`` (see the module docstring); the default loads the sample.
    """

    name: ClassVar[str]
    variants: ClassVar[tuple[str, ...]] = ("default",)
    splits: ClassVar[tuple[str, ...]] = ("train", "test")
    class_names: ClassVar[list[str]] = []
    #: option name -> default value; the default's type is the accepted type (None: a path, or None)
    option_defaults: ClassVar[dict[str, Any]] = {}
    #: the option that the job's seed is passed as (None: the seed sets no data set option)
    seed_option: ClassVar[str | None] = None
    #: per category index, its global part ids (part segmentation sets; [] for the others)
    category_parts: ClassVar[list[list[int]]] = []
    #: where the official files come from (URL or project page, as text: nothing is downloaded; bench data check)
    source: ClassVar[str] = ""

    def __init__(self, root: Path, split: str, variant: str = "default", **options: Any) -> None:
        _check_choice(f"{self.name} split", split, self.splits)
        _check_choice(f"{self.name} variant", variant, self.variants)
        self.root = Path(root)
        self.split = split
        self.variant = variant
        self.options = self._check_options(options)

    @abstractmethod
    def __len__(self) -> int:
        """Number of samples in this split."""

    @abstractmethod
    def load(self, i: int) -> Sample:
        """The raw sample ``i`` (numpy arrays and its ``id``, no augmentation)."""

    def __getitem__(self, i: int) -> Sample:
        return self.load(i)

    def sample_id(self, i: int) -> str:
        """The stable ``id`` of sample ``i``; subclasses override it to avoid loading the arrays."""
        return str(self.load(i)["id"])

    def class_weights(self) -> np.ndarray | None:
        """Per-class loss weights (float32, one per class) of this split, or None (the default: unweighted)."""
        return None

    def rooms(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, xyz (N, 3), labels (N,)) of every whole room of the split, for whole-scene evaluation."""
        raise DataError(f"data set {self.name} has no rooms: whole-room evaluation needs a scene data set "
                        "(one that implements rooms(), such as s3dis).")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    @abstractmethod
    def expected_files(cls, root: Path, variant: str = "default") -> list[Path]:
        """The files this variant needs below ``root`` (exact paths, for `bench data check`)."""

    @classmethod
    def is_present(cls, root: Path, variant: str = "default") -> bool:
        return all(p.exists() for p in cls.expected_files(root, variant))

    @classmethod
    def light_check(cls, root: Path, variant: str = "default") -> tuple[list[str], dict[str, int | None]]:
        """Cheap validation of a present variant: (problems, number of samples per split)."""
        return [], {split: None for split in cls.splits}

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.name} {self.split}: index {i} out of range for {n} samples")
        return i % n

    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        valid = self.option_defaults
        for key, value in options.items():
            if key not in valid:
                choices = ", ".join(sorted(valid)) or "(none)"
                raise ConfigError(
                    f'unknown option "{key}" for dataset {self.name}.{did_you_mean(key, set(valid))} '
                    f"Valid options: {choices}."
                )
            default = valid[key]
            ok = isinstance(value, (str, Path)) if default is None else isinstance(value, type(default))
            if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, bool):
                ok = False
            if not ok and not (default is None and value is None):
                expected = "a path" if default is None else type(default).__name__
                raise ConfigError(f"dataset {self.name} option {key}={value!r}: expected {expected}.")
        return {**valid, **options}


class TransformedDataset(Dataset):
    """``dataset`` seen through ``transform``, returning torch tensors; deterministic per (seed, epoch, index).

    Call :meth:`set_epoch` before each epoch. With ``persistent_workers=True`` the workers hold copies made
    when they started, so the epoch must reach them another way (e.g. recreate the loader per epoch).
    """

    def __init__(self, dataset: PointCloudDataset, transform: Transform | None, seed: int) -> None:
        self.dataset = dataset
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations ``__getitem__`` draws (call before each epoch's loader pass)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        sample = self.dataset.load(i)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)])
            sample = self.transform(sample, rng)
        return to_tensors(sample)


def to_tensors(sample: Sample) -> dict[str, torch.Tensor | str]:
    """numpy sample -> tensors: ``xyz``/``normal`` float32, ``label`` int64 scalar, others as their dtype.

    Strings stay strings: a ``str`` (the sample ``id``) or a 0-d numpy string / bytes array becomes a plain ``str``;
    torch's default collate then gives a list of them per batch."""
    out: dict[str, torch.Tensor | str] = {}
    for key, value in sample.items():
        arr = np.asarray(value)
        if arr.ndim == 0 and arr.dtype.kind in "US":
            out[key] = arr.item().decode() if arr.dtype.kind == "S" else str(arr.item())
            continue
        if key in ("xyz", "normal"):
            arr = arr.astype(np.float32, copy=False)
        elif key == "label":
            arr = arr.astype(np.int64, copy=False).reshape(())
        out[key] = torch.from_numpy(np.ascontiguousarray(arr)) if arr.ndim else torch.tensor(arr.item())
    return out


def build_dataset(name: str, root: Path, split: str, variant: str | None = None, **options: Any) -> PointCloudDataset:
    """Instantiate the data set registered as ``name``; ``variant=None`` means its first variant.

    Unknown name -> UnknownNameError (a ConfigError) with a did-you-mean.
    """
    cls = DATASETS.get(name)
    return cls(Path(root), split, cls.variants[0] if variant is None else variant, **options)


def pc_normalize(xyz: np.ndarray) -> np.ndarray:
    """Point-BERT ``pc_norm``: subtract the centroid, divide by the largest point norm (unit sphere), float32."""
    xyz = np.asarray(xyz, dtype=np.float32)
    centred = xyz - xyz.mean(axis=0, keepdims=True)
    scale = float(np.sqrt((centred**2).sum(axis=1)).max()) if len(centred) else 0.0
    return centred / scale if scale > 0 else centred


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a list file; missing file -> DataError with its exact path."""
    if not path.is_file():
        raise DataError(f"list file not found: expected {path}.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the list file ({exc}).") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_points(points: np.ndarray, path: Path, index: int | None = None, width: int = 3) -> np.ndarray:
    """Validate one (P, >=width) point array: 2-D, enough columns, at least one point, finite; return float32."""
    where = f"{path}" if index is None else f"{path}, sample {index}"
    arr = np.asarray(points)
    if arr.ndim != 2 or arr.shape[1] < width or arr.shape[0] == 0:
        raise DataError(f"{where}: expected a (P, {width}) point array, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{where}: expected numeric points, got dtype {arr.dtype}.")
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: the point coordinates contain NaN or inf values.")
    return arr.astype(np.float32, copy=False)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(
            f'unknown {what} "{value}".{did_you_mean(str(value), set(choices))} Valid: {", ".join(choices)}.'
        )

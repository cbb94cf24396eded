"""S3DIS semantic segmentation (13 classes) from the per-room ``.npy`` files of the Pointnet_Pointnet2_pytorch
preprocessing (reference/protocols.md 1.6; PCP / PQAE / MaDi ``semantic_segmentation/dataset.py``).

Layout below the data root: ``stanford_indoor3d/Area_<a>_<room>.npy`` (e.g. ``Area_5_office_1.npy``), each an
(N, 7) array ``x y z r g b label``: metres, **z up**, shifted so the room's minimum corner is 0 (the preprocessing
subtracts the per-room minimum); rgb in 0..255; label 0..12 in :data:`CLASS_NAMES` order.

Split (variant ``area5``): Area 5 is the test split, Areas 1-4 and 6 the training split (a file belongs to area
``a`` when its name contains ``Area_<a>``, as the reference's substring test).

Items, as the reference ``S3DISDataset``: ``int(total points * sample_rate / num_point)`` items, allotted to the
rooms as ``round(room points / total * items)`` each, in sorted file order. ``load(i)`` is the raw ROOM behind
item ``i``; the random 1 m x 1 m block is drawn by the :class:`RoomBlock` transform (``s3dis_block``), so that
randomness comes from the per-sample generator like every other transform. The test split's items are random
blocks too (the reference redraws them every epoch: its ``__getitem__`` uses the unseeded ``np.random``); which
draw an epoch scores is the semseg protocol's ``suite.test_blocks``.

Model input, as the reference: only xyz. The reference also computes rgb / 255 and the room-normalised
coordinates (xyz / room max) but returns ``current_points[:, :3]``; we return only ``xyz`` and ``seg``.
``label_weights`` are the reference's ``(max(freq) / freq) ** (1/3)`` over the split's point labels
(:meth:`S3DIS.class_weights`). Every item's ``id`` is its room name (``Area_1_office_1``): the blocks of one room
share it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench.data.base import PointCloudDataset, Sample
from bench.data.transforms import take_points
from bench.errors import ConfigError, DataError
from bench.registry import DATASETS, TRANSFORMS

CLASS_NAMES = [
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa", "bookcase", "board",
    "clutter",
]  # fmt: skip
FOLDER = "stanford_indoor3d"
ROOM_PATTERN = re.compile(r"^Area_([1-6])_(\w+)\.npy$")
TEST_AREAS = {"area5": 5}
OFFICIAL_ROOMS = 272  # rooms of Stanford3dDataset_v1.2_Aligned_Version (Areas 1-6: 44, 40, 23, 49, 68, 48)


def room_folder(root: Path) -> Path:
    return Path(root) / FOLDER


def room_files(root: Path) -> list[Path]:
    """Sorted ``Area_*`` npy files of the room folder (the reference's ``sorted(os.listdir)`` filtered)."""
    folder = room_folder(root)
    return sorted(p for p in folder.glob("Area_*.npy") if p.is_file()) if folder.is_dir() else []


def room_area(path: Path) -> int:
    match = ROOM_PATTERN.match(Path(path).name)
    if match is None:
        raise DataError(f"{path}: not an S3DIS room file name (expected Area_<1-6>_<room>.npy, e.g. "
                        "Area_5_office_1.npy).")
    return int(match.group(1))


def read_room(path: Path, num_classes: int = len(CLASS_NAMES)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One room file -> (xyz float32 (N, 3), rgb float32 (N, 3) in 0..255, labels uint8 (N,)), validated."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy room file ({exc}).") from None
    if data.ndim != 2 or data.shape[1] != 7 or data.shape[0] == 0:
        raise DataError(f"{path}: expected an (N, 7) array x y z r g b label, got shape {data.shape}.")
    if not np.issubdtype(data.dtype, np.number):
        raise DataError(f"{path}: expected numbers, got dtype {data.dtype}.")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: the room holds NaN or inf values.")
    labels = data[:, 6]
    if (labels != np.round(labels)).any() or labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{path}: labels (column 7) must be integers in 0..{num_classes - 1}, found "
                        f"{labels.min():g}..{labels.max():g}.")  # fmt: skip
    return data[:, :3].astype(np.float32), data[:, 3:6].astype(np.float32), labels.astype(np.uint8)


def label_weights(counts: np.ndarray) -> np.ndarray:
    """Reference weights ``(max(freq) / freq) ** (1/3)``, freq = counts / sum (float32 as the reference).

    A class with no point in the split would get an infinite weight in the reference; here it gets 0 (it is never
    a target of the weighted loss, so any finite value gives the same loss)."""
    freq = counts.astype(np.float32) / np.float32(counts.sum())
    out = np.zeros_like(freq)
    seen = freq > 0
    out[seen] = np.power(freq.max() / freq[seen], 1 / 3.0)
    return out


def items_per_room(points: list[int], num_point: int, sample_rate: float) -> np.ndarray:
    """Room index of every item: ``int(sum * rate / num_point)`` items, ``round(share * items)`` per room."""
    total = float(np.sum(points))
    num_iter = int(total * sample_rate / num_point)
    return np.concatenate([np.full(int(round(n / total * num_iter)), r, dtype=np.int64) for r, n in enumerate(points)]
                          or [np.zeros(0, np.int64)])  # fmt: skip


@DATASETS.register("s3dis")
class S3DIS(PointCloudDataset):
    """Rooms of one split, loaded once; ``len`` = number of block items (see the module docstring)."""

    name = "s3dis"
    source = ("Stanford3dDataset_v1.2_Aligned_Version from http://buildingparser.stanford.edu/dataset.html, made "
              "into stanford_indoor3d by collect_indoor3d_data.py of https://github.com/yanx27/Pointnet_Pointnet2_pytorch")
    variants: ClassVar[tuple[str, ...]] = ("area5",)
    class_names: ClassVar[list[str]] = CLASS_NAMES
    #: block_size / stride: the whole-room sliding blocks (reference whole-scene loader: 1.0 m, stride 0.5 m)
    option_defaults: ClassVar[dict[str, object]] = {"num_point": 2048, "sample_rate": 1.0, "block_size": 1.0,
                                                    "stride": 0.5}

    def __init__(self, root: Path, split: str, variant: str = "area5", **options: object) -> None:
        super().__init__(root, split, variant, **options)
        opts = self.options
        if opts["num_point"] < 1 or min(opts["sample_rate"], opts["block_size"], opts["stride"]) <= 0:
            raise ConfigError(f"dataset s3dis: num_point must be >= 1 and sample_rate, block_size, stride > 0, "
                              f"got {opts}.")
        test_area = TEST_AREAS[variant]
        named = [p for p in room_files(self.root) if ROOM_PATTERN.match(p.name)]  # others: `bench data check`
        self.paths = [p for p in named if (room_area(p) == test_area) == (split == "test")]
        if not self.paths:
            raise DataError(f"no S3DIS {split} rooms (Area {test_area} is the test area) under "
                            f"{room_folder(self.root)}.")
        self.names = [p.stem for p in self.paths]
        self.xyz, self.labels = [], []
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for path in self.paths:
            xyz, _, labels = read_room(path, self.num_classes)
            self.xyz.append(xyz)
            self.labels.append(labels)
            counts += np.bincount(labels, minlength=self.num_classes)
        self.label_counts = counts
        self.labelweights = label_weights(counts)
        self.room_idxs = items_per_room([len(x) for x in self.xyz], self.options["num_point"],
                                        self.options["sample_rate"])  # fmt: skip

    def __len__(self) -> int:
        return int(self.room_idxs.shape[0])

    def load(self, i: int) -> Sample:
        """The whole room behind item ``i``: ``xyz`` (N, 3), ``seg`` (N,) uint8, ``room`` (its name, a 0-d numpy
        string, dropped by ``s3dis_block``) and ``id`` (the same name, a str, kept)."""
        room = int(self.room_idxs[self._check_index(i)])
        return {"xyz": self.xyz[room], "seg": self.labels[room], "room": np.asarray(self.names[room]),
                "id": self.names[room]}

    def sample_id(self, i: int) -> str:
        """The name of the room behind item ``i``."""
        return self.names[int(self.room_idxs[self._check_index(i)])]

    def class_weights(self) -> np.ndarray:
        """The training loss weights of this split: :attr:`labelweights` (float32, one per class)."""
        return self.labelweights

    def rooms(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, xyz, labels) of every room of the split, in file order (whole-room evaluation)."""
        yield from zip(self.names, self.xyz, self.labels, strict=True)

    @classmethod
    def expected_files(cls, root: Path, variant: str = "area5") -> list[Path]:
        """The room folder; it counts as present when it holds a test-area room and a training room."""
        return [room_folder(Path(root))]

    @classmethod
    def is_present(cls, root: Path, variant: str = "area5") -> bool:
        areas = {int(m.group(1)) for p in room_files(root) if (m := ROOM_PATTERN.match(p.name))}
        return TEST_AREAS[variant] in areas and bool(areas - {TEST_AREAS[variant]})

    @classmethod
    def light_check(cls, root: Path, variant: str = "area5") -> tuple[list[str], dict[str, int | None]]:
        """Room counts per split (rooms, not blocks) and problems: bad names, unreadable files, wrong shapes."""
        problems: list[str] = []
        counts: dict[str, int | None] = {"train": 0, "test": 0}
        files = room_files(root)
        for path in files:
            if ROOM_PATTERN.match(path.name) is None:
                problems.append(f"{path}: not an Area_<1-6>_<room>.npy name; ignored by the area split")
                continue
            try:
                shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            except (OSError, ValueError) as exc:
                problems.append(f"{path}: not a readable .npy file ({exc})")
                continue
            if len(shape) != 2 or shape[1] != 7 or shape[0] == 0:
                problems.append(f"{path}: shape {shape}, expected (N, 7) x y z r g b label")
                continue
            counts["test" if room_area(path) == TEST_AREAS[variant] else "train"] += 1
        if files and len(files) != OFFICIAL_ROOMS:
            problems.append(f"{len(files)} room files, the official preprocessing writes {OFFICIAL_ROOMS}")
        return problems, counts


@TRANSFORMS.register("s3dis_block")
class RoomBlock:
    """The reference block sampler: a random centre point of the room, the ``block_size`` x ``block_size`` xy
    column around it (bounds inclusive, z unbounded), redrawn until it holds more than ``min_points`` points
    (default ``n // 2``: the reference's 1024 for 2048); then ``n`` of its points (with replacement only when it
    holds fewer), x and y centred on the centre point, z left raw. Gives ``xyz`` float32 (n, 3), ``seg`` int64,
    other per-point keys aligned with them.

    The reference retries forever; after ``max_tries`` draws this raises DataError naming the room."""

    def __init__(self, n: int, block_size: float = 1.0, min_points: int | None = None, max_tries: int = 1000):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or block_size <= 0:
            raise ConfigError(f"transform s3dis_block: need n >= 1 and block_size > 0, got n={n!r}, "
                              f"block_size={block_size!r}.")  # fmt: skip
        self.n, self.block_size, self.max_tries = n, float(block_size), int(max_tries)
        self.min_points = n // 2 if min_points is None else int(min_points)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        xyz = sample["xyz"]
        half = self.block_size / 2.0
        for _ in range(self.max_tries):
            center = xyz[rng.integers(len(xyz))]
            inside = np.flatnonzero((np.abs(xyz[:, 0] - center[0]) <= half) & (np.abs(xyz[:, 1] - center[1]) <= half))
            if inside.size > self.min_points:
                break
        else:
            room = sample.get("id", sample.get("room", "?"))
            raise DataError(f"S3DIS room {room}: no {self.block_size} m block with more than {self.min_points} "
                            f"points in {self.max_tries} draws; lower min_points (or use denser data).")
        chosen = rng.choice(inside, self.n, replace=inside.size < self.n)
        out = take_points(sample, chosen)  # every per-point key stays aligned; others pass through
        block = out["xyz"].astype(np.float32, copy=True)
        block[:, :2] -= center[:2]
        out["xyz"] = block
        out["seg"] = out["seg"].astype(np.int64)
        out.pop("room", None)  # the numpy room name only served error messages; the str ``id`` stays
        return out


def block_starts(low: float, high: float, block_size: float, stride: float) -> np.ndarray:
    """Sliding-window starts covering [low, high] (reference whole-scene grid): ``ceil((high - low - block) /
    stride) + 1`` windows from ``low`` by ``stride``, each shifted back so it ends by ``high`` (at least one)."""
    count = max(int(np.ceil((high - low - block_size) / stride)) + 1, 1)
    starts = low + stride * np.arange(count)
    return np.minimum(starts + block_size, max(high, low + block_size)) - block_size


def room_blocks(
    xyz: np.ndarray, block_size: float = 1.0, stride: float = 0.5
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream the whole-room sliding blocks: (centre xy (2,), indices of the points inside, bounds inclusive).

    Every point lies in at least one block. Memory is O(N) (one sort by x, then one by y per x-strip); no
    per-block mask over the whole room and nothing pairwise is built."""
    order_x = np.argsort(xyz[:, 0], kind="stable")
    xs = xyz[order_x, 0].astype(np.float64)
    lo, hi = xyz[:, :2].min(0), xyz[:, :2].max(0)
    y_starts = block_starts(float(lo[1]), float(hi[1]), block_size, stride)
    for sx in block_starts(float(lo[0]), float(hi[0]), block_size, stride):
        strip = order_x[np.searchsorted(xs, sx, "left"):np.searchsorted(xs, sx + block_size, "right")]
        if strip.size == 0:
            continue
        strip = strip[np.argsort(xyz[strip, 1], kind="stable")]
        ys = xyz[strip, 1].astype(np.float64)
        for sy in y_starts:
            inside = strip[np.searchsorted(ys, sy, "left"):np.searchsorted(ys, sy + block_size, "right")]
            if inside.size:
                yield np.array([sx + block_size / 2, sy + block_size / 2], dtype=np.float64), inside

"""The data set hooks declared on PointCloudDataset (seed_option, category_parts, class_weights, rooms,
sample_id): their defaults, and the overrides of few-shot, ShapeNetPart and S3DIS."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from bench.data.base import PointCloudDataset, Sample, build_dataset
from bench.data.fewshot import ModelNetFewshot
from bench.data.s3dis import S3DIS
from bench.data.shapenetpart import CATEGORY_PARTS, ShapeNetPart
from bench.errors import DataError
from bench.registry import DATASETS, discover

discover("bench.data")


class Plain(PointCloudDataset):
    """A minimal data set that overrides no hook (not registered)."""

    name = "plain"
    class_names: ClassVar[list[str]] = ["a", "b"]

    def __len__(self) -> int:
        return 3

    def load(self, i: int) -> Sample:
        return {"xyz": np.zeros((2, 3), np.float32), "label": np.asarray(i % 2), "id": f"plain/{self._check_index(i)}"}

    @classmethod
    def expected_files(cls, root: Path, variant: str = "default") -> list[Path]:
        return []


def test_hook_defaults(tmp_path: Path) -> None:
    ds = Plain(tmp_path, "train")
    assert Plain.seed_option is None and Plain.category_parts == []
    assert ds.class_weights() is None
    assert [ds.sample_id(i) for i in range(3)] == ["plain/0", "plain/1", "plain/2"]  # default: from load(i)
    with pytest.raises(DataError, match="data set plain has no rooms: "):
        next(iter(ds.rooms()))


def test_registered_sets_declare_their_hooks() -> None:
    hooks = {name: (DATASETS.get(name).seed_option, bool(DATASETS.get(name).category_parts)) for name in DATASETS}
    assert hooks == {"modelnet40": (None, False), "modelnet_fewshot": ("fold", False), "s3dis": (None, False),
                     "scanobjectnn": (None, False), "shapenet55": (None, False), "shapenetpart": (None, True),
                     "shapenet15k": (None, False), "shapenet_occ": (None, False)}
    assert ModelNetFewshot.seed_option == "fold" and ShapeNetPart.category_parts == CATEGORY_PARTS
    for hook in ("seed_option", "category_parts", "class_weights", "rooms", "sample_id"):
        assert hook in vars(PointCloudDataset), f"{hook} is not declared on the base class"


def test_s3dis_class_weights_and_rooms(tiny_data_root: Path) -> None:
    train = S3DIS(tiny_data_root / "synthetic", "train")
    weights = train.class_weights()
    assert weights is train.labelweights and weights.dtype == np.float32 and weights.shape == (13,)
    rooms = list(train.rooms())
    assert [name for name, _, _ in rooms] == train.names and len(rooms) == 5
    for (name, xyz, labels), path in zip(rooms, train.paths, strict=True):
        data = np.load(path)
        assert name == path.stem
        np.testing.assert_array_equal(xyz, data[:, :3].astype(np.float32))
        np.testing.assert_array_equal(labels, data[:, 6].astype(np.uint8))


@pytest.mark.parametrize("name", ["modelnet40", "scanobjectnn", "shapenet55"])
def test_object_sets_have_no_weights_and_no_rooms(name: str, tiny_data_root: Path) -> None:
    ds = build_dataset(name, tiny_data_root / "synthetic", "test")
    assert ds.class_weights() is None
    with pytest.raises(DataError, match=f"data set {name} has no rooms"):
        list(ds.rooms())

"""ShapeNet-55 loader on the tiny stand-in: lists, labels, the whole flag, lazy npy reads and their errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.shapenet55 import SYNSET_NAMES, SYNSETS, ShapeNet55, list_path, points_dir
from bench.errors import ConfigError, DataError


def test_standin_round_trip(standin_root: Path) -> None:
    train, test = ShapeNet55(standin_root, "train"), ShapeNet55(standin_root, "test")
    assert (len(train), len(test)) == (4 * 3, 4 * 1) and train.num_classes == 55
    sample = train.load(0)
    assert sample["xyz"].shape == (512, 3) and sample["xyz"].dtype == np.float32
    synset = train.files[0].split("-")[0]
    assert int(sample["label"]) == SYNSETS.index(synset) and sample["label"].dtype == np.int64
    raw = np.load(points_dir(standin_root) / train.files[0])
    np.testing.assert_array_equal(sample["xyz"], raw)  # raw points: subsampling / pc_norm are transforms
    assert {train.class_names[int(lab)] for lab in train.labels} == {"airplane", "chair", "lamp", "table"}


def test_labels_follow_the_sorted_synset_list() -> None:
    assert len(SYNSETS) == 55 and SYNSETS == sorted(SYNSETS)
    assert SYNSETS.index("02691156") == 0 and SYNSETS.index("04554684") == 54
    assert SYNSET_NAMES["04379243"] == "table"


def test_whole_prepends_the_test_lines(standin_root: Path) -> None:
    whole = ShapeNet55(standin_root, "train", whole=True)
    test, train = ShapeNet55(standin_root, "test"), ShapeNet55(standin_root, "train")
    assert whole.files == test.files + train.files
    assert ShapeNet55(standin_root, "test", whole=True).files == test.files


def test_missing_npy_and_bad_lines(standin_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(standin_root / "ShapeNet55-34", root / "ShapeNet55-34")
    ds = ShapeNet55(root, "test")
    gone = points_dir(root) / ds.files[1]
    gone.unlink()
    with pytest.raises(DataError, match=f"expected {gone}"):
        ds.load(1)
    np.save(points_dir(root) / ds.files[0], np.full((8, 3), np.nan, np.float32))
    with pytest.raises(DataError, match="NaN"):
        ds.load(0)
    list_path(root, "test").write_text("99999999-abc.npy\n")
    with pytest.raises(DataError, match="99999999-abc.npy"):
        ShapeNet55(root, "test")
    with pytest.raises(DataError, match=f"expected {list_path(tmp_path / 'nothing', 'train')}"):
        ShapeNet55(tmp_path / "nothing", "train")


def test_options(standin_root: Path) -> None:
    with pytest.raises(ConfigError, match=r'"hole".*Did you mean "whole"'):
        ShapeNet55(standin_root, "train", hole=True)
    with pytest.raises(ConfigError, match="expected bool"):
        ShapeNet55(standin_root, "train", whole=1)


def test_synsets_match_the_official_dict(shared_data: Path) -> None:
    official = json.loads((shared_data / "metadata" / "shapenet_synset_dict.json").read_text())
    assert official == SYNSET_NAMES
    listed = {line.split("-")[0] for line in (shared_data / "metadata" / "shapenet55_train.txt").read_text().split()}
    assert listed == set(SYNSETS)

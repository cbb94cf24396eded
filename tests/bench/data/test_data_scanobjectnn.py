"""ScanObjectNN loader: the tiny stand-in round-trips; malformed h5 files raise DataError naming the file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from bench.data.base import build_dataset
from bench.data.scanobjectnn import CLASS_NAMES, ScanObjectNN, h5_path
from bench.errors import ConfigError, DataError


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


@pytest.mark.parametrize("variant", ["objbg", "objonly", "hardest"])
def test_standin_round_trip(standin_root: Path, variant: str) -> None:
    train = build_dataset("scanobjectnn", standin_root, "train", variant)
    test = ScanObjectNN(standin_root, "test", variant)
    assert (len(train), len(test)) == (15 * 8, 15 * 4)
    sample = train.load(0)
    assert sample["xyz"].shape == (2048, 3) and sample["xyz"].dtype == np.float32
    assert sample["label"].dtype == np.int64 and sample["label"].shape == ()
    assert sorted(set(train.labels.tolist())) == list(range(15)) and train.num_classes == 15
    if variant == "objonly":  # objects are centred and scaled into the unit sphere; no loader normalisation
        assert np.linalg.norm(sample["xyz"], axis=1).max() == pytest.approx(1, abs=1e-3)


def test_variants_share_objects_but_differ(standin_root: Path) -> None:
    objbg, hardest = ScanObjectNN(standin_root, "train", "objbg"), ScanObjectNN(standin_root, "train", "hardest")
    np.testing.assert_array_equal(objbg.labels, hardest.labels)
    assert not np.allclose(objbg.load(3)["xyz"], hardest.load(3)["xyz"])


def test_missing_file_names_the_exact_path(tmp_path: Path) -> None:
    expected = tmp_path / "ScanObjectNN" / "main_split_nobg" / "training_objectdataset.h5"
    assert h5_path(tmp_path, "objonly", "train") == expected
    with pytest.raises(DataError, match=str(expected)):
        ScanObjectNN(tmp_path, "train", "objonly")


@pytest.mark.parametrize(
    ("arrays", "pattern"),
    [
        ({"data": np.zeros((4, 16, 3), np.float32)}, "no 'label'"),
        ({"points": np.zeros((4, 16, 3)), "label": np.zeros(4)}, "no 'data'"),
        ({"data": np.zeros((4, 16, 2), np.float32), "label": np.zeros(4)}, r"shape \(N, P, 3\)"),
        ({"data": np.zeros((4, 16, 3), np.float32), "label": np.zeros(5)}, "'label' must have shape"),
        ({"data": np.zeros((4, 16, 3), np.float32), "label": np.full(4, 15)}, r"labels must lie in 0\.\.14"),
    ],
)
def test_malformed_h5_raises(tmp_path: Path, arrays: dict, pattern: str) -> None:
    path = write_h5(h5_path(tmp_path, "objbg", "test"), **arrays)
    with pytest.raises(DataError, match=pattern) as err:
        ScanObjectNN(tmp_path, "test", "objbg")
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_coordinates_name_the_sample(tmp_path: Path, bad: float) -> None:
    data = np.zeros((5, 16, 3), np.float32)
    data[2, 7, 1] = bad
    path = write_h5(h5_path(tmp_path, "hardest", "train"), data=data, label=np.zeros(5, np.int64))
    with pytest.raises(DataError, match="sample 2 has NaN or inf") as err:
        ScanObjectNN(tmp_path, "train", "hardest")
    assert str(path) in str(err.value)


def test_not_an_h5_file(tmp_path: Path) -> None:
    path = h5_path(tmp_path, "objbg", "train")
    path.parent.mkdir(parents=True)
    path.write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable h5"):
        ScanObjectNN(tmp_path, "train", "objbg")


def test_column_labels_are_accepted(tmp_path: Path) -> None:
    write_h5(h5_path(tmp_path, "objbg", "train"), data=np.ones((3, 8, 3)), label=np.array([[0], [4], [14]]))
    ds = ScanObjectNN(tmp_path, "train", "objbg")
    assert [int(ds.load(i)["label"]) for i in range(3)] == [0, 4, 14] and ds.load(0)["xyz"].dtype == np.float32
    with pytest.raises(IndexError):
        ds.load(3)


def test_bad_split_variant_and_option(standin_root: Path) -> None:
    with pytest.raises(ConfigError, match=r'split "val".*Valid: train, test'):
        ScanObjectNN(standin_root, "val", "objbg")
    with pytest.raises(ConfigError, match=r'variant "obj_bg".*Did you mean "objbg".*objbg, objonly, hardest'):
        ScanObjectNN(standin_root, "train", "obj_bg")
    with pytest.raises(ConfigError, match=r'option "use_normals"'):
        ScanObjectNN(standin_root, "train", "objbg", use_normals=True)
    assert CLASS_NAMES[0] == "bag" and CLASS_NAMES[-1] == "toilet" and len(CLASS_NAMES) == 15


def test_class_names_match_the_official_list(shared_data: Path) -> None:
    assert (shared_data / "metadata" / "scanobjectnn_shape_names.txt").read_text().split() == CLASS_NAMES

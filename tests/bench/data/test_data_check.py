"""check_data: exact missing paths on an empty root, presence and counts on the stand-in, light problems."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np

from bench.data.check import check_data


def by_key(root: Path) -> dict:
    return {(s.dataset, s.variant): s for s in check_data(root)}


def test_empty_root_lists_exact_missing_paths(tmp_path: Path) -> None:
    status = by_key(tmp_path)
    assert {"modelnet40", "scanobjectnn", "shapenet55"} <= {name for name, _ in status}
    assert set(status) >= {("scanobjectnn", v) for v in ("objbg", "objonly", "hardest")}
    assert not any(s.present for s in status.values())
    assert status["scanobjectnn", "hardest"].missing == [
        tmp_path / "ScanObjectNN/main_split/training_objectdataset_augmentedrot_scale75.h5",
        tmp_path / "ScanObjectNN/main_split/test_objectdataset_augmentedrot_scale75.h5",
    ]
    assert tmp_path / "ScanObjectNN/main_split_nobg/test_objectdataset.h5" in status["scanobjectnn", "objonly"].missing
    folder = tmp_path / "ModelNet/modelnet40_normal_resampled"
    assert status["modelnet40", "default"].missing == [
        folder / "modelnet40_shape_names.txt",
        folder / "modelnet40_train.txt",
        folder / "modelnet40_test.txt",
        folder / "modelnet40_train_8192pts_fps.dat",
        folder / "modelnet40_test_8192pts_fps.dat",
    ]
    assert tmp_path / "ShapeNet55-34/ShapeNet-55/train.txt" in status["shapenet55", "default"].missing
    assert status["shapenet55", "default"].n_train is None


def test_standin_is_present_with_counts(standin_root: Path) -> None:
    status = by_key(standin_root)
    for key in [("scanobjectnn", "objbg"), ("scanobjectnn", "objonly"), ("scanobjectnn", "hardest")]:
        assert status[key].present and not status[key].missing and not status[key].problems
        assert (status[key].n_train, status[key].n_test) == (120, 60)
    assert (status["modelnet40", "default"].n_train, status["modelnet40", "default"].n_test) == (12, 8)
    assert (status["shapenet55", "default"].n_train, status["shapenet55", "default"].n_test) == (12, 4)


def test_light_problems_are_reported(standin_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(standin_root, root)
    with h5py.File(root / "ScanObjectNN/main_split/test_objectdataset.h5", "w") as f:
        f.create_dataset("data", data=np.zeros((2, 8, 3)))
    (root / "ModelNet/modelnet40_normal_resampled/modelnet40_test_8192pts_fps.dat").unlink()
    shapenet_file = next((root / "ShapeNet55-34/shapenet_pc").iterdir())
    shapenet_file.unlink()
    status = by_key(root)
    objbg = status["scanobjectnn", "objbg"]
    assert objbg.present and "missing 'data' or 'label'" in objbg.problems[0]
    modelnet = status["modelnet40", "default"]  # present: the cache can be rebuilt from the txt files
    assert modelnet.present and "will be built" in modelnet.problems[0] and len(modelnet.missing) == 1
    shapenet = status["shapenet55", "default"]
    assert shapenet.present and str(shapenet_file) in " ".join(shapenet.problems)
    first_test = (root / "ModelNet/modelnet40_normal_resampled/modelnet40_test.txt").read_text().split()[0]
    (root / "ModelNet/modelnet40_normal_resampled" / first_test.rsplit("_", 1)[0] / f"{first_test}.txt").unlink()
    assert not by_key(root)["modelnet40", "default"].present  # neither cache nor every txt

"""ModelNet40: the .dat cache built from the real 2-class fixture, the loader, and the stand-in round trip."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from bench.data.modelnet40 import CLASS_NAMES, ModelNet40, build_modelnet_cache, cache_path
from bench.data.pickle_io import restricted_load
from bench.errors import ConfigError, DataError


def read_txt_by_hand(path: Path) -> np.ndarray:
    return np.array([[float(v) for v in line.split(",")] for line in path.read_text().splitlines()], np.float32)


def test_dat_built_from_the_real_fixture(modelnet_folder: Path, tmp_path: Path) -> None:
    train = ModelNet40(tmp_path / "unused-root", "train", folder=modelnet_folder)
    test = ModelNet40(tmp_path / "unused-root", "test", folder=str(modelnet_folder))
    assert (len(train), len(test)) == (40, 20)
    assert np.bincount(train.labels).tolist() == [20, 20] and np.bincount(test.labels).tolist() == [10, 10]
    assert CLASS_NAMES[0] == "airplane" and CLASS_NAMES[1] == "bathtub"
    points, labels = restricted_load(cache_path(modelnet_folder, "train"))
    assert len(points) == len(labels) == 40
    assert all(p.shape == (2500, 6) and p.dtype == np.float32 for p in points)  # fewer than 8192: kept whole
    assert all(lab.shape == (1,) and lab.dtype == np.int32 for lab in labels)
    first = (modelnet_folder / "modelnet40_train.txt").read_text().split()[0]
    raw = read_txt_by_hand(modelnet_folder / first.rsplit("_", 1)[0] / f"{first}.txt")
    np.testing.assert_array_equal(points[0], raw)  # file order, every column


def test_loader_normalises_to_the_unit_sphere(modelnet_folder: Path) -> None:
    ds = ModelNet40(modelnet_folder, "test", folder=modelnet_folder, use_normals=True)
    for i in (0, len(ds) - 1):
        sample = ds.load(i)
        assert sample["xyz"].shape == (2500, 3) and sample["xyz"].dtype == np.float32
        np.testing.assert_allclose(sample["xyz"].mean(0), 0, atol=1e-5)
        assert np.linalg.norm(sample["xyz"], axis=1).max() == pytest.approx(1, abs=1e-5)
        np.testing.assert_allclose(np.linalg.norm(sample["normal"], axis=1), 1, atol=2e-3)
    assert "normal" not in ModelNet40(modelnet_folder, "test", folder=modelnet_folder).load(0)


def test_fps_cache_is_a_deterministic_subset(modelnet_folder: Path) -> None:
    ids = (modelnet_folder / "modelnet40_test.txt").read_text().split()
    (modelnet_folder / "modelnet40_test.txt").write_text("\n".join([ids[0], ids[-1]]) + "\n")
    path = build_modelnet_cache(modelnet_folder, "test", npoints=256)
    assert path == modelnet_folder / "modelnet40_test_256pts_fps.dat"
    points, labels = restricted_load(path)
    assert [p.shape for p in points] == [(256, 6), (256, 6)] and [int(lab[0]) for lab in labels] == [0, 1]
    raw = read_txt_by_hand(modelnet_folder / "airplane" / f"{ids[0]}.txt")
    rows = {tuple(r) for r in raw.tolist()}
    assert all(tuple(r) in rows for r in points[0].tolist()) and len({tuple(r) for r in points[0].tolist()}) == 256
    again, _ = restricted_load(build_modelnet_cache(modelnet_folder, "test", npoints=256))
    np.testing.assert_array_equal(points[0], again[0])
    spread = np.linalg.norm(points[0][:32, None, :3] - points[0][None, :32, :3], axis=-1) + np.eye(32) * 9
    random_pick = raw[np.random.default_rng(0).choice(len(raw), 32, replace=False), :3]
    random_spread = np.linalg.norm(random_pick[:, None] - random_pick[None], axis=-1) + np.eye(32) * 9
    assert spread.min() > random_spread.min()  # FPS points are spread out


def test_existing_cache_is_read_not_rebuilt(modelnet_folder: Path) -> None:
    fake = [[np.ones((10, 6), np.float32)], [np.array([5], np.int32)]]
    cache_path(modelnet_folder, "train").write_bytes(pickle.dumps(fake))
    ds = ModelNet40(modelnet_folder, "train", folder=modelnet_folder)
    assert len(ds) == 1 and int(ds.load(0)["label"]) == 5


def test_missing_and_malformed_files(modelnet_folder: Path, tmp_path: Path) -> None:
    missing = modelnet_folder / "bathtub" / "bathtub_0003.txt"
    missing.unlink()
    with pytest.raises(DataError, match=f"expected {missing}"):
        build_modelnet_cache(modelnet_folder, "train")
    bad = modelnet_folder / "airplane" / "airplane_0001.txt"
    bad.write_text("0.1,0.2,nan,0,0,1\n" * 5)
    with pytest.raises(DataError, match=f"{bad}.*NaN"):
        build_modelnet_cache(modelnet_folder, "train")
    bad.write_text("0.1,0.2\n")
    with pytest.raises(DataError, match=str(bad)):
        build_modelnet_cache(modelnet_folder, "train")
    root = tmp_path / "empty-root"
    expected = root / "ModelNet" / "modelnet40_normal_resampled" / "modelnet40_shape_names.txt"
    with pytest.raises(DataError, match=f"expected {expected}"):
        ModelNet40(root, "train")


def test_malicious_or_malformed_cache(modelnet_folder: Path) -> None:
    path = cache_path(modelnet_folder, "test")
    path.write_bytes(pickle.dumps([[np.zeros((4, 6))], [print]]))
    with pytest.raises(DataError, match=f"{path}.*builtins.print"):
        ModelNet40(modelnet_folder, "test", folder=modelnet_folder)
    path.write_bytes(pickle.dumps({"points": []}))
    with pytest.raises(DataError, match="list of point arrays"):
        ModelNet40(modelnet_folder, "test", folder=modelnet_folder)
    path.write_bytes(pickle.dumps([[np.full((4, 6), np.inf, np.float32)], [np.array([0], np.int32)]]))
    with pytest.raises(DataError, match="sample 0"):
        ModelNet40(modelnet_folder, "test", folder=modelnet_folder)


def test_standin_round_trip(standin_root: Path) -> None:
    train, test = ModelNet40(standin_root, "train"), ModelNet40(standin_root, "test", use_normals=True)
    assert (len(train), len(test)) == (4 * 3, 4 * 2)
    expected = [CLASS_NAMES.index(c) for c in ("airplane", "bathtub", "chair", "table")]
    assert sorted(set(train.labels.tolist())) == expected
    sample = test.load(0)
    assert sample["xyz"].shape == (512, 3) and sample["normal"].shape == (512, 3) and test.num_classes == 40
    assert np.linalg.norm(sample["xyz"], axis=1).max() == pytest.approx(1, abs=1e-5)


def test_option_errors(standin_root: Path) -> None:
    with pytest.raises(ConfigError, match=r'unknown option "use_normal".*Did you mean "use_normals"'):
        ModelNet40(standin_root, "train", use_normal=True)
    with pytest.raises(ConfigError, match="expected bool"):
        ModelNet40(standin_root, "train", use_normals="yes")
    with pytest.raises(ConfigError, match="expected int"):
        ModelNet40(standin_root, "train", npoints=True)


def test_class_names_match_the_official_list(shared_data: Path) -> None:
    assert (shared_data / "metadata" / "modelnet40_shape_names.txt").read_text().split() == CLASS_NAMES

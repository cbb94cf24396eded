"""ShapeNetPart loader on the tiny stand-in: the official layout and part ranges, splits, normalisation, the
resample transform, `bench data check`, and errors that name the file and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.check import check_data
from bench.data.shapenetpart import (
    CATEGORIES,
    CATEGORY_PARTS,
    FOLDER,
    SEG_CLASSES,
    ShapeNetPart,
    category_file,
    split_json,
)
from bench.data.synthetic.parts import GENERATORS, PART_SIZES, labelled_shape
from bench.data.transforms import build_transform
from bench.errors import ConfigError, DataError

TINY = PART_SIZES["tiny"]


def test_official_categories_and_part_ranges() -> None:
    assert [name for name, _ in CATEGORIES][:4] == ["Airplane", "Bag", "Cap", "Car"] and len(CATEGORIES) == 16
    assert dict(CATEGORIES)["Table"] == "04379243" and dict(CATEGORIES)["Airplane"] == "02691156"
    assert SEG_CLASSES["Airplane"] == [0, 1, 2, 3] and SEG_CLASSES["Motorbike"] == [30, 31, 32, 33, 34, 35]
    assert SEG_CLASSES["Earphone"] == [16, 17, 18] and SEG_CLASSES["Table"] == [47, 48, 49]
    assert sum(CATEGORY_PARTS, []) == list(range(50))


def test_standin_layout_and_splits(standin_root: Path) -> None:
    folder = standin_root / FOLDER
    assert category_file(standin_root).read_text().splitlines()[0] == "Airplane\t02691156"
    entries = json.loads(split_json(standin_root, "test").read_text())
    n_train, n_val, n_test = np.sum([TINY.split_counts(k) for k in range(len(TINY.categories))], axis=0)
    assert entries[0].startswith("shape_data/") and len(entries) == n_test
    sizes = {s: len(ShapeNetPart(standin_root, s)) for s in ("trainval", "train", "val", "test")}
    assert sizes == {"trainval": n_train + n_val, "train": n_train, "val": n_val, "test": n_test}
    trainval = ShapeNetPart(standin_root, "trainval")
    assert list(trainval.categories) == sorted(trainval.categories)  # category order, then id, as the reference
    assert {trainval.class_names[c] for c in trainval.categories} == set(TINY.categories)
    first = trainval.items[0]
    assert (folder / first[0] / f"{first[1]}.txt").is_file()


def test_sample_keys_normalisation_and_part_labels(standin_root: Path) -> None:
    ds = ShapeNetPart(standin_root, "test")
    for i in range(len(ds)):
        sample = ds.load(i)
        assert set(sample) == {"xyz", "seg", "label", "category", "id"}
        assert sample["id"] == f"{ds.path(i).parent.name}/{ds.path(i).stem}" == ds.sample_id(i)
        assert sample["xyz"].dtype == np.float32 and sample["seg"].dtype == np.int64
        assert sample["label"] == sample["category"] == ds.categories[i] and sample["label"].dtype == np.int64
        np.testing.assert_allclose(sample["xyz"].mean(0), 0, atol=1e-5)  # pc_normalize on the whole shape
        assert np.linalg.norm(sample["xyz"], axis=1).max() == pytest.approx(1.0, abs=1e-5)
        assert set(np.unique(sample["seg"])) <= set(CATEGORY_PARTS[int(sample["label"])])
        raw = np.loadtxt(ds.path(i), dtype=np.float32)
        np.testing.assert_array_equal(sample["seg"], raw[:, -1].astype(np.int64))
    with_normals = ShapeNetPart(standin_root, "test", normals=True, cache=False).load(0)
    np.testing.assert_allclose(np.linalg.norm(with_normals["normal"], axis=1), 1, atol=1e-3)
    with pytest.raises(ConfigError, match="unknown option"):
        ShapeNetPart(standin_root, "test", normal=True)


def test_every_generator_labels_each_of_its_parts() -> None:
    rng = np.random.default_rng(0)
    for category in GENERATORS:
        rows = labelled_shape(category, rng, 2000)
        assert rows.shape == (2000, 7)
        present = set(np.unique(rows[:, -1]).astype(int))
        assert present <= set(SEG_CLASSES[category]) and len(present) >= 2


def test_resample_draws_with_replacement(standin_root: Path) -> None:
    sample = ShapeNetPart(standin_root, "test").load(0)
    out = build_transform([{"resample": {"n": 1000}}])(sample, np.random.default_rng(0))
    assert out["xyz"].shape == (1000, 3) and out["seg"].shape == (1000,)
    assert len(sample["xyz"]) < 1000  # more points than the shape has: only possible with replacement
    rows = {tuple(p) for p in sample["xyz"].tolist()}
    assert all(tuple(p) in rows for p in out["xyz"].tolist())


def test_data_check_covers_shapenetpart(standin_root: Path, tmp_path: Path) -> None:
    status = {(s.dataset, s.variant): s for s in check_data(standin_root)}["shapenetpart", "default"]
    assert status.present and not status.problems and not status.missing
    sizes = (len(ShapeNetPart(standin_root, "trainval")), len(ShapeNetPart(standin_root, "test")))
    assert (status.n_train, status.n_test) == sizes and sizes[1] == sum(TINY.split_counts(k)[2] for k in range(4))
    empty = {(s.dataset, s.variant): s for s in check_data(tmp_path)}["shapenetpart", "default"]
    assert not empty.present and category_file(tmp_path) in empty.missing


@pytest.fixture
def root_copy(standin_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(standin_root / FOLDER, tmp_path / FOLDER)
    return tmp_path


def test_bad_txt_lines_name_the_file_and_line(root_copy: Path) -> None:
    ds = ShapeNetPart(root_copy, "test", cache=False)
    path = ds.path(0)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4] + ["0.1 0.2 oops 0 0 1 0"] + lines[5:]) + "\n")
    with pytest.raises(DataError, match=rf"{path}, line 5: expected 7 numbers"):
        ds.load(0)
    path.write_text("\n".join(lines[:2] + ["0.1 0.2 0.3 0 0 1"] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=rf"{path}, line 3: expected 7 numbers"):
        ds.load(0)
    other = 49 if ds.categories[0] != 15 else 0
    path.write_text("\n".join(lines[:6] + [f"0.1 0.2 0.3 0 0 1 {other}"] + lines[7:]) + "\n")
    with pytest.raises(DataError, match=rf"{path}, line 7: part label {other} is not one of this category's"):
        ds.load(0)
    path.unlink()
    with pytest.raises(DataError, match=f"expected {path}"):
        ds.load(0)
    status = {(s.dataset, s.variant): s for s in check_data(root_copy)}["shapenetpart", "default"]
    assert status.present and "missing" in status.problems[0]


def test_bad_category_file_and_split_list(root_copy: Path) -> None:
    cat = category_file(root_copy)
    lines = cat.read_text().splitlines()
    cat.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=rf"{cat}, line 1: expected Airplane 02691156"):
        ShapeNetPart(root_copy, "test")
    cat.write_text("\n".join(lines) + "\n")
    split_json(root_copy, "test").write_text('["shape_data/02691156"]')
    with pytest.raises(DataError, match=r"entry 0 is 'shape_data/02691156'"):
        ShapeNetPart(root_copy, "test")
    split_json(root_copy, "val").write_text("[not json")
    with pytest.raises(DataError, match="not a readable JSON list"):
        ShapeNetPart(root_copy, "trainval")
    with pytest.raises(ConfigError, match="split"):
        ShapeNetPart(root_copy, "validation")

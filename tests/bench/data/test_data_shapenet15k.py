"""ShapeNetCore.v2.PC15k on the tiny stand-in: layout, variants, splits, ids, labels, determinism, errors, and the
generation normalisation helpers (PointFlow global stats, per-shape bbox, subsets)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.base import build_dataset
from bench.data.check import check_data
from bench.data.shapenet15k import (
    CATEGORIES,
    FOLDER,
    NORMALISATIONS,
    ShapeNet15k,
    denormalize_global,
    global_stats,
    normalize_box,
    normalize_global,
    split_dir,
    subsample,
)
from bench.data.shapenet55 import SYNSETS
from bench.data.synthetic import write_standin
from bench.errors import ConfigError, DataError

COUNTS = {"train": 6, "val": 4, "test": 4}  # tiny: per category


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny PC15k stand-in alone (read-only by convention: copy before editing)."""
    folder = tmp_path_factory.mktemp("pc15k") / "synthetic"
    write_standin(folder, ["shapenet15k"], size="tiny")
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.npy"))}  # fmt: skip


@pytest.mark.parametrize("split", ShapeNet15k.splits)
@pytest.mark.parametrize("variant", ShapeNet15k.variants)
def test_every_variant_and_split_loads(root: Path, variant: str, split: str) -> None:
    ds = build_dataset("shapenet15k", root, split, variant)
    synsets = sorted(CATEGORIES.values()) if variant == "all" else [CATEGORIES[variant]]
    assert len(ds) == COUNTS[split] * len(synsets) and ds.num_classes == 55
    ids = [ds.sample_id(i) for i in range(len(ds))]
    assert all(re.fullmatch(r"\d{8}/[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == len(ids)
    stems = [sorted(p.stem for p in split_dir(root, s, split).glob("*.npy")) for s in synsets]
    assert ids == [f"{s}/{stem}" for s, names in zip(synsets, stems, strict=True) for stem in names]
    for i in (0, len(ds) - 1):
        sample = ds.load(i)
        synset = sample["id"].split("/")[0]
        assert sample["xyz"].shape == (1024, 3) and sample["xyz"].dtype == np.float32
        assert sample["label"].dtype == np.int64 and sample["label"].shape == ()
        assert int(sample["label"]) == SYNSETS.index(synset) and ds.class_names[int(sample["label"])] in CATEGORIES
        raw = np.load(root / FOLDER / synset / split / f"{sample['id'].split('/')[1]}.npy")
        np.testing.assert_array_equal(sample["xyz"], raw)
    assert ds.load(-1)["id"] == ids[-1]


def test_default_variant_labels_and_standin_convention(root: Path) -> None:
    assert build_dataset("shapenet15k", root, "val").variant == "airplane"
    ds = build_dataset("shapenet15k", root, "train", "all")
    assert sorted(set(ds.labels.tolist())) == [0, 16, 18]  # airplane, car, chair in the 55-synset order
    for i in range(len(ds)):  # ShapeNetCore.v2: bbox-centred, unit bbox diagonal
        xyz = ds.load(i)["xyz"]
        lo, hi = xyz.min(0), xyz.max(0)
        np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
        assert np.linalg.norm(hi - lo) == pytest.approx(1, abs=1e-5)


def test_categories_differ_and_vary_within(root: Path) -> None:
    def extents(split: str) -> tuple[np.ndarray, np.ndarray]:
        ds = build_dataset("shapenet15k", root, split, "all")
        return np.stack([np.ptp(ds.load(i)["xyz"], axis=0) for i in range(len(ds))]), ds.labels

    x_train, y_train = extents("train")
    x_val, y_val = extents("val")
    for label in set(y_train.tolist()):  # genuine within-class variety
        assert x_train[y_train == label].std(0).max() > 0.01
    centroids = {c: x_train[y_train == c].mean(0) for c in set(y_train.tolist())}
    pred = [min(centroids, key=lambda c: np.linalg.norm(x - centroids[c])) for x in x_val]
    assert np.mean(np.array(pred) == y_val) >= 0.9


def test_same_seed_gives_identical_files(root: Path, tmp_path: Path) -> None:
    written = write_standin(tmp_path / "again", ["shapenet15k"], size="tiny")
    assert set(written) == {"shapenet15k"} and len(written["shapenet15k"]) == 3 * sum(COUNTS.values())
    assert digests(tmp_path / "again") == digests(root)
    write_standin(tmp_path / "other", ["shapenet15k"], size="tiny", seed=1)
    assert digests(tmp_path / "other").keys().isdisjoint(digests(root).keys())


def test_missing_folders_and_bad_arrays(root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(split_dir(tmp_path / "none", "03001627", "val")))):
        build_dataset("shapenet15k", tmp_path / "none", "val", "chair")
    with pytest.raises(DataError, match="no synset folders"):
        build_dataset("shapenet15k", tmp_path / "none", "val", "all")
    copy = tmp_path / "copy"
    shutil.copytree(root / FOLDER, copy / FOLDER)
    ds = build_dataset("shapenet15k", copy, "test", "car")
    bad = [
        (np.full((8, 3), np.nan, np.float32), "NaN"),
        (np.zeros((8, 2), np.float32), r"shape \(8, 2\)"),
        (np.zeros((2, 8, 3), np.float32), r"shape \(2, 8, 3\)"),
        (np.zeros((8, 4), np.float32), r"shape \(8, 4\)"),
    ]
    for array, needle in bad:
        np.save(ds.files[0], array)
        with pytest.raises(DataError, match=f"{re.escape(str(ds.files[0]))}.*{needle}"):
            ds.load(0)
    ds.files[1].write_bytes(b"not an npy file")
    with pytest.raises(DataError, match=f"{re.escape(str(ds.files[1]))}: not a readable .npy"):
        ds.load(1)
    (copy / FOLDER / "99999999" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="99999999: not one of the 55"):
        build_dataset("shapenet15k", copy, "train", "all")
    with pytest.raises(ConfigError, match='unknown shapenet15k split "validation"'):
        build_dataset("shapenet15k", copy, "validation", "car")


def test_bench_data_check_lists_every_variant(root: Path, tmp_path: Path) -> None:
    status = {(s.dataset, s.variant): s for s in check_data(root) if s.dataset == "shapenet15k"}
    assert set(status) == {("shapenet15k", v) for v in ShapeNet15k.variants}
    for variant, s in status.items():
        n = 3 if variant[1] == "all" else 1
        assert s.present and not s.missing and not s.problems and (s.n_train, s.n_test) == (6 * n, 4 * n)
    assert ShapeNet15k.light_check(root, "chair")[1] == COUNTS
    empty = {(s.dataset, s.variant): s for s in check_data(tmp_path / "empty")}
    assert empty["shapenet15k", "all"].missing == [tmp_path / "empty" / FOLDER]
    assert empty["shapenet15k", "car"].missing == [split_dir(tmp_path / "empty", "02958343", s)
                                                   for s in ("train", "val", "test")]  # fmt: skip
    copy = tmp_path / "copy"
    shutil.copytree(root / FOLDER, copy / FOLDER)
    for f in split_dir(copy, "02691156", "val").glob("*.npy"):
        f.unlink()
    problems, counts = ShapeNet15k.light_check(copy, "airplane")
    assert counts == {"train": 6, "val": 0, "test": 4}
    assert problems == [f"{split_dir(copy, '02691156', 'val')} holds no .npy files"]
    shutil.rmtree(split_dir(copy, "03001627", "test"))
    assert f"{split_dir(copy, '03001627', 'test')} is missing" in ShapeNet15k.light_check(copy, "all")[0]


def test_global_stats_follow_pointflow() -> None:
    clouds = np.array([[[0, 0, 0], [2, 0, 0]], [[0, 4, 0], [2, 4, 6]]], dtype=np.float32)  # (2 shapes, 2 pts, 3)
    mean, std = global_stats(clouds)
    assert mean.shape == (1, 1, 3) and std.shape == (1, 1, 1)
    np.testing.assert_allclose(mean.reshape(3), [1, 2, 1.5])  # per-axis mean of the 4 points
    # ONE std of all 12 coordinates (0,0,0, 2,0,0, 0,4,0, 2,4,6): mean 18/12 = 1.5, squared deviations
    # 7 * 2.25 + 2 * 0.25 + 2 * 6.25 + 20.25 = 49, population std (numpy default) sqrt(49 / 12)
    expected = np.sqrt(49 / 12)
    assert float(std.reshape(())) == pytest.approx(expected, rel=1e-12)
    normed = normalize_global(clouds, mean, std)
    assert normed.dtype == np.float32
    np.testing.assert_allclose(normed[1, 1], ([2, 4, 6] - mean.reshape(3)) / expected, rtol=1e-6)


def test_global_round_trip_and_errors() -> None:
    rng = np.random.default_rng(0)
    clouds = (rng.normal(size=(5, 64, 3)) * [1, 2, 3] + [4, -1, 0]).astype(np.float32)
    mean, std = global_stats(clouds)
    normed = normalize_global(clouds, mean, std)
    np.testing.assert_allclose(normed.reshape(-1, 3).mean(0), 0, atol=1e-5)
    centred = clouds - clouds.reshape(-1, 3).mean(0)  # the scalar std also holds the spread of the axis means
    assert normed.reshape(-1).std() == pytest.approx(np.sqrt((centred**2).mean()) / float(std.reshape(())), rel=1e-5)
    assert normalize_global(centred, *global_stats(centred)).reshape(-1).std() == pytest.approx(1, rel=1e-5)
    back = denormalize_global(normed, mean, std)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, clouds, atol=1e-5)
    with pytest.raises(DataError, match="zero spread"):
        global_stats(np.ones((2, 4, 3)))
    with pytest.raises(DataError, match=r"shape \(4, 2\)"):
        global_stats(np.ones((4, 2)))
    assert NORMALISATIONS == ("global", "box")


def test_normalize_box_spans_minus_one_to_one() -> None:
    rng = np.random.default_rng(1)
    clouds = (rng.uniform(-1, 1, size=(4, 100, 3)) * [[[3, 1, 0.5]], [[0.2, 2, 1]], [[1, 1, 1]], [[5, 5, 9]]]
              + rng.normal(size=(4, 1, 3)) * 10).astype(np.float32)  # fmt: skip
    out = normalize_box(clouds)
    assert out.shape == clouds.shape and out.dtype == np.float32
    lo, hi = out.min(axis=1), out.max(axis=1)
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    np.testing.assert_allclose((hi - lo).max(axis=1), 2, atol=1e-6)  # longest axis spans exactly [-1, 1]
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
    np.testing.assert_allclose(normalize_box(clouds[2]), out[2], atol=1e-6)  # a single (P, 3) cloud too
    np.testing.assert_allclose(normalize_box(np.array([[0, 0, 0], [4, 2, 0.0]])), [[-1, -0.5, 0], [1, 0.5, 0]])
    with pytest.raises(DataError, match="cloud 1 has a zero-size bounding box"):
        normalize_box(np.stack([clouds[0], np.ones((100, 3), np.float32)]))


def test_subsample_without_replacement() -> None:
    cloud = np.arange(30, dtype=np.float32).reshape(10, 3)
    out = subsample(cloud, 4, np.random.default_rng(0))
    assert out.shape == (4, 3) and len({tuple(row) for row in out}) == 4
    assert all(any((row == c).all() for c in cloud) for row in out)
    np.testing.assert_array_equal(out, subsample(cloud, 4, np.random.default_rng(0)))
    assert sorted(subsample(cloud, 10, np.random.default_rng(1))[:, 0]) == sorted(cloud[:, 0])
    with pytest.raises(DataError, match="n=11 .* P=10"):
        subsample(cloud, 11, np.random.default_rng(0))

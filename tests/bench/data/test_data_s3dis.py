"""S3DIS: the per-room npy format of the stand-in, the area split, item counts, block sampling, label weights,
whole-room block cover, and bad files named in errors and `bench data check`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.base import TransformedDataset
from bench.data.check import check_data
from bench.data.s3dis import S3DIS, RoomBlock, block_starts, items_per_room, label_weights, read_room, room_blocks
from bench.data.transforms import build_transform
from bench.errors import DataError


@pytest.fixture(scope="module")
def rooms_root(tmp_path_factory) -> Path:
    from bench.data.synthetic import write_standin

    root = tmp_path_factory.mktemp("s3dis")
    write_standin(root, ["s3dis"], size="tiny")
    return root


def test_standin_is_in_the_preprocessed_room_format(rooms_root: Path):
    files = sorted((rooms_root / "stanford_indoor3d").glob("*.npy"))
    names = [f.name for f in files]
    assert "Area_5_office_1.npy" in names and len(names) == 7
    assert {n.split("_")[1] for n in names} == {"1", "2", "3", "4", "5", "6"}
    data = np.load(files[0])
    assert data.ndim == 2 and data.shape[1] == 7 and data.shape[0] == 5000
    assert np.allclose(data[:, :3].min(0), 0.0)  # the preprocessing shifts each room to its minimum corner
    assert data[:, 3:6].min() >= 0 and data[:, 3:6].max() <= 255
    assert set(np.unique(data[:, 6])) <= set(range(13)) and np.all(data[:, 6] == np.round(data[:, 6]))


def test_area5_split_and_item_counts(rooms_root: Path):
    train, test = (S3DIS(rooms_root, split, num_point=512) for split in ("train", "test"))
    assert [n[:6] for n in test.names] == ["Area_5", "Area_5"]
    assert all(not n.startswith("Area_5") for n in train.names) and len(train.names) == 5
    # int(25000 / 512) = 48 items, round(48 / 5) = 10 per room (equal rooms)
    assert len(train) == 5 * round(int(25000 / 512) / 5) == 50
    assert np.bincount(train.room_idxs).tolist() == [10] * 5
    # int(10000 * 0.5 / 512) = 9 items, round(4.5) = 4 per room (numpy rounds half to even, as the reference)
    assert len(S3DIS(rooms_root, "test", num_point=512, sample_rate=0.5)) == 8


def test_items_are_allotted_in_proportion_to_room_points():
    idx = items_per_room([3000, 1000], num_point=100, sample_rate=1.0)  # 40 items: 30 and 10
    assert np.bincount(idx).tolist() == [30, 10]
    assert np.bincount(items_per_room([2500, 2500, 5000], 1000, 1.0)).tolist() == [2, 2, 5]  # round(2.5) = 2


def test_label_weights_hand_computed():
    counts = np.array([8, 1, 0, 27])
    # freq = 8/36, 1/36, 0, 27/36 -> (27/8)^(1/3) = 1.5, 27^(1/3) = 3, absent -> 0, 1
    assert label_weights(counts) == pytest.approx([1.5, 3.0, 0.0, 1.0], rel=1e-5)


def test_dataset_label_weights_come_from_its_rooms(rooms_root: Path):
    train = S3DIS(rooms_root, "train")
    counts = np.bincount(np.concatenate([np.load(p)[:, 6].astype(int) for p in train.paths]), minlength=13)
    assert np.array_equal(train.label_counts, counts)
    freq = counts / counts.sum()
    seen = counts > 0
    assert train.labelweights[seen] == pytest.approx((freq.max() / freq[seen]) ** (1 / 3), rel=1e-5)


def test_block_sampling_follows_the_reference(rooms_root: Path):
    room = S3DIS(rooms_root, "train").load(0)
    block = RoomBlock(256)
    out = block(room, np.random.default_rng(3))
    assert out["xyz"].shape == (256, 3) and out["seg"].shape == (256,) and out["seg"].dtype == np.int64
    assert set(out) == {"xyz", "seg", "id"} and out["id"] == room["id"]  # the numpy "room" name is dropped
    assert np.abs(out["xyz"][:, :2]).max() <= 0.5 + 1e-6  # x, y centred on the block centre
    assert out["xyz"][:, 2].min() >= 0  # z raw
    # every sampled point is a room point shifted by the same xy centre
    shifted = out["xyz"][0] - room["xyz"]
    hits = np.flatnonzero(np.abs(shifted[:, 2]) < 1e-7)
    centre = -shifted[hits[0], :2]
    back = out["xyz"] + np.array([*centre, 0], dtype=np.float32)
    rows = {tuple(np.round(p, 5)) for p in room["xyz"]}
    assert all(tuple(np.round(p, 5)) in rows for p in back)


def test_block_sampling_redraws_until_dense_and_replaces_only_when_short():
    xyz = np.zeros((30, 3), np.float32)
    xyz[:20, 0] = np.linspace(0, 0.2, 20)  # a dense cluster of 20 points
    xyz[20:, 0] = np.linspace(5, 50, 10)  # 10 isolated points
    sample = {"xyz": xyz, "seg": np.arange(30, dtype=np.uint8), "room": np.asarray("r")}
    out = RoomBlock(40, min_points=15)(sample, np.random.default_rng(0))
    assert set(out["seg"].tolist()) <= set(range(20)) and len(out["seg"]) == 40  # with replacement: 20 < 40
    out = RoomBlock(10, min_points=15)(sample, np.random.default_rng(0))
    assert len(set(out["seg"].tolist())) == 10  # without replacement
    with pytest.raises(DataError, match="room r"):
        RoomBlock(40, min_points=25, max_tries=20)(sample, np.random.default_rng(0))


def test_blocks_are_reproducible_per_seed_epoch_index(rooms_root: Path):
    base = S3DIS(rooms_root, "test", num_point=256)
    a = TransformedDataset(base, build_transform([{"s3dis_block": {"n": 256}}]), seed=0)
    b = TransformedDataset(base, build_transform([{"s3dis_block": {"n": 256}}]), seed=0)
    assert np.array_equal(a[3]["xyz"].numpy(), b[3]["xyz"].numpy())
    b.set_epoch(1)
    assert not np.array_equal(a[3]["xyz"].numpy(), b[3]["xyz"].numpy())


def test_whole_room_blocks_cover_every_point_as_brute_force():
    rng = np.random.default_rng(0)
    xyz = (rng.random((3000, 3)) * [3.3, 2.2, 3.0]).astype(np.float32)
    starts_x, starts_y = block_starts(0.0, float(xyz[:, 0].max()), 1.0, 0.5), block_starts(0.0, 2.2, 1.0, 0.5)
    assert starts_x[-1] + 1.0 == pytest.approx(float(xyz[:, 0].max())) and len(starts_y) == 4
    blocks = list(room_blocks(xyz, 1.0, 0.5))
    cover = np.zeros(len(xyz), int)
    lo = xyz[:, :2].min(0).astype(np.float64)
    for sx in block_starts(lo[0], float(xyz[:, 0].max()), 1.0, 0.5):
        for sy in block_starts(lo[1], float(xyz[:, 1].max()), 1.0, 0.5):
            x, y = xyz[:, 0].astype(np.float64), xyz[:, 1].astype(np.float64)
            brute = np.flatnonzero((x >= sx) & (x <= sx + 1) & (y >= sy) & (y <= sy + 1))
            if brute.size:
                centre, got = blocks.pop(0)
                assert np.array_equal(np.sort(got), brute) and centre == pytest.approx([sx + 0.5, sy + 0.5])
                cover[brute] += 1
    assert not blocks and cover.min() >= 1


def test_bad_room_files_are_named(tmp_path: Path, rooms_root: Path):
    bad = tmp_path / "Area_1_bad_1.npy"
    np.save(bad, np.zeros((4, 6)))
    with pytest.raises(DataError, match=r"Area_1_bad_1.npy: expected an \(N, 7\)"):
        read_room(bad)
    np.save(bad, np.array([[0, 0, 0, 1, 1, 1, 13.0]]))
    with pytest.raises(DataError, match="Area_1_bad_1.npy: labels .* 0..12"):
        read_room(bad)
    bad.write_text("not numpy")
    with pytest.raises(DataError, match="Area_1_bad_1.npy: not a readable"):
        read_room(bad)


def test_bench_data_check_covers_s3dis(tmp_path: Path, rooms_root: Path):
    (status,) = [s for s in check_data(tmp_path) if s.dataset == "s3dis"]
    assert not status.present and status.missing == [tmp_path / "stanford_indoor3d"]
    root = tmp_path / "copy"
    shutil.copytree(rooms_root, root)
    (status,) = [s for s in check_data(root) if s.dataset == "s3dis"]
    assert status.present and (status.n_train, status.n_test) == (5, 2)
    assert status.problems == ["7 room files, the official preprocessing writes 272"]
    np.save(root / "stanford_indoor3d" / "Area_2_broken_1.npy", np.zeros((3, 4)))
    (status,) = [s for s in check_data(root) if s.dataset == "s3dis"]
    assert any("Area_2_broken_1.npy: shape (3, 4)" in p for p in status.problems)

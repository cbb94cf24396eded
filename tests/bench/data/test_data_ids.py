"""Stable sample ids: every registered data set's ``load(i)["id"]`` (official layout, unique, stable), and ids
through ``to_tensors``, transforms and the default collate."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.data import modelnet40
from bench.data.base import TransformedDataset, build_dataset, to_tensors
from bench.data.transforms import build_transform
from bench.registry import DATASETS, discover

discover("bench.data")

#: the id layout of every registered data set: one added without a pattern here fails the test below
ID_PATTERNS = {
    "modelnet40": r"(airplane|bathtub|chair|table)_\d{4}",
    "modelnet_fewshot": r"(5|10)way_(10|20)shot/[0-9]/(train|test)/\d+",
    "s3dis": r"Area_[1-6]_[A-Za-z]+_\d+",
    "scanobjectnn": r"(training|test)_objectdataset(_augmentedrot_scale75)?/\d+",
    "shapenet55": r"\d{8}-[0-9a-f]{32}",
    "shapenet15k": r"\d{8}/[0-9a-f]{32}",
    "shapenet_occ": r"\d{8}/[0-9a-f]{32}",
    "shapenetpart": r"\d{8}/[0-9a-f]{32}",
}


def splits_of(name: str) -> list[tuple[str, str, dict]]:
    """(variant, split, options) of every variant and split of a registered set (few-shot: folds 0 and 9)."""
    cls = DATASETS.get(name)
    folds = [{"fold": 0}, {"fold": 9}] if cls.seed_option == "fold" else [{}]
    return [(variant, split, options) for variant in cls.variants for split in cls.splits for options in folds]


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_data_set_returns_stable_unique_str_ids(name: str, tiny_data_root: Path) -> None:
    assert name in ID_PATTERNS, f"add the id layout of data set {name} to ID_PATTERNS"
    root = tiny_data_root / "synthetic"
    for variant, split, options in splits_of(name):
        first = build_dataset(name, root, split, variant, **options)
        again = build_dataset(name, root, split, variant, **options)
        ids = [first.load(i)["id"] for i in range(len(first))]
        assert len(ids) > 0 and all(type(i) is str for i in ids)
        assert all(re.fullmatch(ID_PATTERNS[name], i) for i in ids), (name, split, ids[:3])
        assert ids == [again.load(i)["id"] for i in range(len(again))]
        assert ids == [first.sample_id(i) for i in range(len(first))]
        assert first.load(-1)["id"] == ids[-1]
        if name == "s3dis":  # every block item of a room carries the room's name; rooms have distinct names
            assert ids == [first.names[r] for r in first.room_idxs] and len(set(first.names)) == len(first.names)
        else:
            assert len(set(ids)) == len(ids), f"{name}/{variant}/{split}: duplicate ids"


def test_id_layouts_follow_the_files(tiny_data_root: Path) -> None:
    root = tiny_data_root / "synthetic"
    scan = build_dataset("scanobjectnn", root, "train", "hardest")
    assert scan.load(17)["id"] == "training_objectdataset_augmentedrot_scale75/17"
    shapenet = build_dataset("shapenet55", root, "test")
    assert shapenet.load(0)["id"] == shapenet.files[0].removesuffix(".npy")
    net = build_dataset("modelnet40", root, "train")
    listed = (root / modelnet40.FOLDER / "modelnet40_train.txt").read_text().split()
    assert [net.load(i)["id"] for i in range(len(net))] == listed
    fewshot = build_dataset("modelnet_fewshot", root, "test", "10way20shot", fold=4)
    assert fewshot.load(3)["id"] == "10way_20shot/4/test/3"
    rooms = build_dataset("s3dis", root, "test")
    assert {rooms.load(i)["id"] for i in range(len(rooms))} == {"Area_5_office_1", "Area_5_conferenceRoom_1"}


def test_modelnet40_ids_without_a_fitting_list_are_cache_indices(tiny_data_root: Path, tmp_path: Path) -> None:
    folder = tmp_path / modelnet40.FOLDER
    shutil.copytree(tiny_data_root / "synthetic" / modelnet40.FOLDER, folder)
    listing = folder / "modelnet40_test.txt"
    listing.write_text("\n".join(listing.read_text().split()[:3]) + "\n")  # no longer fits the cache
    assert build_dataset("modelnet40", tmp_path, "test").load(5)["id"] == "modelnet40_test_8192pts_fps/5"
    listing.unlink()
    assert build_dataset("modelnet40", tmp_path, "test").load(0)["id"] == "modelnet40_test_8192pts_fps/0"


def test_to_tensors_keeps_strings() -> None:
    out = to_tensors({"xyz": np.zeros((4, 3)), "id": "a/1", "room": np.asarray("Area_1_office_1"),
                      "raw": np.asarray(b"x/2"), "label": np.asarray(3)})  # fmt: skip
    assert out["id"] == "a/1" and out["room"] == "Area_1_office_1" and out["raw"] == "x/2"
    assert all(type(out[k]) is str for k in ("id", "room", "raw"))
    assert out["xyz"].dtype == torch.float32 and out["label"].dtype == torch.int64
    assert type(to_tensors({"id": np.str_("b/2")})["id"]) is str


def test_a_batch_holds_the_list_of_its_ids(tiny_data_root: Path) -> None:
    base = build_dataset("scanobjectnn", tiny_data_root / "synthetic", "test", "objonly")
    view = TransformedDataset(base, build_transform(["rotate_y", {"random_subset": {"n": 64}}]), seed=0)
    batch = next(iter(DataLoader(view, batch_size=4)))
    assert batch["id"] == [f"test_objectdataset/{i}" for i in range(4)]
    assert batch["xyz"].shape == (4, 64, 3)
    rooms = build_dataset("s3dis", tiny_data_root / "synthetic", "test", num_point=512)
    blocks = TransformedDataset(rooms, build_transform([{"s3dis_block": {"n": 128}}]), seed=0)
    batch = next(iter(DataLoader(blocks, batch_size=3)))
    assert set(batch) == {"xyz", "seg", "id"} and batch["id"] == [rooms.sample_id(i) for i in range(3)]

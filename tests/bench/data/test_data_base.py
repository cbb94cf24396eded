"""TransformedDataset determinism (seed, epoch, index; worker count) and the build_dataset factory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.data.base import TransformedDataset, build_dataset, pc_normalize
from bench.data.scanobjectnn import ScanObjectNN
from bench.data.transforms import build_transform
from bench.errors import UnknownNameError

AUGMENT = ["rotate_y", "scale_translate", {"random_subset": {"n": 256}}]


def view(root: Path, seed: int = 0) -> TransformedDataset:
    return TransformedDataset(ScanObjectNN(root, "train", "objonly"), build_transform(AUGMENT), seed=seed)


def test_items_are_tensors(standin_root: Path) -> None:
    item = view(standin_root)[0]
    assert item["xyz"].dtype == torch.float32 and item["xyz"].shape == (256, 3)
    assert item["label"].dtype == torch.int64 and item["label"].shape == ()
    plain = TransformedDataset(ScanObjectNN(standin_root, "train", "objonly"), None, seed=0)[5]
    np.testing.assert_array_equal(plain["xyz"].numpy(), ScanObjectNN(standin_root, "train", "objonly").load(5)["xyz"])


def test_same_seed_epoch_index_is_identical_and_order_free(standin_root: Path) -> None:
    a, b = view(standin_root), view(standin_root)
    late = [b[i] for i in (9, 4, 3)][-1]  # drawn after other samples
    assert torch.equal(a[3]["xyz"], late["xyz"])
    a.set_epoch(1)
    assert not torch.equal(a[3]["xyz"], late["xyz"])
    b.set_epoch(1)
    assert torch.equal(a[3]["xyz"], b[3]["xyz"])
    assert not torch.equal(view(standin_root, seed=1)[3]["xyz"], view(standin_root, seed=0)[3]["xyz"])


def test_worker_count_does_not_change_batches(standin_root: Path) -> None:
    ds = view(standin_root)
    ds.set_epoch(2)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(ds, batch_size=16, shuffle=False, num_workers=workers)
        batches[workers] = torch.cat([batch["xyz"] for batch in loader])
    assert torch.equal(batches[0], batches[2])


def test_build_dataset(standin_root: Path) -> None:
    assert build_dataset("scanobjectnn", standin_root, "test").variant == "objbg"  # first variant by default
    assert len(build_dataset("shapenet55", standin_root, "train", whole=True)) == 16
    with pytest.raises(UnknownNameError, match='Did you mean "scanobjectnn"'):
        build_dataset("scanobjectn", standin_root, "train")


def test_pc_normalize() -> None:
    xyz = np.array([[0, 0, 0], [2, 0, 0], [0, 4, 0], [0, 0, 6]], np.float64)
    out = pc_normalize(xyz)
    centred = xyz - xyz.mean(0)
    np.testing.assert_allclose(out, centred / np.linalg.norm(centred, axis=1).max(), rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(pc_normalize(np.ones((3, 3))), np.zeros((3, 3)))

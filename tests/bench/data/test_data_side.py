"""Side data: the HDF5 layout keyed by sample id (nested groups for ids with '/'), the "<name>.<key>" sample keys,
errors naming the file, the missing ids and the missing keys, attribute delegation, and DataLoader workers."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
from torch.utils.data import DataLoader

from bench.data.base import TransformedDataset, build_dataset
from bench.data.side import SideData, WithSideData, load_side_data, register_side_data, side_key
from bench.data.synthetic.side import write_side_data
from bench.data.transforms import build_transform
from bench.errors import BenchError, ConfigError, DataError
from bench.registry import SIDE_DATA

#: a test-only spec (no real side data ships with the bench)
TEACHER = register_side_data(SideData("test_teacher", "side/teacher.h5", ("embedding", "occupancy"),
                                      "per-shape teacher embedding and a 4^3 occupancy grid (tests only)"))


def teacher_arrays(ids: list[str]) -> dict[str, list[np.ndarray]]:
    """A distinct embedding (float32 (8,)) and occupancy (bool (4, 4, 4)) per id."""
    rng = np.random.default_rng(7)
    return {"embedding": [rng.normal(size=8).astype(np.float32) for _ in ids],
            "occupancy": [rng.random((4, 4, 4)) > 0.5 for _ in ids]}  # fmt: skip


@pytest.fixture
def scan(tiny_data_root: Path):
    return build_dataset("scanobjectnn", tiny_data_root / "synthetic", "test", "objonly")


def write_for(dataset, root: Path, drop: int = 0) -> dict[str, list[np.ndarray]]:
    """Write TEACHER below ``root`` for every id of ``dataset`` but the last ``drop``; return the arrays."""
    ids = [dataset.sample_id(i) for i in range(len(dataset) - drop)]
    arrays = teacher_arrays(ids)
    write_side_data(TEACHER.file(root), ids, arrays)
    return arrays


def test_round_trip_with_nested_ids(scan, tmp_path: Path) -> None:
    arrays = write_for(scan, tmp_path)
    with h5py.File(TEACHER.file(tmp_path), "r") as f:  # "test_objectdataset/3" is group 3 inside a group
        assert list(f) == ["test_objectdataset"] and isinstance(f["test_objectdataset"]["3"], h5py.Group)
    source = load_side_data("test_teacher", tmp_path)
    assert source.ids() == sorted(scan.sample_id(i) for i in range(len(scan)))
    wrapped = WithSideData(scan, [source])
    assert len(wrapped) == len(scan)
    for i in (0, 3, len(scan) - 1):
        sample, base = wrapped.load(i), scan.load(i)
        assert set(sample) == {"xyz", "label", "id", "test_teacher.embedding", "test_teacher.occupancy"}
        np.testing.assert_array_equal(sample["xyz"], base["xyz"])
        np.testing.assert_array_equal(sample[side_key("test_teacher", "embedding")], arrays["embedding"][i])
        assert sample["test_teacher.occupancy"].dtype == bool and sample["test_teacher.embedding"].dtype == np.float32
        np.testing.assert_array_equal(sample["test_teacher.occupancy"], arrays["occupancy"][i])
    assert wrapped.class_names == scan.class_names and wrapped.num_classes == 15 and wrapped.path == scan.path


def test_missing_ids_are_named_at_construction(scan, tmp_path: Path) -> None:
    write_for(scan, tmp_path, drop=7)
    ids = [scan.sample_id(i) for i in range(len(scan))]
    with pytest.raises(DataError) as err:
        WithSideData(scan, load_side_data(TEACHER, tmp_path))
    message = str(err.value)
    assert str(TEACHER.file(tmp_path)) in message and "no group for 7 sample id(s)" in message
    assert ", ".join(ids[-7:-2]) + ", ..." in message and ids[-2] not in message


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"file not found: expected {tmp_path / 'side' / 'teacher.h5'}"):
        load_side_data("test_teacher", tmp_path)
    (tmp_path / "side").mkdir()
    (tmp_path / "side" / "teacher.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="is not a readable HDF5 file"):
        load_side_data("test_teacher", tmp_path)


def test_missing_key_is_named(scan, tmp_path: Path) -> None:
    ids = [scan.sample_id(i) for i in range(len(scan))]
    write_side_data(TEACHER.file(tmp_path), ids, {"embedding": teacher_arrays(ids)["embedding"]})
    source = load_side_data(TEACHER, tmp_path)
    with pytest.raises(DataError, match=rf"{len(ids)} sample id\(s\) lack keys, e.g. {ids[0]} has no occupancy"):
        WithSideData(scan, source)
    with pytest.raises(DataError, match="has no occupancy"):
        source.read(ids[1])
    assert source.missing_keys(ids[0]) == ["occupancy"] and source.missing_keys("nope/0") is None


def test_rooms_share_their_side_data_and_attributes_delegate(tiny_data_root: Path, tmp_path: Path) -> None:
    rooms = build_dataset("s3dis", tiny_data_root / "synthetic", "train", num_point=512)
    arrays = {"embedding": [np.full(8, k, np.float32) for k in range(5)], "occupancy": [np.zeros(2)] * 5}
    write_side_data(TEACHER.file(tmp_path), rooms.names, arrays)
    wrapped = WithSideData(rooms, [load_side_data(TEACHER, tmp_path)])
    for i in (0, len(rooms) - 1):
        room = int(rooms.room_idxs[i])
        np.testing.assert_array_equal(wrapped.load(i)["test_teacher.embedding"], np.full(8, room, np.float32))
    assert wrapped.labelweights is rooms.labelweights and wrapped.class_weights() is rooms.labelweights
    assert [name for name, _, _ in wrapped.rooms()] == rooms.names
    with pytest.raises(AttributeError):
        _ = wrapped.no_such_attribute


def test_batches_through_workers_and_pickling(scan, tmp_path: Path) -> None:
    arrays = write_for(scan, tmp_path)
    wrapped = WithSideData(scan, load_side_data(TEACHER, tmp_path))
    view = TransformedDataset(wrapped, build_transform([{"random_subset": {"n": 32}}]), seed=0)
    batches = list(DataLoader(view, batch_size=8, num_workers=2))
    assert batches[0]["id"] == [scan.sample_id(i) for i in range(8)]
    assert batches[0]["test_teacher.embedding"].shape == (8, 8)
    np.testing.assert_array_equal(batches[1]["test_teacher.embedding"].numpy(), np.stack(arrays["embedding"][8:16]))
    copy = pickle.loads(pickle.dumps(wrapped))  # what a spawned worker receives: it opens its own handle
    np.testing.assert_array_equal(copy.load(2)["test_teacher.occupancy"], arrays["occupancy"][2])


def test_spec_rules_and_registration() -> None:
    assert SIDE_DATA.get("test_teacher") is TEACHER
    assert register_side_data(SideData("test_teacher", "side/teacher.h5", ("embedding", "occupancy"),
                                       TEACHER.description)) == TEACHER  # the same spec again: no-op
    with pytest.raises(BenchError, match="registered twice with different specs"):
        register_side_data(SideData("test_teacher", "side/other.h5", ("embedding",)))
    with pytest.raises(ConfigError, match="without '.' or '/'"):
        SideData("a.b", "x.h5", ("k",))
    with pytest.raises(ConfigError, match="without '.' or '/'"):
        SideData("ok", "x.h5", ("k/1",))
    with pytest.raises(ConfigError, match="relative to the data root"):
        SideData("ok", "/abs/x.h5", ("k",))
    with pytest.raises(ConfigError, match="distinct"):
        SideData("ok", "x.h5", ())


def test_writer_is_atomic_and_checks_its_input(tmp_path: Path) -> None:
    path = tmp_path / "side.h5"
    with pytest.raises(ConfigError, match="distinct"):
        write_side_data(path, ["a", "a"], {"k": [np.zeros(1)] * 2})
    with pytest.raises(ConfigError, match="has 1 arrays for 2 ids"):
        write_side_data(path, ["a", "b"], {"k": [np.zeros(1)]})
    write_side_data(path, ["a/1", "b"], {"k": np.arange(4).reshape(2, 2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side.h5"]  # no temp file left
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["a/1"]["k"][()], [0, 1])
    with pytest.raises(TypeError):  # h5py cannot store object arrays: fails after the first group is written
        write_side_data(path, ["c", "d"], {"k": [np.zeros(2), np.array([object(), object()])]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["side.h5"]  # the old file stays whole, no temp file
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["a", "b"]

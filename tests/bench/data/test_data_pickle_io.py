"""Restricted unpickler: numpy arrays and plain containers load; anything else is refused before import."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from bench.data.pickle_io import dump_pickle, restricted_load
from bench.errors import DataError


class Custom:
    """A class the restricted unpickler must refuse."""

    def __init__(self) -> None:
        self.value = 1


class RunsCommand:
    """Pickles to os.system(<touch marker>): loading it unrestricted would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_and_containers_round_trip(tmp_path: Path, protocol: int) -> None:
    obj = {
        "points": [np.arange(12, dtype=np.float32).reshape(4, 3), np.ones((2, 6), np.float64)],
        "labels": [np.array([3], dtype=np.int32)],
        "meta": ("a", 1, 2.5, None, True, b"raw", {1, 2}, frozenset({3}), bytearray(b"x"), np.float32(1.5)),
    }
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    back = restricted_load(path)
    np.testing.assert_array_equal(back["points"][0], obj["points"][0])
    assert back["points"][0].dtype == np.float32 and back["labels"][0].dtype == np.int32
    assert back["meta"][:8] == obj["meta"][:8] and back["meta"][9] == np.float32(1.5)


def test_os_system_is_refused_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.dat"
    path.write_bytes(pickle.dumps([RunsCommand(marker)]))
    with pytest.raises(DataError) as err:
        restricted_load(path)
    message = str(err.value)
    assert str(path) in message and ".system`" in message and "forbidden" in message
    assert not marker.exists()


def test_custom_class_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "custom.pkl"
    path.write_bytes(pickle.dumps([np.zeros(3), Custom()]))
    with pytest.raises(DataError, match=r"custom\.pkl.*Custom`"):
        restricted_load(path)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.dat"
    garbage.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="garbage.dat"):
        restricted_load(garbage)
    with pytest.raises(DataError, match=str(tmp_path / "absent.dat")):
        restricted_load(tmp_path / "absent.dat")


def test_dump_pickle_is_atomic_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.dat"
    dump_pickle([[np.ones((5, 6), np.float32)], [np.array([1], np.int32)]], path)
    dump_pickle([[np.zeros((5, 6), np.float32)], [np.array([2], np.int32)]], path)  # replaces
    points, labels = restricted_load(path)
    assert points[0].sum() == 0 and labels[0][0] == 2
    assert [p.name for p in path.parent.iterdir()] == ["cache.dat"]

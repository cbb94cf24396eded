"""``bench score generation``: samples made elsewhere scored against the reference split (or a reference file) into
one RunRecord that the leaderboard shows beside our rows; bad input fails naming the file and writes nothing."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data.base import build_dataset
from bench.data.synthetic import write_standin
from bench.records import load_records
from bench.registry import load_plugins
from bench.scoring import reference_clouds

load_plugins()
ORDER = ["nna_cd", "nna_emd", "cov_cd", "cov_emd", "mmd_cd", "mmd_emd"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """A data root with only the tiny PC15k stand-in (4 val clouds x 1024 points per category)."""
    root = tmp_path_factory.mktemp("score-data")
    write_standin(root / "synthetic", ["shapenet15k"], size="tiny")
    return root


@pytest.fixture(scope="module")
def val(data_root) -> np.ndarray:
    """The airplane val clouds as stored (4, 1024, 3)."""
    split = build_dataset("shapenet15k", data_root / "synthetic", "val", "airplane")
    return np.stack([split.load(i)["xyz"] for i in range(len(split))])


@pytest.fixture(scope="module")
def refs(data_root) -> np.ndarray:
    """The airplane reference set at 256 points, exactly as scoring builds it (raw units)."""
    split = build_dataset("shapenet15k", data_root / "synthetic", "val", "airplane")
    return reference_clouds(split, 256, 0, "global")[0]


def score(out: Path, data_root: Path, *args: str) -> int:
    return main(["score", "generation", *args, f"data.root={data_root}", f"output.dir={out}"])


def only_record(out: Path):
    (record,) = load_records(out / "records")
    return record


def values(record) -> dict[str, float]:
    return {r.name: r.value("honest") for r in record.results}


def test_references_scored_against_themselves(tmp_path, data_root, refs, capsys):
    path = tmp_path / "copies.npy"
    np.save(path, refs)
    assert score(tmp_path / "runs", data_root, f"samples={path}", "reference=airplane") == 0
    record = only_record(tmp_path / "runs")
    got = values(record)
    assert got["cov_cd"] == got["cov_emd"] == 100.0 and got["mmd_cd"] == pytest.approx(0.0, abs=1e-9)
    assert got["mmd_emd"] == pytest.approx(0.0, abs=1e-4)
    assert got["nna_cd"] == 0.0  # each cloud's nearest neighbour is its own copy in the other set
    assert (record.method, record.suite, record.variant, record.seed) == ("copies", "generation", "airplane", 0)
    assert (record.protocol, record.data_kind, record.profile, record.epochs) == ("generation", "synthetic", "demo", [])
    assert [r.name for r in record.results] == ORDER and record.metric == "nna_cd"
    for result in record.results:
        assert result.value("honest") == result.value("paper") and result.statistics["std"].value == 0.0
    details = record.details
    assert details["samples"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert details["samples"]["path"] == str(path) and (details["samples"]["given"], details["samples"]["used"],
                                                        details["samples"]["points"]) == (4, 4, 256)
    assert details["distance"] == {"emd_cost": "sqeuclidean", "emd_method": "approx", "chunk_mb": 256, "device": "cpu"}
    assert details["normalisation"] == "global" and details["reference"]["split"] == "val"
    assert details["noise_floor_nna"] == pytest.approx(100 * np.sqrt(0.25 / 8))
    out = capsys.readouterr().out
    assert "synthetic stand-in" in out and "1-NNA-CD" in out and "record: " in out


def test_noise_is_told_apart_and_the_row_joins_the_leaderboard(tmp_path, data_root, refs):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "noise.npy", rng.normal(scale=0.3, size=(6, 256, 3)).astype(np.float32))  # 6 > 4: truncated
    np.save(tmp_path / "jitter.npy", (refs + rng.normal(scale=1e-3, size=refs.shape)).astype(np.float32))
    for name in ("noise", "jitter"):
        assert score(tmp_path / "runs", data_root, f"samples={tmp_path / name}.npy", "reference=airplane") == 0
    records = {r.method: r for r in load_records(tmp_path / "runs" / "records")}
    assert values(records["noise"])["nna_cd"] == values(records["noise"])["nna_emd"] == 100.0
    assert records["noise"].details["samples"]["given"] == 6 and records["noise"].details["samples"]["used"] == 4
    assert values(records["jitter"])["cov_cd"] == 100.0 and values(records["jitter"])["nna_cd"] < 100.0
    assert main(["--quiet", "report", f"output.dir={tmp_path / 'runs'}"]) == 0
    markdown = (tmp_path / "runs" / "leaderboard" / "leaderboard.md").read_text()
    (table,) = [part for part in markdown.split("## ") if part.startswith("generation")]
    assert "| noise |" in table and "| jitter |" in table  # one table, our methods' layout
    assert "1-NNA noise floor ±17.7 points at n=4 (airplane)" in table
    assert "(published)" not in table and "published 6" not in table  # a synthetic table has no published rows


def test_a_folder_of_clouds_scores_as_the_stacked_file(tmp_path, data_root, val):
    folder = tmp_path / "folder"
    folder.mkdir()
    clouds = val[:, ::4] * 0.9
    for i, cloud in enumerate(clouds):
        np.save(folder / f"{i:03d}.npy", cloud)
    np.save(tmp_path / "stacked.npy", clouds)
    assert score(tmp_path / "a", data_root, f"samples={folder}", "reference=airplane") == 0
    assert score(tmp_path / "b", data_root, f"samples={tmp_path / 'stacked.npy'}", "reference=airplane") == 0
    assert values(only_record(tmp_path / "a")) == values(only_record(tmp_path / "b"))
    assert only_record(tmp_path / "a").method == "folder"


def test_box_normalisation_ignores_each_shapes_scale_and_offset(tmp_path, data_root, val):
    refs, _ = reference_clouds(build_dataset("shapenet15k", data_root / "synthetic", "val", "airplane"), 256, 0, "box")
    raw, _ = reference_clouds(build_dataset("shapenet15k", data_root / "synthetic", "val", "airplane"), 256, 0,
                              "global")
    np.save(tmp_path / "moved.npy", raw * 3.0 + 5.0)  # the reference points, moved and scaled
    assert score(tmp_path / "runs", data_root, f"samples={tmp_path / 'moved.npy'}", "reference=airplane",
                 "normalisation=box", "name=moved_box") == 0
    record = only_record(tmp_path / "runs")
    assert record.suite == "generation_box" and record.details["normalisation"] == "box"
    assert values(record)["cov_cd"] == 100.0 and values(record)["mmd_cd"] == pytest.approx(0.0, abs=1e-9)
    assert np.abs(refs).max() == pytest.approx(1.0)


def test_reference_file_point_counts_meet_at_the_smaller(tmp_path, data_root, val):
    np.save(tmp_path / "airplane.npy", val[:, :256])  # a reference file of 256-point clouds, named as the variant
    np.save(tmp_path / "dense.npy", val[:, :512])  # 512-point samples: subsampled to 256 (LION compute_score)
    np.save(tmp_path / "sparse.npy", val[:, :128])  # 128-point samples: the references are subsampled
    for name in ("dense", "sparse"):
        assert score(tmp_path / "runs", data_root, f"samples={tmp_path / name}.npy",
                     f"reference={tmp_path / 'airplane.npy'}") == 0
    records = {r.method: r for r in load_records(tmp_path / "runs" / "records")}
    dense, sparse = records["dense"].details["reference"], records["sparse"].details["reference"]
    assert (dense["subsampled"], dense["points"], dense["kind"]) == ("samples", 256, "file")
    assert (sparse["subsampled"], sparse["points"]) == ("references", 128)
    assert records["dense"].data_kind == "real" and records["dense"].profile == "paper"
    assert main(["--quiet", "report", f"output.dir={tmp_path / 'runs'}"]) == 0
    markdown = (tmp_path / "runs" / "leaderboard" / "leaderboard.md").read_text()
    # a real table: LION's published 1-NNA beside the rows (columns that repeat one value live in the note)
    assert re.search(r"^\| LION \(published\) \|.* published 67\.41 \| published 61\.23 \|", markdown, re.M)
    assert "PVD (published)" in markdown and "73.82✱" in markdown


def test_a_reference_file_can_be_marked_synthetic(tmp_path, data_root, refs):
    np.save(tmp_path / "airplane.npy", refs)
    np.save(tmp_path / "x.npy", refs[::-1])
    reference = f"reference={tmp_path / 'airplane.npy'}"
    assert score(tmp_path / "runs", data_root, f"samples={tmp_path / 'x.npy'}", reference, "data_kind=synthetic",
                 "reference_size=3") == 0
    record = only_record(tmp_path / "runs")
    assert (record.data_kind, record.profile, record.variant) == ("synthetic", "demo", "airplane")
    assert record.details["reference"]["size"] == 3 and record.details["samples"]["used"] == 3


def write_text_npy(path: Path) -> Path:
    path.write_text("not an array")
    return path


BAD = {
    "missing": lambda d: d / "absent.npy",
    "not an array": lambda d: write_text_npy(d / "text.npy"),
    "2-d file": lambda d: _save(d / "flat.npy", np.zeros((4, 3))),
    "two columns": lambda d: _save(d / "xy.npy", np.zeros((4, 16, 2))),
    "NaN": lambda d: _save(d / "nan.npy", np.where(np.arange(4 * 16 * 3).reshape(4, 16, 3) == 7, np.nan, 1.0)),
    "inf in a folder": lambda d: _folder(d / "inf", [np.ones((16, 3)), np.full((16, 3), np.inf)]),
    "point counts differ": lambda d: _folder(d / "mixed", [np.ones((16, 3)), np.ones((8, 3))]),
    "empty folder": lambda d: _folder(d / "empty", []),
    "too few clouds": lambda d: _save(d / "few.npy", np.random.default_rng(0).normal(size=(3, 16, 3))),
}
NAMED = {"missing": "absent.npy", "not an array": "text.npy", "2-d file": "flat.npy", "two columns": "xy.npy",
         "NaN": "nan.npy", "inf in a folder": "inf", "point counts differ": "mixed", "empty folder": "empty",
         "too few clouds": "few.npy"}


def _save(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    return path


def _folder(path: Path, clouds: list[np.ndarray]) -> Path:
    path.mkdir()
    for i, cloud in enumerate(clouds):
        np.save(path / f"{i}.npy", cloud)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_samples_fail_naming_the_file_and_write_nothing(case, tmp_path, data_root, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    samples = BAD[case](inputs)
    out = tmp_path / "runs"
    code = score(out, data_root, f"samples={samples}", "reference=airplane")
    err = capsys.readouterr().err
    assert code == 3, err
    assert NAMED[case] in err and "Traceback" not in err
    assert not out.exists()  # no record, no partial file, no folder
    if case == "too few clouds":
        assert "3 clouds" in err and "4 reference" in err


@pytest.mark.parametrize("args, needle", [
    (["reference=airplane"], "samples= is required"),
    (["samples=x.npy", "reference=airplane", "emd_cost=l3"], "emd_cost"),
    (["samples=x.npy", "reference=airplane", "normalisation=unit"], "normalisation"),
    (["samples=x.npy", "reference=airplane", "colour=red"], 'unknown argument "colour"'),
    (["samples=x.npy", "reference=airplane", "name=point_mae"], "registered method"),
    (["samples=x.npy", "reference=aeroplane"], "neither a variant"),
    (["samples=x.npy", "reference=airplane", "data.source=web"], "data.source='web'"),
    (["samples=x.npy", "reference=airplane", "reference_size=many"], "reference_size='many' is not a int"),
])
def test_bad_arguments_are_config_errors(args, needle, tmp_path, data_root, refs, capsys):
    np.save(tmp_path / "x.npy", refs)
    args = [a.replace("samples=x.npy", f"samples={tmp_path / 'x.npy'}") for a in args]
    assert score(tmp_path / "runs", data_root, *args) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_reference_file_with_nan_names_it(tmp_path, data_root, refs, capsys):
    np.save(tmp_path / "x.npy", refs)
    bad = refs.copy()
    bad[1, 3, 0] = np.nan
    np.save(tmp_path / "ref.npy", bad)
    code = score(tmp_path / "runs", data_root, f"samples={tmp_path / 'x.npy'}", f"reference={tmp_path / 'ref.npy'}")
    assert code == 3
    err = capsys.readouterr().err
    assert "ref.npy" in err and "NaN" in err and not (tmp_path / "runs").exists()


def test_the_emd_audit_is_recorded_when_asked(tmp_path, data_root, val):
    np.save(tmp_path / "x.npy", val[:, :128])
    assert score(tmp_path / "runs", data_root, f"samples={tmp_path / 'x.npy'}", "reference=airplane",
                 "emd_audit=2", "emd_cost=euclidean") == 0
    record = only_record(tmp_path / "runs")
    assert record.details["emd_audit"]["pairs"] == 2 and record.details["distance"]["emd_cost"] == "euclidean"
    assert json.loads(json.dumps(record.config))["suite"]["emd_cost"] == "euclidean"

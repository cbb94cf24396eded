"""Few-shot ModelNet40 folds: the official pickle format, the restricted unpickler, prepare from ``.dat`` caches
(counts, determinism, strict errors naming files), the loader, and the clamped stand-in."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data import fewshot, modelnet40
from bench.data.base import build_dataset
from bench.data.check import check_data
from bench.data.pickle_io import dump_pickle
from bench.errors import DataError

N_CLASSES, N_TRAIN, N_TEST, P = 12, 22, 21, 16


def write_caches(root: Path, n_classes: int = N_CLASSES, seed: int = 0) -> tuple[Path, Path]:
    """ModelNet40 ``.dat`` caches with ``n_classes`` classes (labels 3, 6, ...) of (P, 6) clouds; unique values."""
    rng = np.random.default_rng(seed)
    folder = root / modelnet40.FOLDER
    paths = []
    for split, count in (("train", N_TRAIN), ("test", N_TEST)):
        labels = [np.array([3 * c], dtype=np.int32) for c in range(n_classes) for _ in range(count)]
        points = [rng.normal(size=(P, 6)).astype(np.float32) for _ in labels]
        paths.append(modelnet40.cache_path(folder, split))
        dump_pickle([points, labels], paths[-1])
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A data root with the caches and every fold drawn from them (seed 0)."""
    root = tmp_path_factory.mktemp("fewshot")
    write_caches(root)
    fewshot.prepare_fewshot(root, seed=0)
    return root


def source_sets(root: Path) -> dict[str, dict[int, set[bytes]]]:
    """split -> orig label -> the raw bytes of its clouds, to identify where a fold's clouds come from."""
    out = {}
    for split in ("train", "test"):
        points, labels = modelnet40.read_cache(modelnet40.cache_path(root / modelnet40.FOLDER, split))
        out[split] = {}
        for cloud, label in zip(points, labels, strict=True):
            out[split].setdefault(int(label), set()).add(cloud.tobytes())
    return out


@pytest.mark.parametrize("variant", list(fewshot.SETTINGS))
def test_prepare_gives_the_documented_class_and_shot_counts(prepared, variant):
    way, shot = fewshot.SETTINGS[variant]
    sources = source_sets(prepared)
    for fold in range(fewshot.FOLDS):
        path = prepared / "ModelNetFewshot" / f"{way}way_{shot}shot" / f"{fold}.pkl"
        with open(path, "rb") as f:
            raw = pickle.load(f)  # our own file: the plain unpickler shows the exact official layout
        assert set(raw) == {"train", "test"}
        for split, per_class in (("train", shot), ("test", fewshot.TEST_PER_CLASS)):
            items = raw[split]
            assert len(items) == way * per_class
            assert all(isinstance(it, tuple) and len(it) == 3 for it in items)
            assert all(it[0].dtype == np.float32 and it[0].shape == (P, 6) for it in items)
            new = np.array([it[1] for it in items])
            assert sorted(np.bincount(new).tolist()) == [per_class] * way
            mapping = {(it[1], it[2]) for it in items}
            assert len(mapping) == way and len({o for _, o in mapping}) == way  # one orig class per new label
            assert all(it[0].tobytes() in sources[split][it[2]] for it in items)  # clouds of their own class
            assert len({it[0].tobytes() for it in items}) == len(items)  # drawn without replacement
        assert {o for _, _, o in raw["train"]} == {o for _, _, o in raw["test"]}


def test_prepare_is_deterministic_and_seeded(tmp_path, prepared):
    write_caches(tmp_path)
    again = fewshot.prepare_fewshot(tmp_path, seed=0)
    assert len(again) == len(fewshot.SETTINGS) * fewshot.FOLDS
    for path in again:
        assert path.read_bytes() == (prepared / path.relative_to(tmp_path)).read_bytes()
    other = tmp_path / "other"
    write_caches(other)
    fewshot.prepare_fewshot(other, seed=1)
    rel = Path("ModelNetFewshot/5way_10shot/0.pkl")
    assert (other / rel).read_bytes() != (prepared / rel).read_bytes()
    folds = [(prepared / f"ModelNetFewshot/5way_10shot/{k}.pkl").read_bytes() for k in range(fewshot.FOLDS)]
    assert len(set(folds)) == fewshot.FOLDS  # every fold draws anew


def test_loader_normalises_and_reads_the_fold_option(prepared):
    path = prepared / "ModelNetFewshot" / "10way_20shot" / "7.pkl"
    with open(path, "rb") as f:
        raw = pickle.load(f)["test"]
    ds = build_dataset("modelnet_fewshot", prepared, "test", "10way20shot", fold=7)
    assert len(ds) == 200 and ds.num_classes == 40 and ds.seed_option == "fold"
    for i in (0, 5, 199):
        sample = ds[i]
        xyz = raw[i][0][:, :3].astype(np.float64)
        centred = xyz - xyz.mean(0)
        np.testing.assert_allclose(sample["xyz"], centred / np.linalg.norm(centred, axis=1).max(), rtol=1e-5)
        assert int(sample["label"]) == raw[i][1] and "normal" not in sample
    with_normals = build_dataset("modelnet_fewshot", prepared, "test", "10way20shot", fold=7, use_normals=True)
    np.testing.assert_array_equal(with_normals[0]["normal"], raw[0][0][:, 3:6])


def test_both_folder_spellings_are_read(prepared, tmp_path):
    shutil.copytree(prepared / "ModelNetFewshot" / "5way_10shot", tmp_path / "ModelNetFewshot" / "5way10shot")
    ds = build_dataset("modelnet_fewshot", tmp_path, "train", "5way10shot", fold=2)
    assert ds.path == tmp_path / "ModelNetFewshot" / "5way10shot" / "2.pkl" and len(ds) == 50


def test_restricted_unpickler_rejects_a_malicious_fold(tmp_path):
    marker = tmp_path / "pwned"

    class RunsCommand:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "ModelNetFewshot" / "5way_10shot" / "0.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"train": [RunsCommand()], "test": []}))
    with pytest.raises(DataError, match=r"0\.pkl.*forbidden global"):
        build_dataset("modelnet_fewshot", tmp_path, "train", "5way10shot", fold=0)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, needle",
    [
        ([1, 2], "expected a pickle of"),
        ({"train": [(np.zeros((4, 6), np.float32), 0)], "test": []}, "train item 0"),
        ({"train": [(np.zeros((4, 6), np.float32), 5, 3)], "test": []}, r"labels \(5, 3\) outside"),
        ({"train": [(np.zeros((4, 6), np.float32), 1.5, 3)], "test": []}, "integer label"),
        ({"train": [(np.full((4, 6), np.nan, np.float32), 0, 3)], "test": []}, "NaN"),
    ],
)
def test_bad_fold_errors_name_the_file(tmp_path, content, needle):
    path = tmp_path / "ModelNetFewshot" / "5way_10shot" / "0.pkl"
    dump_pickle(content, path)
    with pytest.raises(DataError, match=needle) as err:
        build_dataset("modelnet_fewshot", tmp_path, "train", "5way10shot", fold=0)
    assert str(path) in str(err.value)


def test_missing_fold_and_bad_fold_index(tmp_path, prepared):
    with pytest.raises(DataError, match=r"5way_10shot/3\.pkl"):
        build_dataset("modelnet_fewshot", tmp_path, "train", "5way10shot", fold=3)
    with pytest.raises(DataError, match="folds are 0..9"):
        build_dataset("modelnet_fewshot", prepared, "train", "5way10shot", fold=10)


def test_strict_prepare_names_the_cache_when_data_is_short(tmp_path):
    train, _ = write_caches(tmp_path, n_classes=7)
    with pytest.raises(DataError, match=r"7 classes present, a 10-way fold needs 10") as err:
        fewshot.prepare_fewshot(tmp_path)
    assert str(train) in str(err.value)
    with pytest.raises(DataError, match=r"ModelNet/modelnet40_normal_resampled.*does not exist"):
        fewshot.prepare_fewshot(tmp_path / "empty")


def test_cli_prepare_fewshot(tmp_path, capsys):
    write_caches(tmp_path)
    assert main(["data", "prepare", "fewshot", f"data.root={tmp_path}", "seed=3"]) == 0
    assert "wrote 40 few-shot fold file(s)" in capsys.readouterr().out
    assert len(list((tmp_path / "ModelNetFewshot").glob("*/*.pkl"))) == 40
    assert main(["data", "prepare", "fewshots", f"data.root={tmp_path}"]) != 0
    err = capsys.readouterr().err
    assert 'unknown prepare step "fewshots". Did you mean "fewshot"?' in err and "Known: fewshot, modelnet40" in err
    assert main(["data", "prepare", "fewshot", f"data.root={tmp_path}", "seed=-1"]) != 0
    assert "seed=-1: the few-shot draw seed must be a non-negative integer" in capsys.readouterr().err


def test_standin_folds_clamp_to_what_the_standin_has(standin_root):
    """tiny: 4 ModelNet40 classes x (3 train, 2 test): every setting takes all 4 classes and all their shapes."""
    for variant in fewshot.SETTINGS:
        for fold in (0, 9):
            train = build_dataset("modelnet_fewshot", standin_root, "train", variant, fold=fold)
            test = build_dataset("modelnet_fewshot", standin_root, "test", variant, fold=fold)
            assert (len(train), len(test)) == (12, 8)
            assert sorted({int(train[i]["label"]) for i in range(len(train))}) == [0, 1, 2, 3]
    statuses = {s.variant: s for s in check_data(standin_root) if s.dataset == "modelnet_fewshot"}
    assert set(statuses) == set(fewshot.SETTINGS)
    for status in statuses.values():
        assert status.present and (status.n_train, status.n_test) == (12, 8)
        assert any("clamps" in p for p in status.problems)


def test_standin_alone_writes_modelnet40_first_and_matches_the_full_standin(standin_root, tmp_path):
    from bench.data.synthetic import write_standin

    written = write_standin(tmp_path, ["modelnet_fewshot"], size="tiny", seed=0)
    assert set(written) == {"modelnet40", "modelnet_fewshot"} and len(written["modelnet_fewshot"]) == 40
    for path in written["modelnet_fewshot"]:
        assert path.read_bytes() == (standin_root / path.relative_to(tmp_path)).read_bytes()

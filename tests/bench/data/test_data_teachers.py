"""Side data ``teachers`` (bench/data/teachers.py), with the random test teachers: the prepare step writes every
ShapeNet-55 train and test id with its provenance, one text embedding per category, atomically; the stand-in
writer; pre-training writes it for the stand-in on its own and records its provenance; real data names the prepare
step; the leaderboard marks rows whose pre-training used category names or random test teachers."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data import shapenet55
from bench.data.side import WithSideData, load_side_data, write_standin_side_data
from bench.data.synthetic import write_standin
from bench.data.teachers import RANDOM_TEACHERS, TEACHER_DATA, TeacherSettings, teacher_cloud, teachers_module
from bench.errors import ConfigError, DataError
from bench.pretraining import Stage, stage_dataset, write_missing_side_data
from bench.records import RunRecord
from bench.registry import TEACHERS
from bench.schema import StageConfig
from bench.sources import REAL, SYNTHETIC, DataSource
from reports.leaderboard import summarize
from reports.render import render_latex, render_markdown
from reports.tables import build_tables

CATEGORY_NOTE = ("† pre-training used category names (captions): label information in a nominally self-supervised "
                 "protocol.")  # fmt: skip
TEST_TEACHER_NOTE = "‡ random test teachers (not the real ones)."


@pytest.fixture
def shapenet_root(standin_root: Path, tmp_path: Path) -> Path:
    """A private data root holding the tiny stand-in's ShapeNet-55 (lists and npy files) and no teachers.h5."""
    root = tmp_path / "data"
    shutil.copytree(standin_root / shapenet55.FOLDER, root / shapenet55.FOLDER, ignore=shutil.ignore_patterns("*.h5"))
    return root


@pytest.fixture
def random_default(monkeypatch):
    """``auto`` picks the random test teachers (as on a machine without the extra)."""
    monkeypatch.setattr(teachers_module(RANDOM_TEACHERS[0]), "default_teachers", lambda: RANDOM_TEACHERS)


def ids_and_labels(root: Path) -> dict[str, int]:
    """Every train and test id below ``root`` -> its label."""
    out = {}
    for split in ("train", "test"):
        data = shapenet55.ShapeNet55(root, split)
        out.update({data.sample_id(i): int(data.labels[i]) for i in range(len(data))})
    return out


def test_prepare_writes_every_train_and_test_id_with_provenance(shapenet_root: Path, capsys) -> None:
    assert main(["data", "prepare", "teachers", "teachers=random", f"data.root={shapenet_root}"]) == 0
    path = shapenet_root / "ShapeNet55-34" / "teachers.h5"
    out = capsys.readouterr().out
    assert f"wrote {path}" in out and "teachers: 16 shapes of 4 categories" in out and "random TEST teachers" in out
    expected = ids_and_labels(shapenet_root)
    source = load_side_data("teachers", shapenet_root)
    assert source.ids() == sorted(expected) and len(expected) == 16  # tiny: 4 synsets x (3 train + 1 test)
    for sample_id in expected:
        arrays = source.read(sample_id)
        assert arrays["text"].shape == (384,) and arrays["image"].shape == (1280,)
        assert arrays["text"].dtype == arrays["image"].dtype == np.float32
        assert np.linalg.norm(arrays["image"]) == pytest.approx(1.0, abs=1e-5)
    info = source.describe()
    module = teachers_module("random_text")
    assert info["text"]["name"] == "random_text" and info["text"]["is_test_teacher"] is True
    assert info["text"]["captions"] == "templates" and info["text"]["templates"] == list(module.CAPTION_TEMPLATES)
    assert info["image"]["name"] == "random_image" and info["image"]["dim"] == 1280
    assert (info["image"]["views"], info["image"]["size"], info["image"]["points"]) == (2, 112, 1024)
    assert info["uses_category_names"] is True and info["test_teachers"] is True
    assert info["dataset"] == "shapenet55" and info["ids"] == 16
    assert info["path"] == str(path) and info["bytes"] == path.stat().st_size and len(info["sha256"]) == 64


def test_text_is_one_embedding_per_category_and_image_the_projected_cloud(shapenet_root: Path) -> None:
    from bench.data.teachers import write_teachers

    write_teachers(shapenet_root, TeacherSettings("random", views=3, size=32, points=128))
    module = teachers_module("random_text")
    labels = ids_and_labels(shapenet_root)
    with h5py.File(TEACHER_DATA.file(shapenet_root), "r") as f:
        text = {sample_id: f[sample_id]["text"][()] for sample_id in labels}
        image = {sample_id: f[sample_id]["image"][()] for sample_id in labels}
        assert json.loads(f.attrs["image"])["views"] == 3
    by_label = {}
    for sample_id, label in labels.items():
        by_label.setdefault(label, text[sample_id])
        np.testing.assert_array_equal(text[sample_id], by_label[label])  # every shape of a category: the same row
    assert len(by_label) == 4 and len({row.tobytes() for row in by_label.values()}) == 4
    names = [shapenet55.SYNSET_NAMES[shapenet55.SYNSETS[label]] for label in sorted(by_label)]
    expected = module.class_text_embeddings(TEACHERS.get("random_text").load(), names).numpy()
    np.testing.assert_allclose(np.stack([by_label[k] for k in sorted(by_label)]), expected, atol=1e-6)
    sample_id = next(iter(labels))
    raw = np.load(shapenet55.points_dir(shapenet_root) / f"{sample_id}.npy")
    cloud = teacher_cloud(sample_id, raw, 128)
    assert cloud.shape == (128, 3) and np.sqrt((cloud**2).sum(1)).max() == pytest.approx(1.0)
    np.testing.assert_array_equal(cloud, teacher_cloud(sample_id, raw, 128))  # seeded by the id alone
    direct = module.image_embeddings(TEACHERS.get("random_image").load(), torch.from_numpy(cloud[None]), 3, 32)
    np.testing.assert_allclose(image[sample_id], direct[0].numpy(), atol=1e-6)


def test_options_are_checked() -> None:
    assert TeacherSettings.parse({"views": "4", "other": "x"}) == TeacherSettings("auto", 4, 112, 1024)
    with pytest.raises(ConfigError, match="teachers=clip: choose one of auto, real, random"):
        TeacherSettings.parse({"teachers": "clip"})
    with pytest.raises(ConfigError, match="points=0: must be a positive integer"):
        TeacherSettings.parse({"points": "0"})


def test_real_teachers_without_the_extra_fail_with_its_name_and_write_nothing(shapenet_root: Path, monkeypatch,
                                                                              capsys) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails, as on a machine without the extra
    assert main(["data", "prepare", "teachers", "teachers=real", f"data.root={shapenet_root}"]) == 2  # ConfigError
    assert "[teachers]" in capsys.readouterr().err  # the error names the extra
    assert not TEACHER_DATA.file(shapenet_root).exists()


def test_a_failing_teacher_leaves_nothing_half_written(shapenet_root: Path, monkeypatch) -> None:
    assert main(["data", "prepare", "teachers", "teachers=random", f"data.root={shapenet_root}"]) == 0
    path = TEACHER_DATA.file(shapenet_root)
    before = path.read_bytes()
    teacher = type(TEACHERS.get("random_image").load())
    calls = []

    def fail(self, inputs):
        calls.append(len(inputs))
        if len(calls) > 1:  # the first batch is written into the temp file, then the teacher fails
            raise RuntimeError("teacher exploded")
        return torch.zeros(len(inputs), 1280)

    monkeypatch.setattr("bench.data.teachers.BATCH", 4)
    monkeypatch.setattr(teacher, "embed", fail)
    with pytest.raises(RuntimeError, match="teacher exploded"):
        main(["data", "prepare", "teachers", "teachers=random", "views=3", f"data.root={shapenet_root}"])
    assert len(calls) == 2 and path.read_bytes() == before  # the old file is whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["ShapeNet-55", "shapenet_pc", "teachers.h5"]
    path.unlink()
    with pytest.raises(RuntimeError, match="teacher exploded"):
        main(["data", "prepare", "teachers", "teachers=random", f"data.root={shapenet_root}"])
    assert not path.exists() and not list(path.parent.glob(".teachers.h5.*"))


def test_standin_writer_writes_the_same_file_and_says_which_teachers(shapenet_root: Path, random_default,
                                                                     tmp_path: Path) -> None:  # fmt: skip
    written = write_standin(tmp_path / "alone", ["teachers"], size="tiny")
    assert list(written) == ["shapenet55", "teachers"]
    (path,) = written["teachers"]
    assert path == TEACHER_DATA.file(tmp_path / "alone")
    assert main(["data", "prepare", "teachers", "teachers=random", f"data.root={shapenet_root}"]) == 0
    assert path.read_bytes() == TEACHER_DATA.file(shapenet_root).read_bytes()  # the stand-in's ShapeNet-55 is ours
    info = load_side_data("teachers", tmp_path / "alone").describe()
    assert info["test_teachers"] is True and info["text"]["name"] == "random_text"


def test_the_session_standin_holds_the_default_teachers(standin_root: Path) -> None:
    info = load_side_data("teachers", standin_root).describe()
    default = teachers_module("random_text").default_teachers()
    assert (info["text"]["name"], info["image"]["name"]) == default
    assert info["test_teachers"] is (default == RANDOM_TEACHERS) and info["ids"] == len(ids_and_labels(standin_root))


def align_stage() -> Stage:
    return Stage(StageConfig(name="align"), "shapenet55", "default", True, [], ["teachers"], None, [], [])


def test_pretraining_writes_missing_standin_side_data_and_notes_it(shapenet_root: Path, random_default) -> None:
    before = {p: p.read_bytes() for p in sorted((shapenet_root / "ShapeNet55-34").rglob("*")) if p.is_file()}
    notes: list[str] = []
    data = DataSource("shapenet55", shapenet_root, SYNTHETIC)
    write_missing_side_data(align_stage(), data, "demo", notes.append)  # another size: ShapeNet-55 is not rewritten
    assert TEACHER_DATA.file(shapenet_root).is_file() and len(notes) == 1
    assert "side data teachers" in notes[0] and "stand-in writer teachers wrote it" in notes[0]
    assert {p: p.read_bytes() for p in before} == before  # the set it read is unchanged
    write_missing_side_data(align_stage(), data, "tiny", notes.append)
    assert len(notes) == 1  # present: nothing written, nothing noted
    sample = stage_dataset(align_stage(), data, seed=0)[0]  # whole: test + train ids, all present
    assert tuple(sample["teachers.text"].shape) == (384,) and tuple(sample["teachers.image"].shape) == (1280,)
    assert isinstance(stage_dataset(align_stage(), data, seed=0).dataset, WithSideData)


def test_standin_side_data_needs_a_writer(tmp_path: Path) -> None:
    from bench.data.side import SideData

    with pytest.raises(ConfigError, match="names no stand-in writer"):
        write_standin_side_data(SideData("plain", "plain.h5", ("k",)), tmp_path, "tiny")


def test_real_data_missing_file_names_the_prepare_step(shapenet_root: Path) -> None:
    notes: list[str] = []
    data = DataSource("shapenet55", shapenet_root, REAL)
    write_missing_side_data(align_stage(), data, "tiny", notes.append)
    assert notes == [] and not TEACHER_DATA.file(shapenet_root).exists()  # real data: never written for the user
    with pytest.raises(DataError) as err:
        stage_dataset(align_stage(), data, seed=0)
    message = str(err.value)
    assert f"file not found: expected {TEACHER_DATA.file(shapenet_root)}" in message
    assert f"run: bench data prepare teachers data.root={shapenet_root}" in message


# --- leaderboard marks --------------------------------------------------------------------------------------
def record(method: str, seed: int = 0, side: dict | None = None, staged: bool = False) -> RunRecord:
    """A minimal valid record; ``side``: the side-data provenance of its (last, or with ``staged`` first) stage."""
    stage = {"epochs": 1, **({"side_data": {"teachers": side}} if side is not None else {})}
    details = {"epochs": 1, "stages": [{"name": "align", **stage}, {"name": "distill", "epochs": 1}]} if staged \
        else stage
    return RunRecord.from_dict({
        "job_id": f"scanobjectnn/objbg/{method}/seed{seed}", "sweep_id": "s", "method": method,
        "suite": "scanobjectnn", "suite_version": 1, "variant": "objbg", "seed": seed, "protocol": "finetune",
        "data_kind": "synthetic", "profile": "demo", "recipe": "method", "metric": "acc", "higher_is_better": True,
        "epochs": [], "final": {"last": 80.0, "best": 85.0}, "selection": {}, "config": {}, "env": {},
        "wall_time_s": 1.0, "config_hash": f"cfg{method}", "pretrain": {"source": "pretrained", "details": details},
    })  # fmt: skip


def test_leaderboard_marks_category_names_and_test_teachers() -> None:
    records = [record("point_mae"), record("aligned", side={"uses_category_names": True, "test_teachers": False}),
               record("toyish", staged=True, side={"uses_category_names": True, "test_teachers": True})]
    df = summarize(records)
    flags = dict(zip(df["method"], df["pretrain_flags"].map(json.loads), strict=True))
    assert flags == {"point_mae": [], "aligned": ["uses_category_names"],
                     "toyish": ["uses_category_names", "test_teachers"]}
    (table,) = build_tables(df)
    assert [row.label[0] for row in table.rows] == ["aligned †", "Point-MAE", "toyish †‡"]
    assert table.notes.index(CATEGORY_NOTE) == table.notes.index(TEST_TEACHER_NOTE) - 1  # the marks' notes, in order
    markdown = render_markdown(df)
    assert "| aligned † |" in markdown and "| toyish †‡ |" in markdown and f"- {TEST_TEACHER_NOTE}" in markdown
    assert r"$^{\dagger}$$^{\ddagger}$" in render_latex(df)
    plain = build_tables(summarize([record("point_mae"), record("aligned", seed=1)]))[0]
    assert all("†" not in note and "‡" not in note for note in plain.notes)
    assert [row.label[0] for row in plain.rows] == ["aligned", "Point-MAE"]


@pytest.mark.slow
def test_a_fresh_standin_run_writes_teachers_and_records_their_provenance(shapenet_root: Path, random_default,
                                                                          tmp_path: Path, monkeypatch):  # fmt: skip
    from bench import config
    from bench.records import load_records
    from tests.bench.kinds_support import registered, write_side

    data_root = tmp_path / "fresh"
    shutil.copytree(shapenet_root, data_root / "synthetic")  # the stand-in's ShapeNet-55, no teachers.h5
    write_side(data_root)
    stages = tmp_path / "stages.yaml"
    stages.write_text("pretrain:\n  npoints: 64\n  stages:\n    - {name: template, trainer: {epochs: 1}}\n    - "
                      "{name: spread, trainer: {epochs: 1}, freeze: [template], side_data: [toy_target, teachers]}\n")
    folder = tmp_path / "suites"
    folder.mkdir()
    with registered(folder):
        monkeypatch.setattr(config, "SUITES_DIR", folder)
        assert main(["run", "suite=toy_generation", "method=toy_generator", "seeds=[0]", "data.standin_size=tiny",
                     f"data.root={data_root}", f"output.dir={tmp_path / 'runs'}", "pretrain.trainer.batch_size=4",
                     "executor.workers=1", f"+overrides={stages}"]) == 0  # fmt: skip
    assert TEACHER_DATA.file(data_root / "synthetic").is_file()
    (rec,) = load_records(tmp_path / "runs" / "records")
    template, spread = rec.pretrain["details"]["stages"]
    assert "side_data" not in template  # a stage without side data keeps its details
    info = spread["side_data"]["teachers"]
    assert info["uses_category_names"] is True and info["test_teachers"] is True and info["ids"] == 16
    assert set(spread["side_data"]) == {"toy_target", "teachers"} and "sha256" in spread["side_data"]["toy_target"]
    markdown = (tmp_path / "runs" / "leaderboard" / "leaderboard.md").read_text()
    assert "| toy_generator †‡ |" in markdown and CATEGORY_NOTE in markdown and TEST_TEACHER_NOTE in markdown

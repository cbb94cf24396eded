"""`bench data check`: each data set's official source and unpack folder, the stand-in, the authors' weights, the
one-line summary, and `suite=<name>` failing when that suite lacks data (bench/data/check.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.data.check import AUTHOR_CHECKPOINTS, summarize_data, unpack_folder
from bench.errors import DataError
from bench.registry import DATASETS, METHODS, load_plugins

#: data set -> (a phrase its source must name, the folder below the data root it is unpacked into)
EXPECTED = {
    "scanobjectnn": ("https://hkust-vgd.github.io/scanobjectnn/", "ScanObjectNN"),
    "modelnet40": ("https://github.com/lulutang0608/Point-BERT", "ModelNet/modelnet40_normal_resampled"),
    "shapenet55": ("https://github.com/lulutang0608/Point-BERT", "ShapeNet55-34"),
    "shapenetpart": ("shapenetcore_partanno_segmentation_benchmark_v0_normal.zip",
                     "shapenetcore_partanno_segmentation_benchmark_v0_normal"),
    "s3dis": ("https://github.com/yanx27/Pointnet_Pointnet2_pytorch", "stanford_indoor3d"),
    "shapenet15k": ("https://github.com/stevenygd/PointFlow", "ShapeNetCore.v2.PC15k"),
    "shapenet_occ": ("https://github.com/autonomousvision/occupancy_networks", "ShapeNet"),
    "modelnet_fewshot": ("https://github.com/lulutang0608/Point-BERT", "ModelNetFewshot"),
}


def check(capsys, *args: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["data", "check", *args])
    return code, capsys.readouterr().out.splitlines()


def test_every_data_set_declares_its_source_and_folder(tmp_path: Path) -> None:
    summaries = {s.name: s for s in summarize_data(tmp_path)}
    assert set(summaries) == set(EXPECTED)
    for name, (phrase, folder) in EXPECTED.items():
        assert phrase in DATASETS.get(name).source, name
        assert summaries[name].source == DATASETS.get(name).source
        assert unpack_folder(DATASETS.get(name), tmp_path) == tmp_path / folder == summaries[name].folder


def test_empty_root_names_sources_folders_stand_in_weights_and_summary(tmp_path: Path, capsys) -> None:
    code, lines = check(capsys, f"data.root={tmp_path}")
    assert code == 0
    text = "\n".join(lines)
    for name, (_, folder) in EXPECTED.items():
        assert f"{name}: MISSING" in lines, name
        assert f"  source: {DATASETS.get(name).source}" in lines
        assert f"  unpack into: {tmp_path / folder}" in lines
    assert "bench data synth" in text and str(tmp_path / "synthetic") in text
    assert "method.ckpt=<file>" in text
    assert "https://github.com/Pang-Yatian/Point-MAE/releases/download/main/pretrain.pth" in text
    assert lines[-1] == "0 of 8 data sets present; the rest use the stand-in."


def test_authors_checkpoints_are_registered_methods_with_their_repository():
    load_plugins()
    repos = {"point_mae": "github.com/Pang-Yatian/Point-MAE", "point_pqae": "github.com/aHapBean/Point-PQAE",
             "point_madi": "github.com/YangParky/Point-MaDi"}
    assert {c.method for c in AUTHOR_CHECKPOINTS} == set(repos)
    for entry in AUTHOR_CHECKPOINTS:
        assert entry.method in METHODS and f"https://{repos[entry.method]}" in entry.where
        assert METHODS.get(entry.method).checkpoint_prefix  # what method.ckpt= loads the encoder from


def test_summary_counts_whole_and_partly_present_sets(standin_root: Path, tmp_path: Path, capsys) -> None:
    code, lines = check(capsys, f"data.root={standin_root}")
    assert code == 0 and lines[-1] == "8 of 8 data sets present."
    root = tmp_path / "root"
    shutil.copytree(standin_root, root)
    shutil.rmtree(root / "ScanObjectNN" / "main_split_nobg")
    code, lines = check(capsys, f"data.root={root}")
    assert "scanobjectnn: 2 of 3 variants present" in lines and "  scanobjectnn/objonly: MISSING" in lines
    assert lines[-1] == "7 of 8 data sets present (scanobjectnn: 2 of 3 variants); the rest use the stand-in."


@pytest.mark.slow
def test_suite_check_fails_when_its_pretraining_data_is_missing(standin_root: Path, tmp_path: Path, capsys):
    root = tmp_path / "root"
    shutil.copytree(standin_root / "ScanObjectNN", root / "ScanObjectNN")
    code, lines = check(capsys, f"data.root={root}", "suite=scanobjectnn")
    assert code == DataError.exit_code
    assert "  scanobjectnn/objbg (fine-tuning): present" in lines
    need = next(line for line in lines if line.startswith("  shapenet55/default (pre-training: "))
    assert "point_mae" in need and need.endswith(": MISSING") and "scratch" not in need
    assert any(line.startswith("suite scanobjectnn: missing shapenet55/default;") for line in lines)
    code, lines = check(capsys, f"data.root={standin_root}", "suite=scanobjectnn")
    assert code == 0 and "suite scanobjectnn: every data set it needs is present." in lines


def test_unknown_suite_is_a_config_error(tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["data", "check", f"data.root={tmp_path}", "suite=scanobjcetnn"]) == 2
    assert 'Did you mean "scanobjectnn"' in capsys.readouterr().err

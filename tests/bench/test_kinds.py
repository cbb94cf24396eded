"""The core takes methods and protocols of every kind without special cases: a generation-only method runs an
evaluation-only protocol end to end (a record with no epochs, a ``min`` metric shown x10^3 on the leaderboard), is
refused by a representation suite before any work, and pre-trains in two cached stages."""

from __future__ import annotations

import json

import mlflow
import pytest

from bench.cli import main
from bench.records import load_records
from tests.bench.kinds_support import STAGES_YAML, TARGET, write_side

pytestmark = pytest.mark.slow


def stages_file(tmp_path, spread_epochs: int):
    path = tmp_path / f"stages{spread_epochs}.yaml"
    path.write_text(STAGES_YAML % spread_epochs)
    return path


def run(tmp_path, data_root, *extra: str) -> int:
    return main(["--quiet", "run", "suite=toy_generation", "method=toy_generator", "seeds=[0]",
                 "data.standin_size=tiny", f"data.root={data_root}", f"output.dir={tmp_path / 'runs'}",
                 "pretrain.trainer.batch_size=4", "executor.workers=1", *extra])


def test_generative_method_runs_an_evaluation_protocol_to_a_record_and_a_row(toys, tmp_path, tiny_data_root):
    assert run(tmp_path, tiny_data_root, f"+overrides={stages_file(tmp_path, 1)}") == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert record.method == "toy_generator" and record.epochs == [] and record.protocol == "toy_generation"
    result = record.headline
    assert (result.name, result.direction, result.scale) == ("toy_cd", "min", 1e3)
    assert result.role("honest")[0] == "mean" and result.value("paper") == result.value("honest") > 0
    assert record.details["sigma"] != 1.0  # stage 2 trained it: the whole method came from the last stage
    markdown = (tmp_path / "runs" / "leaderboard" / "leaderboard.md").read_text()
    assert "lower is better" in markdown and "shown x1000" in markdown
    assert f"honest {result.value('honest') * 1e3:.2f}" in markdown


def test_a_representation_suite_refuses_the_generative_method_before_any_work(toys, tmp_path, tiny_data_root,
                                                                               capsys):  # fmt: skip
    code = main(["run", "suite=scanobjectnn", "method=toy_generator", f"data.root={tiny_data_root}",
                 f"output.dir={tmp_path / 'runs'}"])
    assert code == 2
    assert "toy_generator cannot run suite=scanobjectnn: it lacks the representation capability" in \
        capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    code = main(["run", "suite=toy_generation", "method=point_mae", f"data.root={tiny_data_root}",
                 f"output.dir={tmp_path / 'runs'}"])
    assert code == 2 and "point_mae cannot run suite=toy_generation: it lacks the generation capability" in \
        capsys.readouterr().err


def test_ls_shows_which_suites_each_method_can_run(toys, capsys, tiny_data_root):
    assert main(["ls", f"data.root={tiny_data_root}"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    assert "toy_generation" in lines["toy_generator"] and "scanobjectnn" not in lines["toy_generator"]
    assert "scanobjectnn" in lines["point_mae"] and "toy_generation" not in lines["point_mae"]


def test_changing_stage_two_reruns_only_stage_two(toys, tmp_path, tiny_data_root):
    assert run(tmp_path, tiny_data_root, f"+overrides={stages_file(tmp_path, 1)}") == 0
    pretrain = tmp_path / "runs" / "pretrain"
    first = {p.name: (p / "pretrain.pth").stat().st_mtime_ns for p in pretrain.iterdir()}
    assert len(first) == 2
    infos = {p.name: json.loads((p / "pretrain.json").read_text()) for p in pretrain.iterdir()}
    (stage1,) = [name for name, info in infos.items() if info["stage"] == "template"]
    (stage2,) = [name for name, info in infos.items() if info["stage"] == "spread"]
    assert infos[stage2]["started_from"] == stage1 and infos[stage1]["started_from"] is None
    assert run(tmp_path, tiny_data_root, f"+overrides={stages_file(tmp_path, 2)}") == 0
    second = {p.name: (p / "pretrain.pth").stat().st_mtime_ns for p in pretrain.iterdir()}
    assert second[stage1] == first[stage1] and second[stage2] == first[stage2]  # stage 1 reused, old stage 2 kept
    (new,) = set(second) - set(first)
    assert json.loads((pretrain / new / "pretrain.json").read_text())["epochs"] == 2
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pointbench").experiment_id])
    stages = [r for r in runs if r.data.tags.get("bench.stage") == "pretrain_stage"]
    parents = {r.info.run_id for r in runs if r.data.tags.get("bench.stage") == "pretrain"}
    assert sorted(r.data.tags["bench.pretrain_stage"] for r in stages) == ["spread", "spread", "template"]
    assert all(r.info.run_name.startswith("toy_generator · pretrain · stage ") for r in stages)
    assert all(r.data.tags["mlflow.parentRunId"] in parents for r in stages)
    spread = [r for r in stages if r.data.tags["bench.pretrain_stage"] == "spread"]
    assert all(r.data.metrics["train_target"] == pytest.approx(TARGET) for r in spread)  # side data reached it
    assert len(load_records(tmp_path / "runs" / "records")) == 2  # the new stage 2 is a new config: a new job


def test_side_data_missing_an_id_fails_before_training_naming_it(toys, tmp_path, tiny_data_root, capsys):
    from bench.data.base import build_dataset

    write_side(tiny_data_root, drop=1)
    try:
        code = run(tmp_path, tiny_data_root, f"+overrides={stages_file(tmp_path, 1)}")
    finally:
        write_side(tiny_data_root)
    missing = build_dataset("shapenet55", tiny_data_root / "synthetic", "train").sample_id(0)
    err = capsys.readouterr().err
    assert code == 3 and "toy/target.h5" in err and missing in err
    assert not list((tmp_path / "runs").glob("**/pretrain.pth"))  # no stage trained, not even the first

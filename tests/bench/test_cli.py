"""End to end through the CLI on the tiny synthetic stand-in: the sweep, its records, leaderboard and MLflow
structure, resume without duplicates, the authors'-checkpoint import, and every bad input's exit code."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from omegaconf import OmegaConf

from bench.api import REPRESENTATION
from bench.cli import main
from bench.records import load_records
from bench.registry import METHODS, load_plugins

load_plugins()
#: what `method=all` means for scanobjectnn: every method with the representation capability (not g3pt)
REPRESENTATION_METHODS = [m for m in METHODS.names() if REPRESENTATION in METHODS.get(m).capabilities]

pytestmark = pytest.mark.slow


def bench(*args: str) -> int:
    return main(["--quiet", *args])


@pytest.fixture(scope="module")
def sweep(tiny_data_root, tiny_run, tmp_path_factory):
    """One `bench run suite=scanobjectnn method=all` on the tiny stand-in; returns (args, output dir)."""
    out = tmp_path_factory.mktemp("runs")
    args = ["run", "suite=scanobjectnn", "method=all", *tiny_run, f"data.root={tiny_data_root}", f"output.dir={out}"]
    assert bench(*args) == 0
    return args, out


def test_sweep_writes_one_record_per_job_marked_synthetic(sweep):
    _, out = sweep
    records = load_records(out / "records")
    assert sorted((r.method, r.variant) for r in records) == sorted(
        (m, v) for m in REPRESENTATION_METHODS for v in ("objbg", "objonly", "hardest")
    )
    for record in records:
        assert record.data_kind == "synthetic" and record.profile == "demo" and record.seed == 0
        assert len(record.epochs) == 2 and 0 <= record.flat()["last"] <= 100
        assert record.flat()["best"] == max(row["test_acc"] for row in record.epochs)
        assert {"vote", "vote_last", "vote_best"} <= set(record.flat())
        assert record.env["ops_backend"] and record.env["torch"] == torch.__version__
        expected = "pretrained" if METHODS.get(record.method).pretrains() else "none"
        assert record.pretrain["source"] in (expected, "cache")


def test_point_mae_encoder_is_loaded_from_its_pretraining(sweep):
    _, out = sweep
    record = next(r for r in load_records(out / "records") if r.method == "point_mae")
    report = record.pretrain["load_report"]
    assert sorted(report["missing"]) == ["cls_pos", "cls_token"]
    assert any(key.startswith("MAE_decoder") for key in report["unexpected"])
    ckpt = torch.load(record.pretrain["ckpt"], weights_only=True)
    assert any(k.startswith("MAE_encoder.") for k in ckpt["base_model"])


def test_leaderboard_is_written_and_labelled_synthetic(sweep):
    _, out = sweep
    markdown = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "SYNTHETIC" in markdown and "point_mae" in markdown and "scratch" in markdown
    assert (out / "leaderboard" / "leaderboard.html").exists() and (out / "leaderboard" / "leaderboard.csv").exists()
    assert bench("report", f"output.dir={out}") == 0


def _runs(out: Path):
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("pointbench")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_mlflow_holds_sweep_group_seed_nesting(sweep):
    _, out = sweep
    client, runs = _runs(out)
    by_stage: dict[str, list] = {}
    for run in runs:
        by_stage.setdefault(run.data.tags["bench.stage"], []).append(run)
    pretrainers = [m for m in REPRESENTATION_METHODS if METHODS.get(m).pretrains()]
    assert len(by_stage["sweep"]) == 1 and len(by_stage["pretrain"]) == len(pretrainers)
    assert len(by_stage["group"]) == len(by_stage["job"]) == 3 * len(REPRESENTATION_METHODS)
    sweep_id = by_stage["sweep"][0].info.run_id
    groups = {r.info.run_id for r in by_stage["group"]}
    assert all(r.data.tags["mlflow.parentRunId"] == sweep_id for r in by_stage["group"] + by_stage["pretrain"])
    for group in by_stage["group"]:  # the leaderboard's statistics of that method x variant
        assert {"paper", "honest_mean", "n_seeds", "vote_mean"} <= set(group.data.metrics)
        assert group.data.metrics["n_seeds"] == 1.0
    for job in by_stage["job"]:
        assert job.data.tags["mlflow.parentRunId"] in groups
        assert {a.path for a in client.list_artifacts(job.info.run_id)} == {"run_record.json", "config.yaml"}
        assert [m.step for m in client.get_metric_history(job.info.run_id, "test_acc")] == [0, 1]
        assert job.data.params["trainer.epochs"] == "2"


def test_running_again_skips_finished_jobs_and_duplicates_no_run(sweep, capsys):
    args, out = sweep
    before = len(_runs(out)[1])
    capsys.readouterr()
    assert bench(*args) == 0
    assert f"ran 0 job(s), {3 * len(REPRESENTATION_METHODS)} already done" in capsys.readouterr().out
    assert len(_runs(out)[1]) == before


def test_interrupted_job_resumes_from_its_checkpoint(tiny_data_root, tiny_run, tmp_path, monkeypatch):
    import bench.trainer as trainer

    args = ["run", "suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]", *tiny_run,
            "trainer.epochs=3", f"data.root={tiny_data_root}", f"output.dir={tmp_path}", "tracking.enabled=false"]
    original = trainer.Trainer._save_last

    def save_then_die(self, model, optimizer, epoch, result):
        original(self, model, optimizer, epoch, result)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "_save_last", save_then_die)
    assert bench(*args) == 130
    last = next(tmp_path.glob("work/**/last.pt"))
    assert torch.load(last, weights_only=True)["epoch"] == 1
    monkeypatch.setattr(trainer.Trainer, "_save_last", original)
    assert bench(*args) == 0
    (record,) = load_records(tmp_path / "records")
    assert [row["epoch"] for row in record.epochs] == [0, 1, 2]
    assert not last.exists()


def _official_checkpoint(path: Path) -> Path:
    """A Point-MAE pre-training checkpoint in the authors' layout (DataParallel prefix, base_model, extras)."""
    from bench.config import resolve
    from methods.point_mae import PointMAE

    cfg = resolve("modelnet40", "point_mae", profile="demo")
    model = PointMAE(OmegaConf.to_object(cfg.method))
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"base_model": state, "epoch": 300, "optimizer": {}, "metrics": {}}, path)
    return path


def test_finetune_from_an_official_checkpoint(tiny_data_root, tiny_run, tmp_path):
    ckpt = _official_checkpoint(tmp_path / "pretrain.pth")
    args = ["run", "suite=modelnet40", "method=point_mae", f"method.ckpt={ckpt}", "suite.variants=[1k]", *tiny_run,
            f"data.root={tiny_data_root}", f"output.dir={tmp_path / 'runs'}", "tracking.enabled=false"]
    assert bench(*args) == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert record.pretrain["source"] == "import" and record.pretrain["ckpt"] == str(ckpt.resolve())
    assert sorted(record.pretrain["load_report"]["missing"]) == ["cls_pos", "cls_token"]
    assert not (tmp_path / "runs" / "pretrain").exists()  # nothing was pre-trained


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["suite=scanobjectnn", "method=point_maee"], 2, 'Did you mean "point_mae"'),
        (["suite=scanobjectnn", "method=scratch", "trainer.epoch=3"], 2, "trainer.epoch"),
        (["suite=scanobjectnn", "method=scratch", "data.source=real"], 3, "ScanObjectNN/main_split"),
        (["suite=scanobjectnn", "method=scratch", "suite.npoints=8"], 2, "suite.num_group"),
    ],
)
def test_bad_input_exits_non_zero_with_one_paragraph(tiny_data_root, tiny_run, tmp_path, capsys, extra, code, needle):
    assert bench("run", *extra, *tiny_run, f"data.root={tiny_data_root}", f"output.dir={tmp_path}") == code
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not list(tmp_path.glob("records/**/*.json"))


def test_unwritable_output_folder(tiny_data_root, tiny_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = ["run", "suite=scanobjectnn", "method=scratch", *tiny_run, f"data.root={tiny_data_root}",
            f"output.dir={blocker / 'runs'}"]
    assert bench(*args) == 5
    assert "cannot write to the output folder" in capsys.readouterr().err


def test_checkpoint_for_another_architecture(tiny_data_root, tiny_run, tmp_path, capsys):
    bad = tmp_path / "other.pth"
    torch.save({"model": {"backbone.layer1.weight": torch.zeros(3)}}, bad)
    args = ["run", "suite=scanobjectnn", "method=point_mae", f"method.ckpt={bad}", *tiny_run,
            f"data.root={tiny_data_root}", f"output.dir={tmp_path / 'runs'}", "tracking.enabled=false"]
    assert bench(*args) == 4
    err = capsys.readouterr().err
    assert "MAE_encoder" in err and "Traceback" not in err


def test_show_and_ls(tiny_data_root, capsys):
    assert bench("show", "suite=scanobjectnn", "method=point_mae", "profile=demo") == 0
    shown = capsys.readouterr().out
    assert "suite=scanobjectnn method=point_mae profile=demo" in shown and "mask_ratio" in shown
    assert bench("ls", f"data.root={tiny_data_root}") == 0
    listing = capsys.readouterr().out
    assert "point_mae" in listing and "scanobjectnn" in listing and "present" in listing


def test_show_plans_like_run_but_writes_no_data(tmp_path, capsys):
    empty = tmp_path / "nodata"
    assert bench("show", "suite=svm", "method=scratch", f"data.root={empty}") == 0
    shown = capsys.readouterr().out
    assert "profile=demo" in shown and "not written yet" in shown and "reference_c" in shown
    assert not empty.exists()


def test_record_json_is_self_describing(sweep):
    _, out = sweep
    path = next((out / "records").rglob("*.json"))
    data = json.loads(path.read_text())
    assert data["config"]["suite"]["name"] == "scanobjectnn" and data["schema_version"] == 2
    headline = data["results"][0]
    assert headline["name"] == data["metric"] == "acc" and (headline["direction"], headline["unit"]) == ("max", "%")
    assert headline["statistics"]["best"]["role"] == "paper" and headline["statistics"]["best"]["rule"]
    assert data["config_hash"] and data["env"]["git_commit"] and data["env"]["deterministic"] is False


SHARED_MODELNET = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "modelnet40_normal_resampled_2class"


@pytest.mark.skipif(not SHARED_MODELNET.exists(), reason="../shared/data (real ModelNet40 fixture) is absent")
def test_real_data_runs_the_paper_profile_and_compares_with_published(tiny_run, tmp_path, capsys):
    """Real ModelNet40 files under the data root: profile paper chosen by itself, records marked real, the
    leaderboard puts the published number beside ours. (Tiny epochs/model via overrides, on top of paper.)"""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(SHARED_MODELNET, root / "ModelNet" / "modelnet40_normal_resampled")
    ckpt = _official_checkpoint(tmp_path / "pretrain.pth")
    small = ["method.encoder.trans_dim=96", "method.encoder.encoder_dims=96", "method.encoder.depth=4",
             "method.encoder.num_heads=4", "method.encoder.patch_hidden=32", "suite.npoints=512",
             "suite.variant_options.1k.npoints=512", "suite.variant_options.1k.num_group=32", "suite.group_size=16"]
    args = ["run", "suite=modelnet40", "method=point_mae", f"method.ckpt={ckpt}", "suite.variants=[1k]", *tiny_run,
            *small, f"data.root={root}", f"output.dir={tmp_path / 'runs'}", "tracking.enabled=false"]
    assert bench(*args) == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert record.data_kind == "real" and record.profile == "paper"
    assert (root / "ModelNet" / "modelnet40_normal_resampled" / "modelnet40_test_8192pts_fps.dat").exists()
    markdown = (tmp_path / "runs" / "leaderboard" / "leaderboard.md").read_text()
    assert "real data" in markdown and "SYNTHETIC" not in markdown and "published" in markdown


def test_flags_work_before_and_after_the_subcommand():
    from bench.cli import build_parser

    after = build_parser().parse_args(["report", "output.dir=x", "--quiet"])
    before = build_parser().parse_args(["--debug", "report"])
    plain = build_parser().parse_args(["report"])
    assert (after.quiet, after.debug) == (True, False)
    assert (before.quiet, before.debug) == (False, True)
    assert (plain.quiet, plain.debug) == (False, False)

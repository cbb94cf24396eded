"""MLflow runs a user can filter: descriptive names and tags on sweep, group, job and pre-training runs, the
leaderboard files as artifacts of the sweep run, the pre-training checkpoint's path and sha256 as tags, and a
re-run of a finished sweep that keeps the sweep run's first end time (bench/tracking.py, "Re-runs")."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import mlflow
import pytest

from bench.config import parse_cli
from bench.progress import NullProgress
from bench.records import load_records
from bench.runner import run
from bench.tracking import MlflowTracker
from reports.render import write_leaderboard

pytestmark = pytest.mark.slow


def sweep_once(args: list[str], out: Path):
    """What ``bench run`` does (bench/cli.py cmd_run): the sweep, the leaderboard, its files on the sweep run."""
    outcome = run(parse_cli(args), NullProgress())
    paths = write_leaderboard(load_records(out / "records"), out / "leaderboard", out / "tuning")
    outcome.log_leaderboard(paths)
    return outcome, paths


@pytest.fixture(scope="module")
def sweep(tiny_data_root, tiny_run, tmp_path_factory):
    """point_mae on objbg, seeds 0 and 1, tracked in a SQLite store in a temp folder."""
    out = tmp_path_factory.mktemp("runs")
    args = ["suite=scanobjectnn", "method=point_mae", "suite.variants=[objbg]", *tiny_run, "seeds=[0,1]",
            f"data.root={tiny_data_root}", f"output.dir={out}", f"tracking.uri=sqlite:///{out / 'mlflow.db'}"]
    outcome, paths = sweep_once(args, out)
    client = mlflow.MlflowClient(outcome.tracking_uri)
    experiment = client.get_experiment_by_name("pointbench").experiment_id
    return args, out, outcome, paths, client, experiment


def only(client, experiment, filter_string: str):
    runs = client.search_runs([experiment], filter_string=filter_string, max_results=100)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def test_job_runs_are_named_and_tagged_by_method_suite_variant_seed(sweep):
    _, _, _, _, client, experiment = sweep
    job = only(client, experiment, "tags.bench.stage = 'job' and tags.bench.seed = '1' and tags.bench.variant = "
                                   "'objbg' and tags.bench.method = 'point_mae' and tags.bench.suite = 'scanobjectnn'")
    assert job.info.run_name == "point_mae · scanobjectnn/objbg · seed 1"
    assert job.data.tags["bench.data_kind"] == "synthetic"
    names = {r.info.run_name for r in client.search_runs([experiment], "tags.bench.stage = 'job'")}
    assert names == {"point_mae · scanobjectnn/objbg · seed 0", "point_mae · scanobjectnn/objbg · seed 1"}


def test_group_and_sweep_runs_are_named_and_tagged(sweep):
    _, _, outcome, _, client, experiment = sweep
    group = only(client, experiment, "tags.bench.stage = 'group' and tags.bench.method = 'point_mae' and "
                                     "tags.bench.variant = 'objbg' and tags.bench.suite = 'scanobjectnn'")
    assert group.info.run_name == "point_mae · scanobjectnn/objbg"
    sweep_run = only(client, experiment, "tags.bench.stage = 'sweep' and tags.bench.suite = 'scanobjectnn'")
    assert sweep_run.info.run_name == "scanobjectnn · sweep (demo, synthetic)"
    assert sweep_run.data.tags["bench.profile"] == "demo" and outcome.sweep_runs == [sweep_run.info.run_id]
    assert group.data.tags["mlflow.parentRunId"] == sweep_run.info.run_id


def test_leaderboard_files_are_artifacts_of_the_sweep_run(sweep):
    _, _, outcome, paths, client, _ = sweep
    logged = {a.path for a in client.list_artifacts(outcome.sweep_runs[0], "leaderboard")}
    assert logged == {f"leaderboard/{path.name}" for path in paths.values()}
    assert {"leaderboard/leaderboard.md", "leaderboard/leaderboard.csv", "leaderboard/leaderboard.html",
            "leaderboard/leaderboard.tex"} <= logged
    local = mlflow.artifacts.download_artifacts(run_id=outcome.sweep_runs[0], artifact_path="leaderboard/"
                                                "leaderboard.md", tracking_uri=outcome.tracking_uri)
    assert Path(local).read_text() == paths["md"].read_text()


def test_pretraining_run_carries_method_stage_hash_and_checkpoint(sweep):
    _, out, _, _, client, experiment = sweep
    pre = only(client, experiment, "tags.bench.stage = 'pretrain' and tags.bench.method = 'point_mae'")
    tags = pre.data.tags
    assert pre.info.run_name == "point_mae · pretrain"
    assert tags["bench.pretrain_stage"] == "pretrain"  # the implicit single stage
    folder = out / "pretrain" / f"point_mae-{tags['bench.pretrain_hash']}"
    ckpt = folder / "pretrain.pth"
    assert tags["bench.checkpoint"] == str(ckpt.resolve())
    assert tags["bench.checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert tags["bench.checkpoint_bytes"] == str(ckpt.stat().st_size)
    record = load_records(out / "records")[0]
    assert record.pretrain["hash"] == tags["bench.pretrain_hash"]


def test_running_a_finished_sweep_again_keeps_its_end_time_and_tags_the_resume(sweep):
    args, out, outcome, _, client, experiment = sweep
    before = client.get_run(outcome.sweep_runs[0]).info
    count = len(client.search_runs([experiment], max_results=100))
    time.sleep(1.1)  # an end time moved by the re-run would differ by at least this
    again, _ = sweep_once(args, out)
    after = client.get_run(again.sweep_runs[0])
    assert again.sweep_runs == outcome.sweep_runs and again.ran == 0
    assert after.info.status == "FINISHED" and after.info.end_time == before.end_time
    assert after.info.start_time == before.start_time and "bench.resumed_at" in after.data.tags
    assert len(client.search_runs([experiment], max_results=100)) == count


def test_reopened_runs_finished_keep_their_end_crashed_ones_end_again(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "reopen", artifact_root=tmp_path / "artifacts")
    client = mlflow.MlflowClient(uri)
    done, crashed = tracker.open_run("done", "done"), tracker.open_run("crashed", "crashed")
    tracker.close_run(done)
    first_end = client.get_run(done).info.end_time
    time.sleep(0.05)
    assert tracker.open_run("done", "done · renamed", tags={"bench.seed": "0"}) == done
    info = client.get_run(done)
    assert info.info.status == "FINISHED" and info.info.run_name == "done · renamed"
    assert info.data.tags["bench.seed"] == "0" and "bench.resumed_at" in info.data.tags
    tracker.close_run(done)
    assert client.get_run(done).info.end_time == first_end
    assert tracker.open_run("crashed", "crashed") == crashed  # never closed: a crash
    assert client.get_run(crashed).info.status == "RUNNING"
    tracker.close_run(crashed)
    assert client.get_run(crashed).info.status == "FINISHED" and client.get_run(crashed).info.end_time > first_end
    tracker.close_run(done, status="FAILED")  # a failure is never hidden
    assert client.get_run(done).info.status == "FAILED"

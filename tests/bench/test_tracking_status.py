"""No MLflow run left RUNNING (issue 15, item 5), through the CLI in-process: a sweep whose job raises closes its
sweep, group and job runs FAILED (Ctrl-C: KILLED); a failed pre-training closes its run and the sweep's FAILED; the
cache path closes FINISHED a pre-training run a kill left RUNNING after its checkpoint was written, and removes the
stale last.pt beside it; and running a finished sweep again logs no group statistics again (item 7)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from bench.cli import main

pytestmark = pytest.mark.slow

ARGS = ["suite=scanobjectnn", "suite.variants=[objbg]", "seeds=[0]", "trainer.epochs=2", "trainer.batch_size=8",
        "pretrain.trainer.epochs=1", "pretrain.trainer.batch_size=8", "data.standin_size=tiny", "executor.workers=1"]


def bench(*args: str) -> int:
    return main(["--quiet", "run", *args])


def _client(out: Path):
    client = mlflow.MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    return client, client.get_experiment_by_name("pointbench").experiment_id


def _statuses(out: Path) -> dict[str, set[str]]:
    client, experiment = _client(out)
    statuses: dict[str, set[str]] = {}
    for run in client.search_runs([experiment], max_results=100):
        statuses.setdefault(run.data.tags["bench.stage"], set()).add(run.info.status)
    return statuses


def _fail_in(monkeypatch, error: BaseException, pretraining: bool) -> None:
    """The first epoch of the pre-training (``pretraining``) or of a job raises ``error`` once it is saved."""
    import bench.trainer as trainer

    original = trainer.Trainer._save_last

    def save_then_fail(self, model, optimizer, epoch, result):
        original(self, model, optimizer, epoch, result)
        if self.desc.startswith("pretrain") == pretraining:
            raise error

    monkeypatch.setattr(trainer.Trainer, "_save_last", save_then_fail)


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("a bug in a job"), "FAILED"),
                                               (KeyboardInterrupt(), "KILLED")])
def test_a_failed_sweep_closes_its_sweep_group_and_job_runs(error, status, tiny_data_root, isolated_env, monkeypatch):
    out = isolated_env / "runs"
    _fail_in(monkeypatch, error, pretraining=False)
    args = [*ARGS, "method=scratch", f"data.root={tiny_data_root}", f"output.dir={out}"]
    if isinstance(error, KeyboardInterrupt):
        assert bench(*args) == 130
    else:
        with pytest.raises(RuntimeError, match="a bug in a job"):
            bench(*args)
    assert _statuses(out) == {"sweep": {status}, "group": {status}, "job": {status}}  # before: sweep, group RUNNING


def test_a_failed_pretraining_closes_its_run_and_the_sweep_failed(tiny_data_root, isolated_env, monkeypatch):
    out = isolated_env / "runs"
    _fail_in(monkeypatch, RuntimeError("a bug in the pre-training"), pretraining=True)
    with pytest.raises(RuntimeError, match="pre-training"):
        bench(*ARGS, "method=point_mae", f"data.root={tiny_data_root}", f"output.dir={out}")
    assert _statuses(out) == {"sweep": {"FAILED"}, "pretrain": {"FAILED"}}


def test_the_cache_closes_a_pretraining_run_left_running_and_a_rerun_logs_nothing_again(tiny_data_root, isolated_env):
    out = isolated_env / "runs"
    args = [*ARGS, "method=point_mae", f"data.root={tiny_data_root}", f"output.dir={out}"]
    assert bench(*args) == 0
    client, experiment = _client(out)
    pretrain = client.search_runs([experiment], "tags.bench.stage = 'pretrain'")[0]
    checkpoint = Path(pretrain.data.tags["bench.checkpoint"])
    # a kill after pretrain.pth was written, before the run was tagged and closed and last.pt removed
    client.update_run(pretrain.info.run_id, status="RUNNING")
    client.delete_tag(pretrain.info.run_id, "bench.checkpoint")
    (checkpoint.parent / "last.pt").write_bytes(b"stale")

    assert bench(*args) == 0
    after = client.get_run(pretrain.info.run_id)
    assert after.info.status == "FINISHED" and after.data.tags["bench.checkpoint"] == str(checkpoint)
    assert not (checkpoint.parent / "last.pt").exists() and checkpoint.is_file()
    group = client.search_runs([experiment], "tags.bench.stage = 'group'")[0]
    for name in ("n_seeds", "honest_mean"):  # before: a second value at step 0 on every re-run
        assert len(client.get_metric_history(group.info.run_id, name)) == 1
    assert _statuses(out) == {"sweep": {"FINISHED"}, "pretrain": {"FINISHED"}, "group": {"FINISHED"},
                              "job": {"FINISHED"}}

"""``bench tune`` on the tiny stand-in: pruning, the override file and ``bench run +overrides=``, resume (finished
trials kept, a dead worker's trial retried), the validation hold-out, bad search spaces, and shared storages
(SQLite and PostgreSQL) with two concurrent worker processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml

from bench.cli import main
from bench.config import parse_cli, resolve
from bench.errors import ConfigError
from bench.records import load_records
from bench.tuning import make_storage
from bench.tuning_space import parse_space
from suites.protocols.toolkit import stratified_split

pytestmark = pytest.mark.slow

#: a model and cloud size that train an epoch in a fraction of a second
TINY_MODEL = ["method.encoder.trans_dim=32", "method.encoder.encoder_dims=32", "method.encoder.depth=1",
              "method.encoder.num_heads=2", "method.encoder.patch_hidden=16", "suite.npoints=128",
              "suite.num_group=8", "suite.group_size=16", "suite.vote.enabled=false", "trainer.batch_size=16",
              "trainer.threads=1"]
#: the method's own space removed (``~tune.space``), then one learning-rate dimension
LR_SPACE = ["~tune.space", "tune.space.trainer.lr.low=1e-4", "tune.space.trainer.lr.high=3e-3",
            "tune.space.trainer.lr.log=true"]


def tune_args(data_root: Path, out: Path, tiny_run: list[str], *extra: str) -> list[str]:
    return ["suite=scanobjectnn", "method=scratch", *tiny_run, *TINY_MODEL, *LR_SPACE, f"data.root={data_root}",
            f"output.dir={out}", *extra]


def summary_of(out: Path, study: str) -> dict:
    return json.loads((out / "tuning" / study / "summary.json").read_text())


def test_study_prunes_writes_overrides_and_bench_run_applies_them(tiny_data_root, tiny_run, tmp_path, isolated_env):
    """Threshold pruner above any accuracy: the default trial 0 (never pruned) completes, the others are pruned at
    their second epoch; summary, override file, plots and nested MLflow runs are written."""
    args = tune_args(tiny_data_root, tmp_path, tiny_run, "tune.trials=3", "tune.study=s", "tune.pruner=threshold",
                     "tune.threshold=101", "tune.pruner_warmup_epochs=1")
    assert main(["--quiet", "tune", *args]) == 0
    summary = summary_of(tmp_path, "s")
    assert [(t["number"], t["state"], t["default"]) for t in summary["trials"]] == [
        (0, "COMPLETE", True), (1, "PRUNED", False), (2, "PRUNED", False)]
    assert [t["epochs_run"] for t in summary["trials"]] == [2, 2, 2]
    assert summary["best"]["number"] == 0 and summary["default"]["value"] == summary["best"]["value"]
    assert summary["improvement"] == 0.0 and summary["space"]["trainer.lr"]["log"] is True
    assert summary["plots"]["history"] and summary["plots"]["importance"] is None  # < 2 completed trials
    assert not list((tmp_path / "tuning" / "s").glob("work*"))  # trial checkpoint folders are cleaned up
    overrides = Path(summary["overrides_file"])
    assert yaml.safe_load(overrides.read_text()) == {"trainer": {"lr": summary["best"]["params"]["trainer.lr"]}}

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pointbench").experiment_id])
    (study_run,) = [r for r in runs if r.data.tags.get("bench.stage") == "study"]
    trials = {r.data.tags["optuna.trial"]: r for r in runs if r.data.tags.get("bench.stage") == "trial"}
    assert sorted(trials) == ["0", "1", "2"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials.values()} == {study_run.info.run_id}
    assert [trials[n].info.status for n in ("0", "1", "2")] == ["FINISHED", "KILLED", "KILLED"]
    seed_runs = {r.data.tags["mlflow.parentRunId"]: r.info.status for r in runs
                 if r.data.tags.get("bench.stage") == "job"}
    assert [seed_runs[trials[n].info.run_id] for n in ("0", "1", "2")] == ["FINISHED", "KILLED", "KILLED"]
    assert {a.path for a in client.list_artifacts(study_run.info.run_id)} >= {"summary.json", "best_overrides.yaml"}

    run_out = tmp_path / "run"
    assert main(["--quiet", "run", "suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]", *tiny_run,
                 *TINY_MODEL, f"data.root={tiny_data_root}", f"output.dir={run_out}", "tracking.enabled=false",
                 f"+overrides={overrides}"]) == 0
    (record,) = load_records(run_out / "records")
    assert record.config["trainer"]["lr"] == summary["best"]["params"]["trainer.lr"]
    assert record.config["suite"]["validation"] == 0.0  # the tuned config trains on the whole train split


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_resume_keeps_finished_trials_and_retries_a_dead_workers_trial(tiny_data_root, tiny_run, tmp_path):
    args = tune_args(tiny_data_root, tmp_path, tiny_run, "tune.study=r", "tune.pruner=none", "tracking.enabled=false",
                     "tune.heartbeat_s=1", "trainer.epochs=1")
    assert main(["--quiet", "tune", *args, "tune.trials=2"]) == 0
    first = summary_of(tmp_path, "r")["trials"]
    # a worker that died mid-trial: a RUNNING trial whose last heartbeat is older than the grace period (2 s)
    url = f"sqlite:///{tmp_path / 'tuning' / 'optuna.db'}"
    storage = make_storage(url, heartbeat_s=1, retries=1)
    study = optuna.load_study(study_name="r", storage=storage)
    dead = study.ask()
    lr = dead.suggest_float("trainer.lr", 1e-4, 3e-3, log=True)
    storage.record_heartbeat(dead._trial_id)
    # SQLite's CURRENT_TIMESTAMP has whole-second resolution and Optuna tests `now - heartbeat > grace`, so only
    # 3.5 s guarantees a 3 s difference of the truncated stamps (2.5 s passed or failed with the sub-second phase)
    time.sleep(3.5)
    assert main(["--quiet", "tune", *args, "tune.trials=4"]) == 0
    summary = summary_of(tmp_path, "r")
    trials = summary["trials"]
    assert trials[:2] == first  # finished trials untouched, not redone
    assert trials[2]["state"] == "FAIL" and trials[2]["params"] == {"trainer.lr": lr}
    retry = [t for t in trials[3:] if t["params"] == {"trainer.lr": lr}]
    assert len(retry) == 1 and retry[0]["state"] == "COMPLETE"
    assert summary["counts"]["COMPLETE"] == 4 and len(trials) == 5
    assert main(["--quiet", "tune", *args, "tune.trials=4"]) == 0  # nothing left to do
    assert len(summary_of(tmp_path, "r")["trials"]) == 5


def test_stratified_split_is_seeded_per_class_and_disjoint():
    labels = np.repeat([0, 1, 2], [10, 20, 5])
    kept, held = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[held]).tolist() == [2, 4, 1]
    assert np.intersect1d(kept, held).size == 0 and sorted([*kept, *held]) == list(range(35))
    again_kept, again_held = stratified_split(labels, 0.2, seed=0)
    assert held.tolist() == again_held.tolist() and kept.tolist() == again_kept.tolist()
    assert stratified_split(labels, 0.2, seed=1)[1].tolist() != held.tolist()
    with pytest.raises(ConfigError, match="holds out no sample"):
        stratified_split(np.array([0, 1, 2]), 0.1, seed=0)
    with pytest.raises(ConfigError, match=r"suite.validation=1.5"):
        stratified_split(labels, 1.5, seed=0)


def test_hold_out_comes_from_train_never_test(tiny_data_root, tiny_run):
    from bench.api import JobContext
    from bench.data.base import build_dataset
    from bench.registry import METHODS
    from suites.protocols.toolkit import chain, hold_out, job_dataset

    overrides = [*tiny_run, *TINY_MODEL, "suite.validation=0.25"]
    cfg = resolve("scanobjectnn", "scratch", profile="demo", overrides=overrides)
    root = tiny_data_root / "synthetic"
    ctx = JobContext(cfg=cfg, method_cls=METHODS.get("scratch"), variant="objbg", seed=3, data_root=root,
                     workdir=None)
    full = job_dataset(ctx, "train", chain(cfg.suite.transforms.train))
    fit, val = hold_out(ctx, full, cfg.suite.validation)
    assert len(fit) + len(val) == len(full) and len(val) == 15 * 2  # 8 per class in the tiny stand-in
    assert np.bincount(val.labels().numpy()).tolist() == [2] * 15
    test = build_dataset("scanobjectnn", root, "test", "objbg")
    train = build_dataset("scanobjectnn", root, "train", "objbg")
    test_clouds = {test.load(i)["xyz"].tobytes() for i in range(len(test))}
    held = set(fit.dataset.indices.tolist()) ^ set(range(len(train)))
    assert held and not any(train.load(i)["xyz"].tobytes() in test_clouds for i in held)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"trainer": {"lrr": [0.1]}}, r'tune.space.trainer.lrr: .*Did you mean "lr"'),
        ({"trainer.lr": {"low": 1e-3, "high": 1e-4}}, "tune.space.trainer.lr: low=0.001 is above high"),
        ({"trainer.epochs": {"low": 1.5, "high": 3.0}}, "tune.space.trainer.epochs: trainer.epochs is an integer"),
        ({"trainer.lr": {"low": 0.0, "high": 1e-3, "log": True}}, "tune.space.trainer.lr: log scale needs low > 0"),
        ({"trainer.lr": {"lo": 0.0, "high": 1e-3}}, r'tune.space.trainer.lr: unknown entry "lo". Did you mean "low"'),
        ({"trainer.lr": [[1], [2]]}, "tune.space.trainer.lr: choices must be"),
        ({"suite.transforms": [1, 2]}, "tune.space.suite.transforms: .* is a section"),
        ({"trainer": {}}, "tune.space.trainer: expected"),
        ({"tune.trials": [1, 2]}, "tune.space.tune.trials"),
        ({}, "tune.space is empty"),
    ],
)
def test_bad_space_entries_name_the_key(space, message):
    cfg = resolve("scanobjectnn", "scratch", profile="demo")
    with pytest.raises(ConfigError, match=message):
        parse_space(space, cfg)


def test_bad_space_on_the_command_line_exits_2(tiny_data_root, tiny_run, tmp_path, capsys):
    args = tune_args(tiny_data_root, tmp_path, tiny_run, "tune.space.trainer.drop_pth=[0.0,0.1]")
    assert main(["--quiet", "tune", *args]) == 2
    assert "tune.space.trainer.drop_pth" in capsys.readouterr().err


def test_overrides_file_applies_and_errors_name_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("trainer: {lr: 0.00123, epochs: 7}\n")
    request = parse_cli(["suite=scanobjectnn", "method=scratch", f"+overrides={good}", "trainer.epochs=9"])
    cfg = resolve("scanobjectnn", "scratch", profile="demo", overrides=request.overrides)
    assert cfg.trainer.lr == 0.00123 and cfg.trainer.epochs == 9  # key=value on the command line wins
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {lrr: 0.1}\n")
    request = parse_cli(["suite=scanobjectnn", "method=scratch", f"+overrides={bad}"])
    with pytest.raises(ConfigError, match=rf"overrides file {bad}.*trainer.lrr"):
        resolve("scanobjectnn", "scratch", profile="demo", overrides=request.overrides)
    with pytest.raises(ConfigError, match="config file not found: .*missing.yaml"):
        parse_cli(["suite=scanobjectnn", f"+overrides={tmp_path / 'missing.yaml'}"])


# --- shared storages, two worker processes -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found and shutil.which("pg_ctl") else None


@pytest.fixture()
def postgres_url():
    """A throw-away PostgreSQL cluster on 127.0.0.1 (as user ``postgres`` when run as root); skips when absent."""
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install psycopg2-binary)")
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or on PATH")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="pointbench-pg-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as a non-root user")
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data, port = folder / "data", _free_port()
    try:
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "bench", "-A", "trust"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                        f"-h 127.0.0.1 -p {port} -k {folder}", "start"], check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, KeyError, LookupError) as err:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {getattr(err, 'stderr', b'') or err}")
    try:
        yield f"postgresql://bench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def _two_workers(args: list[str], cwd: Path) -> list[str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = [sys.executable, "-m", "bench.cli", "--quiet", "tune", *args]
    procs = [subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    return [out for out, _ in outputs]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_concurrent_workers_share_one_study_and_lose_no_trial(backend, request, tiny_data_root, tiny_run,
                                                                   tmp_path):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'o.db'}"
    args = tune_args(tiny_data_root, tmp_path, tiny_run, "tune.study=shared", f"tune.storage={url}",
                     "tune.trials=4", "tune.pruner=none", "tracking.enabled=false", "trainer.epochs=1")
    outputs = _two_workers(args, tmp_path)
    ran = [int(out.split("ran ")[1].split(" trial")[0]) for out in outputs]
    trials = optuna.load_study(study_name="shared", storage=make_storage(url, 60, 1)).get_trials()
    assert all(n >= 1 for n in ran) and sum(ran) == len(trials)  # both workers worked, every trial accounted for
    assert [t.number for t in trials] == list(range(len(trials))) and 4 <= len(trials) <= 5  # overshoot <= 1
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.params["trainer.lr"] for t in trials}) == len(trials)  # workers drew different points

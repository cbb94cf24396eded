"""The Trainer under DDP: 2 CPU processes (gloo) train to the single-process result; the sampler shards the
single-process order; rank 0 alone calls hooks and writes checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from bench.metrics.base import MAX
from bench.schema import TrainerConfig
from bench.trainer import SeededDistributedSampler, Selection, Trainer

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend")

CFG = dict(epochs=3, batch_size=16, lr=1e-2, warmup_epochs=1, grad_clip=1.0, threads=1)


class DictData(TensorDataset):
    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return {"xyz": x, "label": y, "index": torch.tensor(index)}


def make_data(n: int = 72) -> DictData:  # 72 = 4 global batches of 16 and 8 samples dropped (drop_last)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return DictData(x, x.sum(-1))


def make_model() -> nn.Module:  # no dropout, no BatchNorm: the only randomness is the data order
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))


def evaluate(model, epoch):
    with torch.no_grad():
        return {"test_score": -float(model(torch.ones(4, 3)).sub(3).abs().mean())}


def fit(workdir: Path, log: list) -> tuple[nn.Module, list[dict]]:
    def step(model, batch):
        log.append(("batch", batch["index"].tolist()))
        return {"loss": ((model(batch["xyz"]).squeeze(-1) - batch["label"]) ** 2).mean()}

    model = make_model()
    trainer = Trainer(TrainerConfig(**CFG), seed=7, workdir=workdir)
    result = trainer.fit(model, make_data(), step, evaluate, select=Selection("test_score", MAX),
                         on_epoch_end=lambda epoch, row: log.append(("hook", epoch)))
    assert trainer.load_best(make_model())  # best.pt is readable on every rank once fit returns
    return model, result.history


def _rank_main(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        log: list = []
        model, history = fit(Path(out) / "work", log)
        torch.save({"state": model.state_dict(), "history": history}, Path(out) / f"rank{rank}.pt")
        (Path(out) / f"log{rank}.json").write_text(json.dumps(log))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torch.multiprocessing.spawn(_rank_main, args=(str(out / "store"), str(out)), nprocs=2, join=True)
    return out


def test_two_processes_reach_the_single_process_weights_and_metrics(ddp_run, tmp_path):
    single_log: list = []
    single, history = fit(tmp_path, single_log)
    for rank in (0, 1):
        ddp = torch.load(ddp_run / f"rank{rank}.pt", weights_only=True)
        for name, value in single.state_dict().items():
            torch.testing.assert_close(ddp["state"][name], value, rtol=1e-5, atol=1e-6)
        for ours, theirs in zip(history, ddp["history"], strict=True):
            assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
            assert ours["test_score"] == pytest.approx(theirs["test_score"], rel=1e-5)
            assert ours["lr"] == theirs["lr"]


def test_each_rank_takes_half_of_every_single_process_batch(ddp_run, tmp_path):
    single_log: list = []
    fit(tmp_path, single_log)
    single = [b for kind, b in single_log if kind == "batch"]
    ranks = [[b for kind, b in json.loads((ddp_run / f"log{r}.json").read_text()) if kind == "batch"] for r in (0, 1)]
    assert all(len(b) == 8 for b in ranks[0] + ranks[1])  # per-rank batch = global 16 / 2
    assert [a + b for a, b in zip(*ranks, strict=True)] == single


def test_only_rank_zero_calls_the_epoch_hook_and_writes_checkpoints(ddp_run):
    hooks = [[e for kind, e in json.loads((ddp_run / f"log{r}.json").read_text()) if kind == "hook"] for r in (0, 1)]
    assert hooks == [[0, 1, 2], []]
    assert {p.name for p in (ddp_run / "work").iterdir()} == {"last.pt", "best.pt"}
    assert torch.load(ddp_run / "work" / "last.pt", weights_only=True)["epoch"] == 2


def test_sampler_shards_the_single_process_order():
    data = make_data(40)
    for epoch in (0, 3):
        generator = torch.Generator().manual_seed(5 * 100_003 + epoch)
        single = [b.tolist() for b in DataLoader(range(40), batch_size=12, shuffle=True, generator=generator,
                                                 drop_last=True)]
        shards = []
        for rank in range(3):
            sampler = SeededDistributedSampler(data, global_batch=12, seed=5, num_replicas=3, rank=rank)
            sampler.set_epoch(epoch)
            assert len(sampler) == 12  # 3 global batches of 12, 4 per rank each
            shards.append(list(sampler))
        rebuilt = [sum((s[4 * i : 4 * i + 4] for s in shards), []) for i in range(3)]
        assert rebuilt == single


@pytest.mark.slow
def test_bench_run_under_torchrun_writes_one_record_and_one_set_of_runs(tiny_data_root, tmp_path):
    """``torchrun --nproc_per_node=2 -m bench.cli run ...``: both ranks train, rank 0 alone records and tracks."""
    import os
    import subprocess
    import sys

    import mlflow

    from bench.records import load_records

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "bench.cli", "--quiet", "run", "suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]",
               "seeds=[0]", "trainer.epochs=2", "trainer.batch_size=8", "data.standin_size=tiny",
               "suite.vote.times=1", f"data.root={tiny_data_root}", f"output.dir={tmp_path}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("ran 1 job(s)") == 1  # rank 0 reports, rank 1 stays silent
    (record,) = load_records(tmp_path / "records")
    assert [row["epoch"] for row in record.epochs] == [0.0, 1.0]
    assert record.env["world_size"] == 2
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pointbench").experiment_id])
    assert sorted(r.data.tags["bench.stage"] for r in runs) == ["group", "job", "sweep"]
    assert (tmp_path / "leaderboard" / "leaderboard.md").exists()

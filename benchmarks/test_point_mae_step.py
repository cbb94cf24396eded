"""Point-MAE step timings on CPU (2 threads): pointbench vs a literal reference-style implementation.

Run: ``pytest benchmarks/test_point_mae_step.py --benchmark-enable`` (``tox -e bench``). Paper-size model:
- pre-training step: batch 32, 1024 points, 64 groups of 32, mask 0.6, forward + backward + AdamW step;
- fine-tuning step: batch 32, 2048 points, 128 groups of 32, 15 classes, cross-entropy, grad-clip 10, AdamW;
- grouping alone (FPS + kNN + gather, through ``extensions.ops``) on the fine-tuning batch, reported as a share
  of our fine-tuning step (``extensions.ops``' backend in use is recorded in extra_info).
Ratios use each benchmark's fastest round. CPU timings on a shared machine are noisy: compare runs only with
the same backend and an idle machine.
Both implementations share one state dict, and their eval-mode logits are checked equal before timing. Models
are built inside fixtures, so collection stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from interleaved import paired
from pytest_benchmark.fixture import BenchmarkFixture
from reference_point_mae import RefPointMAE, RefPointTransformer
from torch import Tensor, nn

from extensions import ops
from methods.blocks.grouping import PatchGrouper
from methods.blocks.heads import PointClassifier
from methods.point_mae import PointMAE, PointMAEConfig

THREADS = 2
BATCH = 32
ROUNDS = 3
#: fastest round per benchmark (the min is the robust statistic on a shared, noisy machine)
BEST: dict[str, float] = {}
PretrainModels = tuple[PointMAE, RefPointMAE, Tensor]
FinetuneModels = tuple[PointClassifier, RefPointTransformer, Tensor, Tensor]


def _run(benchmark: BenchmarkFixture, key: str, step: Callable[[], object]) -> None:
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(threads=THREADS, ops_backend=ops.backend_name())
    if benchmark.stats is not None:  # None under --benchmark-disable
        BEST[key] = benchmark.stats.stats.min


def _train_step(model: nn.Module, loss_fn: Callable[[], Tensor], clip: float | None) -> Callable[[], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    return step


@pytest.fixture(scope="module")
def pretrain_models() -> PretrainModels:
    return paired(lambda: PointMAE(PointMAEConfig()), RefPointMAE, BATCH)


def _classifier() -> PointClassifier:
    """The ScanObjectNN fine-tuning model: ViT-S on 128 patches of 32 points, 15 classes."""
    backbone = PointMAE.build_backbone(PointMAEConfig(), num_group=128, group_size=32, drop_path=0.1)
    return PointClassifier(backbone, 15)


@pytest.fixture(scope="module")
def finetune_models() -> FinetuneModels:
    ours, ref, xyz = paired(_classifier, lambda: RefPointTransformer(15), BATCH, 2048)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(xyz[:4]), ref.eval()(xyz[:4]), atol=1e-4, rtol=1e-4)
    return ours, ref, xyz, torch.randint(0, 15, (BATCH,))


@pytest.mark.benchmark(group="pretrain-step")
def test_pretrain_step_reference(benchmark: BenchmarkFixture, pretrain_models: PretrainModels) -> None:
    _, ref, xyz = pretrain_models
    _run(benchmark, "pretrain_ref", _train_step(ref, lambda: ref(xyz), None))


@pytest.mark.benchmark(group="pretrain-step")
def test_pretrain_step_ours(benchmark: BenchmarkFixture, pretrain_models: PretrainModels) -> None:
    ours, _, xyz = pretrain_models
    _run(benchmark, "pretrain_ours", _train_step(ours, lambda: ours.pretrain_step({"xyz": xyz})["loss"], None))


@pytest.mark.benchmark(group="finetune-step")
def test_finetune_step_reference(benchmark: BenchmarkFixture, finetune_models: FinetuneModels) -> None:
    _, ref, xyz, labels = finetune_models
    _run(benchmark, "finetune_ref", _train_step(ref, lambda: nn.functional.cross_entropy(ref(xyz), labels), 10.0))


@pytest.mark.benchmark(group="finetune-step")
def test_finetune_step_ours(benchmark: BenchmarkFixture, finetune_models: FinetuneModels) -> None:
    ours, _, xyz, labels = finetune_models
    _run(benchmark, "finetune_ours", _train_step(ours, lambda: nn.functional.cross_entropy(ours(xyz), labels), 10.0))


@pytest.fixture(scope="module")
def scanobjectnn_loader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Batches of 32 from the ScanObjectNN stand-in (2048 points) through the paper-profile train chain."""
    from torch.utils.data import DataLoader

    from bench.data.base import TransformedDataset, build_dataset
    from bench.data.synthetic import write_standin
    from bench.data.transforms import build_transform
    from bench.registry import load_plugins

    load_plugins()
    root = tmp_path_factory.mktemp("data")
    write_standin(root, ["scanobjectnn"], size="demo")
    base = build_dataset("scanobjectnn", root, "train", "hardest")
    dataset = TransformedDataset(base, build_transform([{"random_subset": {"n": 2048}}, "rotate_y"]), seed=0)
    loader = DataLoader(dataset, batch_size=32, shuffle=True, drop_last=True, num_workers=0)

    def batches() -> Iterator[dict]:
        while True:
            yield from loader

    return batches()


@pytest.mark.benchmark(group="finetune-step")
def test_finetune_data_loading(benchmark: BenchmarkFixture, scanobjectnn_loader: Iterator[dict]) -> None:
    """One fine-tuning batch (32 x 2048 points, h5 in memory, subset + Rotate) in the main process."""
    _run(benchmark, "data", lambda: next(scanobjectnn_loader))


@pytest.mark.benchmark(group="finetune-step")
def test_finetune_grouping_share(
    benchmark: BenchmarkFixture, finetune_models: FinetuneModels, capsys: pytest.CaptureFixture[str]
) -> None:
    """FPS + kNN + gather for the fine-tuning batch; its share of our fine-tuning step goes in extra_info."""
    _, _, xyz, _ = finetune_models
    grouper = PatchGrouper(128, 32)
    _run(benchmark, "grouping", lambda: grouper(xyz))
    ratios = {}
    if {"pretrain_ref", "pretrain_ours"} <= BEST.keys():
        ratios["pretrain speed-up (ref / ours, best rounds)"] = BEST["pretrain_ref"] / BEST["pretrain_ours"]
    if {"finetune_ref", "finetune_ours"} <= BEST.keys():
        ratios["finetune speed-up (ref / ours, best rounds)"] = BEST["finetune_ref"] / BEST["finetune_ours"]
    if {"grouping", "finetune_ours"} <= BEST.keys():
        ratios["grouping share of our finetune step (best rounds)"] = BEST["grouping"] / BEST["finetune_ours"]
    if {"data", "grouping", "finetune_ours"} <= BEST.keys():
        ratios["data loading share of our finetune step (best rounds)"] = BEST["data"] / BEST["finetune_ours"]
        ratios["data + grouping share (target < 0.15)"] = (BEST["data"] + BEST["grouping"]) / BEST["finetune_ours"]
    benchmark.extra_info.update(ratios)
    with capsys.disabled():
        for name, value in ratios.items():
            print(f"\n{name}: {value:.3f}", end="")
        print()

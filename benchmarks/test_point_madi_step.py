"""Point-MaDi pre-training step on CPU (2 threads): pointbench vs a literal reference-style implementation, and
relative to Point-MAE's step.

Run: ``pytest benchmarks/test_point_madi_step.py --benchmark-enable -s`` (``tox -e bench``). Paper-size models,
batch 32, 1024 points, 64 groups of 32, two masks of 38 patches, forward + backward + AdamW step. The three steps
(reference MaDi, our MaDi, our Point-MAE) run interleaved, one of each per round, so machine load hits them alike;
ratios use each step's fastest round. CPU timings on a shared machine are noisy: compare runs only with the same
ops backend. Before timing, both MaDi implementations get one state dict, the same grouped patches (the
reference's unsorted kNN order differs from ours, and the noisy patch's flattening order matters) and the same
draws (the reference's own masks, timesteps and noises), and must agree on both losses and every gradient.
"""

from __future__ import annotations

import pytest
import torch
from interleaved import paired, time_interleaved, train_step
from pytest_benchmark.fixture import BenchmarkFixture
from reference_point_madi import RefPointMaDi
from torch import Tensor

from methods.point_madi import MaDiDraws, PointMaDi, PointMaDiConfig
from methods.point_mae import PointMAE, PointMAEConfig

THREADS = 2
BATCH = 32
ROUNDS = 3


@pytest.fixture(scope="module")
def models() -> tuple[PointMaDi, RefPointMaDi, Tensor]:
    return paired(lambda: PointMaDi(PointMaDiConfig()), RefPointMaDi, BATCH)


def test_losses_and_gradients_equal_the_reference(models: tuple[PointMaDi, RefPointMaDi, Tensor]) -> None:
    ours, ref, xyz = models
    ours.eval(), ref.eval()  # no drop path: the two draw their random numbers in different orders
    neighborhood, centers = ours.MAE_encoder.group_divider(xyz[:8])
    draws = ref.draw(centers)
    assert all(int(m.sum(1).unique()) == 38 for m in draws["masks"])
    ref_center, ref_patch = ref.forward_groups(neighborhood, centers, draws)
    out = ours.losses(neighborhood, centers, MaDiDraws(
        masks=torch.stack(draws["masks"]), t_center=draws["t_center"], t_patch=draws["t_patch"],
        noise_center=draws["noise_center"], noise_patch=draws["noise_patch"],
    ))  # fmt: skip
    torch.testing.assert_close(0.1 * out["center_mse"], ref_center.detach())
    torch.testing.assert_close(out["patch_cd"], ref_patch.detach())
    ours.zero_grad(), ref.zero_grad()
    out["loss"].backward()
    (ref_center + ref_patch).backward()
    ref_grads = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        assert param.grad is not None and ref_grads[name].grad is not None, name
        torch.testing.assert_close(param.grad, ref_grads[name].grad, atol=1e-5, rtol=1e-3, msg=name)
    ours.zero_grad(), ref.zero_grad()



@pytest.mark.benchmark(group="madi-pretrain-step")
def test_pretrain_step_interleaved(
    benchmark: BenchmarkFixture, models: tuple[PointMaDi, RefPointMaDi, Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    """One round = a reference MaDi step, our MaDi step and our Point-MAE step; best round per step."""
    ours, ref, xyz = models
    mae = PointMAE(PointMAEConfig())
    steps = {
        "madi_ref": train_step(ref, lambda: ref(xyz)),
        "madi_ours": train_step(ours, lambda: ours.pretrain_step({"xyz": xyz})["loss"]),
        "mae_ours": train_step(mae, lambda: mae.pretrain_step({"xyz": xyz})["loss"]),
    }
    time_interleaved(benchmark, steps, ROUNDS, THREADS, lambda best: {
        "MaDi speed-up (reference / ours, best rounds; target >= 1.5)": best["madi_ref"] / best["madi_ours"],
        "our MaDi step / our Point-MAE step": best["madi_ours"] / best["mae_ours"],
    }, capsys)

"""Point-PQAE pre-training step on CPU (2 threads): pointbench vs a literal reference-style implementation, and
relative to Point-MAE's step.

Run: ``pytest benchmarks/test_point_pqae_step.py --benchmark-enable -s`` (``tox -e bench``). Paper-size models,
batch 32, 1024 points, 64 groups of 32, forward + backward + AdamW step. The three steps (reference PQAE, our
PQAE, our Point-MAE) run interleaved, one of each per round, so machine load hits them alike; ratios use each
step's fastest round. CPU timings on a shared machine are noisy: compare runs only with the same ops backend.
Before timing, both PQAE implementations get one state dict and the same two views (the reference's own
``np.random`` crop, replayed through our view blocks) and must agree on the views, both losses and every gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interleaved import paired, time_interleaved, train_step
from pytest_benchmark.fixture import BenchmarkFixture
from reference_point_pqae import RefPointPQAE, crop, point_random_crop
from torch import Tensor

from methods.blocks.transformer import init_vit_weights
from methods.blocks.views import View, crop_nearest, minmax_normalize
from methods.point_mae import PointMAE, PointMAEConfig
from methods.point_pqae import PointPQAE, PointPQAEConfig

THREADS = 2
BATCH = 32
ROUNDS = 3


@pytest.fixture(scope="module")
def models() -> tuple[PointPQAE, RefPointPQAE, Tensor]:
    return paired(lambda: PointPQAE(PointPQAEConfig()), RefPointPQAE, BATCH)


def test_views_equal_the_reference_crop() -> None:
    """Our crop + min-max blocks reproduce ``crop`` given its own random draws (rate, then one seed per cloud)."""
    xyz = torch.rand(4, 1024, 3)
    np.random.seed(3)
    ref_pts, ref_centers = crop(xyz, 0.6)
    np.random.seed(3)
    rate = np.random.uniform(0.6, 1.0)
    seeds = torch.tensor([np.random.choice(1024) for _ in range(4)])
    pts, centers = minmax_normalize(crop_nearest(xyz, seeds, int(1024 * rate)))
    torch.testing.assert_close(pts, ref_pts)
    torch.testing.assert_close(centers, ref_centers)


def _same_views(xyz: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], View, View]:
    """The reference's own random views, and the same views as our ``View``s (only the box offset matters)."""
    np.random.seed(0)
    delta, pts1, pts2 = point_random_crop(xyz.clone(), 0.6)
    zeros = torch.zeros(xyz.shape[0])
    return (delta, pts1, pts2), View(pts1, torch.zeros_like(delta), zeros), View(pts2, delta, zeros)


def _both_losses(ours: PointPQAE, ref: RefPointPQAE, xyz: Tensor) -> tuple[Tensor, Tensor]:
    ref_args, view1, view2 = _same_views(xyz)
    ours.eval(), ref.eval()  # no drop path: the two draw their random numbers in different orders
    ours.zero_grad(), ref.zero_grad()
    predicted, target = ours.reconstruct(view1, view2)
    ref_losses = ref.forward_views(*ref_args)
    ref_pair = torch.stack([ref_losses["pq_loss1"], ref_losses["pq_loss2"]])
    return ours.direction_losses(predicted, target.detach()), ref_pair


def test_losses_and_gradients_equal_the_reference(models: tuple[PointPQAE, RefPointPQAE, Tensor]) -> None:
    """Losses at the reference init; gradients after a trunc_normal(.02) re-init. The reference's Linear init
    normal(mean .02, std .01) makes PQ_linear's 32 predicted points of a patch nearly coincide, so Chamfer
    nearest-neighbour ties flip under float32 rounding and gradients differ by ~0.5% (losses do not)."""
    ours, ref, xyz = models
    ours_losses, ref_losses = _both_losses(ours, ref, xyz[:8])
    torch.testing.assert_close(ours_losses, ref_losses)
    fresh = PointPQAE(PointPQAEConfig())
    fresh.apply(init_vit_weights)
    ref.load_state_dict(fresh.state_dict())
    ours_losses, ref_losses = _both_losses(fresh, ref, xyz[:8])
    torch.testing.assert_close(ours_losses, ref_losses)
    ours_losses.sum().backward()
    ref_losses.sum().backward()
    ref_params = dict(ref.named_parameters())
    for name, param in fresh.named_parameters():
        theirs = ref_params[name].grad
        if param.grad is None:
            assert theirs is None, name
            continue
        assert ((param.grad - theirs).norm() / theirs.norm()).item() < 1e-3, name
    ref.load_state_dict(ours.state_dict())
    ref.zero_grad()



@pytest.mark.benchmark(group="pqae-pretrain-step")
def test_pretrain_step_interleaved(
    benchmark: BenchmarkFixture, models: tuple[PointPQAE, RefPointPQAE, Tensor], capsys: pytest.CaptureFixture[str]
) -> None:
    """One round = a reference PQAE step, our PQAE step and our Point-MAE step; best round per step."""
    ours, ref, xyz = models
    mae = PointMAE(PointMAEConfig())
    steps = {
        "pqae_ref": train_step(ref, lambda: sum(ref(xyz).values())),
        "pqae_ours": train_step(ours, lambda: ours.pretrain_step({"xyz": xyz})["loss"]),
        "mae_ours": train_step(mae, lambda: mae.pretrain_step({"xyz": xyz})["loss"]),
    }
    time_interleaved(benchmark, steps, ROUNDS, THREADS, lambda best: {
        "PQAE speed-up (reference / ours, best rounds)": best["pqae_ref"] / best["pqae_ours"],
        "our PQAE step / our Point-MAE step": best["pqae_ours"] / best["mae_ours"],
    }, capsys)

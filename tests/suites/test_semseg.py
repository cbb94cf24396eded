"""Protocol semseg: whole-room voting against a direct computation, the final summary, and one end-to-end
`bench run suite=s3dis method=scratch` on the tiny stand-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.cli import main
from bench.data.s3dis import block_starts
from bench.records import load_records
from suites.protocols.semseg import SemSeg, whole_room_logits


class PointwiseLinear(nn.Module):
    """Logits of each point from its own (block-centred) coordinates only, so voting can be checked exactly."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.weight = torch.randn(3, classes, generator=torch.Generator().manual_seed(0))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return points @ self.weight


def test_whole_room_voting_equals_a_direct_sum_over_blocks():
    rng = np.random.default_rng(1)
    xyz = (rng.random((700, 3)) * [2.7, 1.9, 2.5]).astype(np.float32)
    model = PointwiseLinear(4)
    total, votes = whole_room_logits(model, xyz, 64, 4, block_size=1.0, stride=0.5, batch_size=3, device="cpu",
                                     rng=np.random.default_rng(0))  # fmt: skip
    expected = np.zeros((700, 4))
    count = np.zeros(700, int)
    x, y = xyz[:, 0].astype(np.float64), xyz[:, 1].astype(np.float64)
    for sx in block_starts(float(x.min()), float(x.max()), 1.0, 0.5):
        for sy in block_starts(float(y.min()), float(y.max()), 1.0, 0.5):
            inside = (x >= sx) & (x <= sx + 1) & (y >= sy) & (y <= sy + 1)
            centred = xyz[inside].astype(np.float64) - [sx + 0.5, sy + 0.5, 0.0]
            expected[inside] += centred @ model.weight.double().numpy()
            count[inside] += 1
    assert np.array_equal(votes.numpy(), count) and count.min() >= 1
    assert np.allclose(total.numpy(), expected, atol=1e-4)


def test_summary_takes_every_metric_at_the_best_miou_epoch():
    history = [
        {"test_miou": 10.0, "test_macc": 30.0, "test_oa": 50.0},
        {"test_miou": 20.0, "test_macc": 25.0, "test_oa": 60.0},
        {"test_miou": 15.0, "test_macc": 40.0, "test_oa": 70.0},
    ]
    results = SemSeg.block_results(history, best_epoch=1)
    values = {r.name: {k: s.value for k, s in r.statistics.items()} for r in results}
    assert values == {"miou": {"last": 15.0, "best": 20.0, "best_epoch": 1.0}, "macc": {"last": 40.0, "best": 25.0},
                      "oa": {"last": 70.0, "best": 60.0}}  # fmt: skip
    assert [r.metric for r in results] == ["miou", "scene_macc", "scene_oa"]
    assert all(r.role("honest")[0] == "last" and r.role("paper")[0] == "best" for r in results)


@pytest.mark.slow
def test_bench_run_s3dis_scratch_end_to_end(tiny_data_root, tiny_run, tmp_path):
    out = tmp_path / "runs"
    args = ["--quiet", "run", "suite=s3dis", "method=scratch", *tiny_run, f"data.root={tiny_data_root}",
            f"output.dir={out}"]  # fmt: skip
    assert main(args) == 0
    (record,) = load_records(out / "records")
    assert record.data_kind == "synthetic" and record.metric == "miou" and len(record.epochs) == 2
    mious = [row["test_miou"] for row in record.epochs]
    assert record.flat()["last"] == mious[-1] and record.flat()["best"] == max(mious)
    for name in ("miou", "macc", "oa", "room_miou", "room_macc", "room_oa"):
        for stat in ("last", "best"):
            assert 0.0 <= record.flat()[f"{name}_{stat}"] <= 100.0
    assert torch.isfinite(torch.tensor(list(record.flat().values()))).all()
    # demo: fixed test blocks, one step per batch, our schedule; each recorded as a deviation from the reference
    assert record.details["test_blocks"] == "fixed" and len(record.details["deviations"]) == 3

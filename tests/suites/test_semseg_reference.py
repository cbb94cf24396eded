"""The segmentation protocols against the reference scripts: S3DIS test blocks redrawn every epoch (PQAE / MaDi
``semantic_segmentation/dataset.py`` ``S3DISDataset.__getitem__`` draws its centre and points with the unseeded
``np.random``, and ``main.py`` scores the test loader once per epoch, so each epoch scores new blocks), the
recorded deviations of the S3DIS and part-seg loops (two optimizer steps per batch, ``reference_seg`` schedule),
and the summaries of a history whose epoch 0 was not evaluated (``reference_runner``)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from bench.config import resolve
from bench.data.base import TransformedDataset
from bench.data.s3dis import RoomBlock
from bench.errors import ConfigError
from bench.registry import load_plugins
from suites.protocols.partseg import PartSeg
from suites.protocols.semseg import TEST_BLOCK_SEED, SemSeg, deviations, select_test_blocks
from suites.protocols.toolkit import curve_result

load_plugins()


class Rooms:
    """Two tiny rooms, loaded whole (``RoomBlock`` cuts the block), as ``bench.data.s3dis.S3DIS.load`` gives them."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.rooms = [(rng.random((400, 3)) * [3.0, 2.0, 2.5]).astype(np.float32) for _ in range(2)]

    def __len__(self) -> int:
        return 6

    def load(self, i: int) -> dict:
        xyz = self.rooms[i % 2]
        return {"xyz": xyz, "seg": (xyz[:, 2] > 1.2).astype(np.uint8), "id": f"Area_5_room_{i % 2}"}


def blocks(test_set: TransformedDataset) -> np.ndarray:
    return np.stack([test_set[i]["xyz"].numpy() for i in range(len(test_set))])


def room_blocks_set() -> TransformedDataset:
    return TransformedDataset(Rooms(), RoomBlock(32, min_points=8), seed=123)


def test_redrawn_blocks_are_new_every_epoch_and_reproducible():
    data = room_blocks_set()
    drawn = []
    for epoch in (0, 1, 2):
        select_test_blocks(data, "redrawn", job_seed=4, epoch=epoch)
        drawn.append(blocks(data))
    assert data.seed == TEST_BLOCK_SEED + 4
    assert not np.array_equal(drawn[0], drawn[1]) and not np.array_equal(drawn[1], drawn[2])
    select_test_blocks(data, "redrawn", job_seed=4, epoch=1)
    assert np.array_equal(blocks(data), drawn[1])  # the same (seed, epoch) draws the same blocks
    select_test_blocks(data, "redrawn", job_seed=5, epoch=1)
    assert not np.array_equal(blocks(data), drawn[1])  # each job seed its own draws
    # every redrawn block is a reference block: npoints points of a 1 m column, x / y centred on a room point
    assert (np.abs(np.stack(drawn)[..., :2]) <= 1.0).all() and np.stack(drawn).shape[-2:] == (32, 3)


def test_fixed_blocks_are_the_seed_0_draw_for_every_epoch_and_job():
    data = room_blocks_set()
    select_test_blocks(data, "fixed", job_seed=4, epoch=0)
    first = blocks(data)
    for job_seed, epoch in ((4, 7), (9, 3)):
        select_test_blocks(data, "fixed", job_seed=job_seed, epoch=epoch)
        assert np.array_equal(blocks(data), first)
    reference = TransformedDataset(Rooms(), RoomBlock(32, min_points=8), seed=0)
    assert np.array_equal(blocks(reference), first)  # what the protocol scored before test_blocks existed


def test_paper_profile_redraws_and_the_record_states_every_deviation():
    paper = resolve("s3dis", "point_pqae", profile="paper")
    assert paper.suite.test_blocks == "redrawn" and paper.trainer.schedule_convention == "reference_seg"
    (only,) = deviations(paper)  # one step per batch, as part seg; the schedule and the blocks are the reference's
    assert "twice per batch" in only and "semantic_segmentation/main.py" in only
    double = resolve("s3dis", "point_pqae", profile="paper", overrides=["trainer.reference_double_step=true"])
    assert deviations(double) == []
    demo = deviations(resolve("s3dis", "scratch", profile="demo"))
    assert len(demo) == 3 and "schedule_convention=pointbench" in demo[1] and "suite.test_blocks=fixed" in demo[2]


def test_part_seg_records_the_loop_it_ran_and_no_false_t_initial():
    paper = resolve("shapenetpart", "point_mae", profile="paper")
    (only,) = PartSeg.deviations(paper.trainer)
    assert "twice per batch" in only and "segmentation" in only
    assert PartSeg.deviations(OmegaConf.merge(paper.trainer, {"reference_double_step": True})) == []
    demo = PartSeg.deviations(resolve("shapenetpart", "point_mae", profile="demo").trainer)
    assert len(demo) == 2 and "reference_seg" in demo[1]
    assert not any("t_initial=100" in d for d in demo)  # all three references use t_initial=args.epoch


def test_bad_test_blocks_is_a_config_error():
    cfg = resolve("s3dis", "scratch", profile="demo")
    with pytest.raises(ConfigError, match="suite.test_blocks='once'"):
        SemSeg.check(OmegaConf.merge(cfg.suite, {"test_blocks": "once"}))


def test_summaries_skip_the_unevaluated_epoch_0_and_keep_epoch_numbers():
    history = [
        {"epoch": 0.0, "lr": 1e-6, "train_loss": 2.0},  # reference_runner: trained, never evaluated
        {"epoch": 1.0, "test_miou": 10.0, "test_macc": 30.0, "test_oa": 50.0},
        {"epoch": 2.0, "test_miou": 20.0, "test_macc": 25.0, "test_oa": 60.0},
        {"epoch": 3.0, "test_miou": 15.0, "test_macc": 40.0, "test_oa": 70.0},
    ]
    for best_epoch in (2, None):
        values = {r.name: {k: s.value for k, s in r.statistics.items()} for r in SemSeg.block_results(history,
                                                                                                    best_epoch)}
        assert values["miou"] == {"last": 15.0, "best": 20.0, "best_epoch": 2.0} and values["oa"]["best"] == 60.0
    head = curve_result("miou", "miou", history, None, {})
    assert {k: s.value for k, s in head.statistics.items()} == {"last": 15.0, "best": 20.0, "best_epoch": 2.0}

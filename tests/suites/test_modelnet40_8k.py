"""The ModelNet40 8k variant (issue 14 item 16): the reference configs' point count and grouping, its sampling set
against a literal transcription of the runner's lines, the published number beside it, and the stand-in's scaled
variant (the demo must keep working on clouds of fewer than 8192 points)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.api import JobContext
from bench.config import resolve, to_plain, variant_config
from bench.data.transforms import build_transform
from extensions import ops
from methods.scratch import Scratch
from reports.published import published_for
from suites.protocols.toolkit import job_dataset, prepared


def reference_point_all(npoints: int, cloud_points: int) -> int:
    """Point-MAE tools/runner_finetune.py L127-139 (Point-PQAE L124-136), as written: the FPS size per npoints,
    then clamped to the cloud's size."""
    if npoints == 1024:
        point_all = 1200
    elif npoints == 2048:
        point_all = 2400
    elif npoints == 4096:
        point_all = 4800
    elif npoints == 8192:
        point_all = 8192
    else:
        raise NotImplementedError()
    return min(point_all, cloud_points)


def reference_train_indices(xyz: np.ndarray, npoints: int, rng: np.random.RandomState) -> np.ndarray:
    """L141-143: furthest_point_sample(points, point_all) (pointnet2 starts at index 0), then
    ``fps_idx[:, np.random.choice(point_all, npoints, False)]``."""
    import torch

    point_all = reference_point_all(npoints, len(xyz))
    fps_idx = ops.furthest_point_sample(torch.from_numpy(xyz[None].astype(np.float32)), point_all)[0].numpy()
    return fps_idx[rng.choice(point_all, npoints, False)]


def test_paper_8k_is_the_reference_configs_protocol():
    for method, lr in (("point_mae", 5e-4), ("point_pqae", 1e-5), ("point_madi", 2e-5)):
        cfg = resolve("modelnet40", method, profile="paper")
        assert list(cfg.suite.variants) == ["1k", "8k"]
        suite = to_plain(variant_config(cfg, "8k"))["suite"]
        # Point-MAE cfgs/finetune_modelnet_8k.yaml L29-30, L35; Point-PQAE cfgs/full/finetune_modelnet_8k.yaml
        assert (suite["npoints"], suite["num_group"], suite["group_size"]) == (8192, 512, 32)
        assert suite["transforms"]["train"] == [{"random_subset": {"n": 8192}}]
        assert suite["transforms"]["test"] == [{"fps": {"n": 8192}}]  # validate: misc.fps(points, 8192)
        assert suite["transforms"]["vote"] == [{"fps": {"n": 8192}}]  # validate_vote: FPS to point_all = 8192 once
        assert suite["transforms"]["vote_each"] == [{"random_subset": {"n": 8192}}, "scale_translate"]
        assert suite["transforms"]["augment"] == ["scale_translate"] and cfg.trainer.lr == lr
        one_k = to_plain(variant_config(cfg, "1k"))["suite"]
        assert (one_k["npoints"], one_k["num_group"]) == (1024, 64)  # the 1k protocol is unchanged
        assert one_k["transforms"]["train"][0] == {"fps": {"n": 1200, "random_start": True}}


def test_the_8k_train_draw_is_a_permutation_of_every_point_as_the_reference():
    """When point_all equals npoints and the cloud's size (8k: 8192 of 8192), FPS-then-choice keeps every point once,
    in a uniformly random order; random_subset of all points (our 8k train chain) draws that set too. Checked at
    1024 of 1024 (the same lines: point_all 1200 clamped to the cloud's 1024), as an 8192-point FPS is slow here."""
    xyz = np.random.default_rng(3).normal(size=(1024, 3)).astype(np.float32)
    picked = reference_train_indices(xyz, 1024, np.random.RandomState(0))
    assert sorted(picked.tolist()) == list(range(1024))  # the reference keeps every point
    ours = build_transform([{"random_subset": {"n": 1024}}])({"xyz": xyz}, np.random.default_rng(0))["xyz"]
    assert sorted(map(tuple, ours.tolist())) == sorted(map(tuple, xyz.tolist()))  # so does ours
    assert reference_point_all(8192, 8192) == 8192 and reference_point_all(8192, 1024) == 1024
    assert reference_point_all(1024, 8192) == 1200  # the 1k variant's FPS size, as suites/modelnet40.yaml sets


def test_published_8k_numbers_sit_beside_the_variant():
    assert [(e.value, e.statistic) for e in published_for("point_pqae", "modelnet40", "8k")] == [(94.3, "unstated")]
    assert published_for("point_mae", "modelnet40", "8k")[0].value == 94.04


def test_demo_scales_8k_to_the_stand_in(tiny_data_root, tmp_path):
    """The demo's 8k: every point of the stand-in's clouds (1024; the tiny one's 512) in 64 patches of 16."""
    cfg = variant_config(resolve("modelnet40", "scratch", profile="demo"), "8k")
    assert (cfg.suite.npoints, cfg.suite.num_group, cfg.suite.group_size) == (1024, 64, 16)
    ctx = JobContext(cfg=cfg, method_cls=Scratch, variant="8k", seed=0, data_root=tiny_data_root / "synthetic",
                     workdir=tmp_path)
    train = job_dataset(ctx, "train", list(to_plain(cfg)["suite"]["transforms"]["train"]))
    test = prepared(ctx, "test", list(to_plain(cfg)["suite"]["transforms"]["test"]))
    sizes = {len(train[i]["xyz"]) for i in range(len(train))} | {len(test[i]["xyz"]) for i in range(len(test))}
    assert sizes == {512}  # the tiny stand-in's clouds, clamped, never padded
    assert min(sizes) >= cfg.suite.num_group


@pytest.mark.slow
def test_8k_demo_job_runs_end_to_end(tiny_data_root, tiny_run, tmp_path):
    from bench.cli import main
    from bench.records import load_records

    out = tmp_path / "runs"
    args = ["--quiet", "run", "suite=modelnet40", "method=scratch", *tiny_run, "trainer.epochs=1",
            "suite.variants=[8k]", "tracking.enabled=false", f"data.root={tiny_data_root}", f"output.dir={out}"]
    assert main(args) == 0
    (record,) = load_records(out / "records")
    assert record.variant == "8k" and record.config["suite"]["num_group"] == 64

"""The conditional protocol: conditions from source shapes, scores of known fields, and `bench run suite=conditional`
end to end with g3pt on the tiny stand-in (every task, directions, units, conventions in the record)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.api import ShapeFields
from bench.cli import main
from bench.config import resolve
from bench.data.base import build_dataset
from bench.errors import ConfigError
from bench.records import load_records
from suites.protocols.conditional import (
    Conditional,
    category_means,
    conditions_of,
    score_batch,
    shape_condition,
)

TINY_G3PT = ["profile=demo", "data.standin_size=tiny", "executor.workers=1", "tracking.enabled=false",
             "pretrain.npoints=256", "method.num_latents=16", "method.cvq.scales=[1,4,16]", "method.width=32",
             "method.car.width=32", "method.car.depth=1", "method.car.heads=2", "method.encoder_depth=1",
             "method.decoder_depth=1", "pretrain.stages.0.trainer.epochs=1", "pretrain.stages.1.trainer.epochs=1",
             "pretrain.stages.2.trainer.epochs=1"]
TINY = [*TINY_G3PT, "suite.resolution=17", "suite.surface_samples=512"]


def sphere_fields(n: int, radius: float) -> ShapeFields:
    """Exact occupancy logits of a sphere (positive inside)."""
    return ShapeFields("occupancy", lambda q: (radius - q.norm(dim=-1)) * 50, n)


def sphere_sample(radius: float, label: int = 0, points: int = 2000) -> dict:
    rng = np.random.default_rng(0)
    surface = rng.normal(size=(points, 3))
    surface = (surface / np.linalg.norm(surface, axis=1, keepdims=True) * radius).astype(np.float32)
    query = rng.uniform(-1, 1, size=(3000, 3)).astype(np.float32)
    return {"xyz": surface, "label": label, "query": query,
            "occupancy": (np.linalg.norm(query, axis=1) < radius).astype(np.float32)}


def suite(**overrides):
    cfg = resolve("conditional", "g3pt", profile="demo", overrides=[f"suite.{k}={v}" for k, v in overrides.items()])
    return cfg.suite


def test_a_perfect_field_scores_full_iou_and_near_zero_chamfer() -> None:
    s = suite(resolution=49, surface_samples=30000, bound=1.0)  # dense enough that tau = 0.02 sees neighbours
    rows, empty = score_batch(sphere_fields(1, 0.6), [sphere_sample(0.6, points=30000)], s, seed=0)
    assert empty == 0
    assert rows[0]["iou"] > 97 and rows[0]["cd"] < 0.05 and rows[0]["fscore_02"] > 90


def test_a_wrong_radius_lowers_iou_as_computed_by_hand() -> None:
    s = suite(resolution=33, surface_samples=2000)
    rows, _ = score_batch(sphere_fields(1, 0.5), [sphere_sample(0.6)], s, seed=0)
    assert rows[0]["iou"] == pytest.approx(100 * (0.5 / 0.6) ** 3, abs=4)  # nested spheres: volume ratio
    assert rows[0]["cd"] == pytest.approx(0.2, abs=0.03)  # 0.1 each way


def test_an_empty_level_set_is_counted_not_fatal() -> None:
    s = suite(resolution=9, surface_samples=64)
    rows, empty = score_batch(ShapeFields("occupancy", lambda q: -torch.ones(q.shape[:2]), 1), [sphere_sample(0.5)],
                              s, seed=0)
    assert empty == 1 and np.isfinite(rows[0]["cd"]) and rows[0]["iou"] == 0.0


def test_distance_fields_have_no_iou() -> None:
    s = suite(resolution=17, surface_samples=256)
    fields = ShapeFields("udf", lambda q: (q.norm(dim=-1) - 0.5).abs(), 1, level=0.05)
    rows, _ = score_batch(fields, [sphere_sample(0.5)], s, seed=0)
    assert "iou" not in rows[0] and rows[0]["cd"] < 0.2
    means, _ = category_means(rows, [0], ["iou", "cd"])
    assert np.isnan(means["iou"]) and means["cd"] == rows[0]["cd"]


def test_category_means_weight_categories_equally() -> None:
    rows = [{"iou": 10.0}, {"iou": 20.0}, {"iou": 90.0}]
    means, per = category_means(rows, [0, 0, 1], ["iou"])
    assert means["iou"] == pytest.approx((15 + 90) / 2) and per["0"]["iou"] == 15


def test_conditions_come_from_the_source_shapes(tiny_data_root) -> None:
    data = build_dataset("shapenet_occ", tiny_data_root / "synthetic", "test", "all")
    samples = [data.load(0), data.load(1)]
    s = suite(views=2, render=32)
    cls = shape_condition("class", samples, s, data.class_names)
    assert cls.labels.tolist() == [int(x["label"]) for x in samples]
    text = shape_condition("text", samples, s, data.class_names)
    assert text.texts[0] == "a 3D model of a {}.".format(data.class_names[int(samples[0]["label"])])
    image = shape_condition("image", samples, s, data.class_names)
    assert image.images.shape[:3] == (2, 2, 1) and image.images.max() > 0


def test_requirements_follow_the_variants_conditions() -> None:
    s = suite()
    assert conditions_of(s) == {"class", "image", "text"}
    assert Conditional.requirements(s).conditions == frozenset({"class", "image", "text"})


@pytest.mark.parametrize(("key", "value", "match"), [
    ("condition", "sketch", "condition"), ("metric", "acc", "metric"), ("eval_split", "dev", "eval_split"),
    ("caption_template", "'a chair'", "caption_template"), ("mc_backend", "mcubes", "mc_backend"),
    ("resolution", 1, "resolution"),
])
def test_bad_settings_are_config_errors(key: str, value, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Conditional.check(suite(**{key: value}))


def test_point_mge_is_refused_with_the_reason(tmp_path, capsys) -> None:
    code = main(["run", "suite=conditional", "method=point_mge", "profile=demo", f"output.dir={tmp_path}"])
    assert code != 0
    assert "shape_fields" in capsys.readouterr().err
    assert not (tmp_path / "records").exists()


@pytest.mark.slow
def test_g3pt_runs_every_task_to_a_record(tmp_path, tiny_data_root) -> None:
    code = main(["--quiet", "run", "suite=conditional", "method=g3pt", f"data.root={tiny_data_root}",
                 f"output.dir={tmp_path / 'runs'}", *TINY])
    assert code == 0
    records = sorted(load_records(tmp_path / "runs" / "records"), key=lambda r: r.variant)
    assert [r.variant for r in records] == ["class", "image", "text"]
    for record in records:
        assert [r.name for r in record.results] == ["iou", "iou_near", "cd", "fscore_01", "fscore_02"]
        units = {r.name: (r.direction, r.unit) for r in record.results}
        assert units["iou"] == ("max", "%") and units["cd"][0] == "min" and units["fscore_02"] == ("max", "%")
        assert all(np.isfinite(r.value("honest")) for r in record.results)
        assert record.details["task"] == record.variant and "Euclidean" in record.details["conventions"]["cd"]
        assert record.details["sampler"]["image_encoder"]["is_test_teacher"]
    text = next(r for r in records if r.variant == "text")
    assert "no captioning model" in text.details["captions_note"]


def test_generation_class_suite_takes_only_class_conditional_methods(tiny_data_root) -> None:
    from bench.config import parse_cli
    from bench.plan import select_methods

    request = parse_cli(["suite=generation_class", f"data.root={tiny_data_root}", "data.standin_size=tiny"])
    assert select_methods("generation_class", request) == ["g3pt", "point_mge"]


@pytest.mark.slow
def test_g3pt_samples_are_scored_by_the_generation_suite_with_their_class(tmp_path, tiny_data_root) -> None:
    code = main(["--quiet", "run", "suite=generation_class", "method=g3pt", f"data.root={tiny_data_root}",
                 f"output.dir={tmp_path / 'runs'}", *TINY_G3PT, "suite.variants=[chair]", "suite.npoints=64",
                 "suite.finetune_epochs=1", "suite.sampling_seeds=[0]", "method.mesh.resolution=9"])
    assert code == 0
    (record,) = load_records(tmp_path / "runs" / "records")
    assert record.details["condition"] == "class" and record.details["sampler"]["decoder"].startswith("next-scale")
    assert np.isfinite(record.results[0].value("honest"))

"""Transforms: hand-checked conventions, one generic contract test per registered transform, spec errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import bench.data.transforms  # noqa: F401  (registers the transforms)
from bench.data.transforms import build_transform
from bench.errors import ConfigError
from bench.registry import TRANSFORMS

#: a valid spec for every registered transform: a transform added without a case here fails the test below
SPECS = {
    "fps": {"fps": {"n": 16, "random_start": True}},
    "normalize_unit_sphere": "normalize_unit_sphere",
    "random_queries": {"random_queries": {"n": 8}},
    "random_subset": {"random_subset": {"n": 16}},
    "resample": {"resample": {"n": 48}},
    "rotate_y": "rotate_y",
    "s3dis_block": {"s3dis_block": {"n": 32, "block_size": 1.0, "min_points": 4}},
    "scale_isotropic": {"scale_isotropic": {"low": 0.5, "high": 2.0}},
    "scale_translate": "scale_translate",
    "shift": {"shift": {"r": 0.3}},
    "shuffle_points": "shuffle_points",
}


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_every_transform_keeps_the_sample_contract(name: str, cloud: dict) -> None:
    assert name in SPECS, f"add a spec for the transform {name} to SPECS"
    transform = build_transform([SPECS[name]])
    before = {k: v.copy() for k, v in cloud.items()}
    out = transform(cloud, rng(5))
    n = out["xyz"].shape[0]
    assert out["xyz"].dtype == np.float32 and out["xyz"].shape == (n, 3) and 1 <= n <= 64
    assert out["normal"].shape == (n, 3) and out["seg"].shape == (n,)
    assert out["label"] == 7
    np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=1), 1, atol=1e-5)
    for key, value in before.items():  # the input is not modified
        np.testing.assert_array_equal(cloud[key], value)
    again = transform(cloud, rng(5))
    for key in out:
        np.testing.assert_array_equal(out[key], again[key])
    # every other transform is random: another generator, another result (random_queries draws only occupancy
    # queries, which this cloud has none of: tests/bench/data/test_shapenet_occ.py checks it)
    if name not in ("normalize_unit_sphere", "random_queries"):
        other = transform(cloud, rng(6))
        assert any(not np.array_equal(out[k], other[k]) for k in ("xyz", "seg"))


def test_per_point_keys_stay_aligned(cloud: dict) -> None:
    for spec in ("shuffle_points", {"random_subset": {"n": 20}}, {"fps": {"n": 20}}):
        out = build_transform([spec])(cloud, rng(1))
        np.testing.assert_array_equal(out["xyz"], cloud["xyz"][out["seg"]])
        np.testing.assert_array_equal(out["normal"], cloud["normal"][out["seg"]])


def test_rotate_y_convention(cloud: dict) -> None:
    angle = rng(3).uniform(0, 2 * math.pi)  # the one draw rotate_y makes
    c, s = math.cos(angle), math.sin(angle)
    sample = {"xyz": np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32), "label": np.asarray(0)}
    out = build_transform(["rotate_y"])(sample, rng(3))["xyz"]
    # PointcloudRotate: xyz @ [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    np.testing.assert_allclose(out, [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-6)
    full = build_transform(["rotate_y"])(cloud, rng(4))
    np.testing.assert_array_equal(full["xyz"][:, 1], cloud["xyz"][:, 1])
    np.testing.assert_allclose(np.linalg.norm(full["xyz"], axis=1), np.linalg.norm(cloud["xyz"], axis=1), rtol=1e-5)
    assert not np.allclose(full["xyz"], cloud["xyz"])


def test_scale_translate_bounds_and_defaults() -> None:
    base = np.array([[0, 0, 0], [1, 1, 1]], np.float32)
    scales, shifts = [], []
    for seed in range(200):
        out = build_transform(["scale_translate"])({"xyz": base}, rng(seed))["xyz"]
        shifts.append(out[0])
        scales.append(out[1] - out[0])
    scales, shifts = np.array(scales), np.array(shifts)
    assert scales.min() >= 2 / 3 - 1e-6 and scales.max() <= 1.5 + 1e-6
    assert np.abs(shifts).max() <= 0.2 + 1e-6
    assert scales.max() - scales.min() > 0.6 and np.abs(shifts).max() > 0.15  # the whole range is used
    assert np.std(scales[:, 0] - scales[:, 1]) > 0.1  # per-axis, not isotropic
    narrow = build_transform([{"scale_translate": {"scale_low": 1.0, "scale_high": 1.0, "translate_range": 0}}])
    np.testing.assert_array_equal(narrow({"xyz": base}, rng(0))["xyz"], base)


def test_fps_start_and_clamp(cloud: dict) -> None:
    out = build_transform([{"fps": {"n": 8}}])(cloud, rng(0))
    np.testing.assert_array_equal(out["xyz"][0], cloud["xyz"][0])  # pointnet2_ops starts at index 0
    far = np.argmax(((cloud["xyz"] - cloud["xyz"][0]) ** 2).sum(1))
    np.testing.assert_array_equal(out["xyz"][1], cloud["xyz"][far])
    random_start = build_transform([{"fps": {"n": 4, "random_start": True}}])
    starts = {int(random_start(cloud, rng(s))["seg"][0]) for s in range(8)}
    assert len(starts) > 1
    assert build_transform([{"fps": {"n": 1000}}])(cloud, rng(0))["xyz"].shape == (64, 3)


def test_random_subset_is_without_replacement(cloud: dict) -> None:
    out = build_transform([{"random_subset": {"n": 40}}])(cloud, rng(0))
    assert len(np.unique(out["seg"])) == 40
    assert build_transform([{"random_subset": {"n": 100}}])(cloud, rng(0))["xyz"].shape == (64, 3)


def test_normalize_unit_sphere(cloud: dict) -> None:
    sample = {**cloud, "xyz": cloud["xyz"] * 7 + 3}
    xyz = build_transform(["normalize_unit_sphere"])(sample, rng(0))["xyz"]
    np.testing.assert_allclose(xyz.mean(0), 0, atol=1e-6)
    assert np.linalg.norm(xyz, axis=1).max() == pytest.approx(1, abs=1e-6)


def test_scale_isotropic_and_shift_bounds(cloud: dict) -> None:
    for seed in range(50):
        scaled = build_transform(["scale_isotropic"])(cloud, rng(seed))["xyz"]
        ratio = scaled / cloud["xyz"]
        assert np.ptp(ratio) < 1e-5 and 0.8 - 1e-6 <= ratio[0, 0] <= 1.25 + 1e-6
        moved = build_transform(["shift"])(cloud, rng(seed))["xyz"] - cloud["xyz"]
        assert np.ptp(moved, axis=0).max() < 1e-5 and np.abs(moved).max() <= 0.1 + 1e-6


def test_compose_order_and_identity(cloud: dict) -> None:
    identity = build_transform([])
    np.testing.assert_array_equal(identity(cloud, rng(0))["xyz"], cloud["xyz"])
    out = build_transform(["normalize_unit_sphere", {"scale_isotropic": {"low": 2.0, "high": 2.0}}])(cloud, rng(0))
    assert np.linalg.norm(out["xyz"], axis=1).max() == pytest.approx(2, abs=1e-5)


@pytest.mark.parametrize(
    ("specs", "pattern"),
    [
        (["rotate_z"], 'unknown transform "rotate_z".*Did you mean "rotate_y"'),
        ([{"fps": {"n": 8, "random_star": True}}], 'unknown argument "random_star".*Did you mean "random_start"'),
        ([{"fps": {"n": 0}}], "positive integer"),
        ([{"scale_isotropic": {"low": 2, "high": 1}}], "low <= high"),
        ([{"fps": {"n": 8}, "rotate_y": None}], "one-key mapping"),
        ("rotate_y", "list of specs"),
        ([{"shift": 0.1}], "must be a mapping"),
    ],
)
def test_bad_specs_raise_config_error(specs: object, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_transform(specs)


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_every_transform_keeps_the_sample_id(name: str, cloud: dict) -> None:
    out = build_transform([SPECS[name]])({**cloud, "id": "training_objectdataset/17"}, rng(5))
    assert out["id"] == "training_objectdataset/17" and type(out["id"]) is str

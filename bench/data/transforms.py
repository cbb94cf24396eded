"""Point-cloud transforms: ``(sample, rng) -> sample`` callables, registered in ``TRANSFORMS`` by name.

Conventions:
- Coordinates are right-handed with **Y up** (ShapeNet / ModelNet / ScanObjectNN as the reference repos use them).
- Per-point keys (:data:`PER_POINT_KEYS`: ``xyz``, ``normal``, ``seg``) are subset / permuted together.
- Every random draw comes from the ``rng`` argument, never from global state, so augmentations are reproducible.
- Transforms do not modify their input arrays; they return a new dict.

A suite names them as a list of specs: ``"rotate_y"`` or ``{"fps": {"n": 1200, "random_start": true}}``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bench.data.base import Sample, Transform, pc_normalize
from bench.errors import ConfigError
from bench.registry import TRANSFORMS, did_you_mean
from extensions import ops

PER_POINT_KEYS = ("xyz", "normal", "seg")


def take_points(sample: Sample, idx: np.ndarray) -> Sample:
    """Index every per-point key of ``sample`` with ``idx`` (a subset or a permutation)."""
    return {k: (v[idx] if k in PER_POINT_KEYS else v) for k, v in sample.items()}


def _num_points(sample: Sample) -> int:
    return int(sample["xyz"].shape[0])


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"transform {name}: n must be a positive integer, got {value!r}.")
    return value


def _range(name: str, low: float, high: float) -> tuple[float, float]:
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))) or low > high:
        raise ConfigError(f"transform {name}: expected numbers low <= high, got {low!r}, {high!r}.")
    return float(low), float(high)


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"transform {name}: expected a non-negative number, got {value!r}.")
    return float(value)


@TRANSFORMS.register("scale_translate")
class ScaleTranslate:
    """``PointcloudScaleAndTranslate``: xyz * s + t, s ~ U[scale_low, scale_high]^3 (per axis), t ~ U[-r, r]^3.

    Drawn once per shape (defaults 2/3, 3/2, 0.2 as in every reference repo). Normals, when present, follow the
    inverse-transpose of the scaling (n / s, renormalised), which the reference (xyz only) never needed.
    """

    def __init__(self, scale_low: float = 2.0 / 3.0, scale_high: float = 3.0 / 2.0, translate_range: float = 0.2):
        self.low, self.high = _range("scale_translate", scale_low, scale_high)
        self.translate = _non_negative("scale_translate", translate_range)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scale = rng.uniform(self.low, self.high, size=3).astype(np.float32)
        shift = rng.uniform(-self.translate, self.translate, size=3).astype(np.float32)
        out = dict(sample)
        out["xyz"] = sample["xyz"] * scale + shift
        if "normal" in sample:
            n = sample["normal"] / scale
            out["normal"] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return out


def rotation_y(angle: float) -> np.ndarray:
    """The PointcloudRotate matrix [[c, 0, s], [0, 1, 0], [-s, 0, c]], applied to row vectors as ``xyz @ R``."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=np.float32)


@TRANSFORMS.register("rotate_y")
class RotateY:
    """``PointcloudRotate``: rotate about the Y (up) axis by an angle ~ U[0, 2π), one per shape: ``xyz @ R``.

    R = [[cos a, 0, sin a], [0, 1, 0], [-sin a, 0, cos a]]; normals are rotated the same way.
    """

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        rot = rotation_y(rng.uniform(0.0, 2.0 * math.pi))
        out = dict(sample)
        for key in ("xyz", "normal"):
            if key in sample:
                out[key] = sample[key].astype(np.float32, copy=False) @ rot
        return out


@TRANSFORMS.register("shuffle_points")
class ShufflePoints:
    """Random permutation of the point order (the reference loaders' train-time shuffle)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return take_points(sample, rng.permutation(_num_points(sample)))


@TRANSFORMS.register("fps")
class FurthestPointSample:
    """Furthest point sampling to ``n`` points (clamped to N) through ``extensions.ops.furthest_point_sample``.

    Starts at index 0 (pointnet2_ops) unless ``random_start``, which draws the start index from ``rng``.
    The output keeps the FPS order.
    """

    def __init__(self, n: int, random_start: bool = False):
        self.n = _positive_int("fps", n)
        if not isinstance(random_start, bool):
            raise ConfigError(f"transform fps: random_start must be true or false, got {random_start!r}.")
        self.random_start = random_start

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        total = _num_points(sample)
        start = int(rng.integers(total)) if self.random_start else 0
        xyz = torch.from_numpy(np.ascontiguousarray(sample["xyz"], dtype=np.float32))[None]
        idx = ops.furthest_point_sample(xyz, min(self.n, total), start=start)[0].numpy()
        return take_points(sample, idx)


@TRANSFORMS.register("random_subset")
class RandomSubset:
    """``n`` points drawn uniformly without replacement (clamped to N), in random order."""

    def __init__(self, n: int):
        self.n = _positive_int("random_subset", n)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        total = _num_points(sample)
        return take_points(sample, rng.choice(total, size=min(self.n, total), replace=False))


@TRANSFORMS.register("resample")
class Resample:
    """``n`` points drawn uniformly WITH replacement (ShapeNetPart ``np.random.choice(N, n, replace=True)``)."""

    def __init__(self, n: int):
        self.n = _positive_int("resample", n)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return take_points(sample, rng.choice(_num_points(sample), size=self.n, replace=True))


#: occupancy query sets (points key, occupancy key) that :class:`RandomQueries` subsets, each with its own draw
QUERY_KEYS = (("query", "occupancy"), ("near_query", "near_occupancy"))


@TRANSFORMS.register("random_queries")
class RandomQueries:
    """``n`` occupancy queries per set (:data:`QUERY_KEYS`, :mod:`bench.data.shapenet_occ`): the points and their
    occupancy indexed together, the volume and the near set drawn separately with the same ``n``. Without
    replacement when the set holds at least ``n`` points, else with replacement, so every sample holds exactly
    ``n`` and batches stack. The surface keys (``xyz``, ``normal``) are untouched."""

    def __init__(self, n: int = 2048):
        self.n = _positive_int("random_queries", n)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        out = dict(sample)
        for points_key, occupancy_key in QUERY_KEYS:
            if points_key in sample:
                total = int(sample[points_key].shape[0])
                idx = rng.choice(total, size=self.n, replace=total < self.n)
                out[points_key], out[occupancy_key] = sample[points_key][idx], sample[occupancy_key][idx]
        return out


@TRANSFORMS.register("normalize_unit_sphere")
class NormalizeUnitSphere:
    """``pc_norm``: subtract the centroid, divide by the largest point norm (deterministic; normals unchanged)."""

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return {**sample, "xyz": pc_normalize(sample["xyz"])}


@TRANSFORMS.register("scale_isotropic")
class ScaleIsotropic:
    """xyz * s with one scale s ~ U[low, high] per shape (segmentation recipes: 0.8-1.25); normals unchanged."""

    def __init__(self, low: float = 0.8, high: float = 1.25):
        self.low, self.high = _range("scale_isotropic", low, high)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return {**sample, "xyz": sample["xyz"] * np.float32(rng.uniform(self.low, self.high))}


@TRANSFORMS.register("shift")
class Shift:
    """xyz + t with t ~ U[-r, r]^3, one per shape (segmentation recipes: r = 0.1)."""

    def __init__(self, r: float = 0.1):
        self.r = _non_negative("shift", r)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return {**sample, "xyz": sample["xyz"] + rng.uniform(-self.r, self.r, size=3).astype(np.float32)}


class Compose:
    """Apply transforms in order, all drawing from the same per-sample generator."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({[type(t).__name__ for t in self.transforms]})"


def build_transform(specs: Sequence[str | Mapping[str, Any]] | None) -> Transform:
    """Build a :class:`Compose` from specs: ``"name"`` or ``{"name": {kwarg: value}}`` (None/[] = identity)."""
    if specs is None:
        return Compose([])
    if isinstance(specs, (str, Mapping)):
        raise ConfigError(f"transforms must be a list of specs, got {specs!r}.")
    return Compose([_build_one(spec) for spec in specs])


def _build_one(spec: str | Mapping[str, Any]) -> Transform:
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping) and len(spec) == 1:
        name, kwargs = next(iter(spec.items()))
        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, Mapping):
            raise ConfigError(f"transform {name}: arguments must be a mapping, got {kwargs!r}.")
    else:
        raise ConfigError(f"a transform spec is a name or a one-key mapping {{name: {{...}}}}, got {spec!r}.")
    factory = TRANSFORMS.get(str(name))
    params = [p for p in inspect.signature(factory).parameters if p != "self"]
    for key in kwargs:
        if key not in params:
            valid = ", ".join(params) or "(none)"
            raise ConfigError(
                f'transform {name}: unknown argument "{key}".{did_you_mean(str(key), params)} Valid: {valid}.'
            )
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"transform {name}: {exc}.") from None

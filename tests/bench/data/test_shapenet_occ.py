"""ShapeNet occupancy data (ONet layout): the loader on hand-written files (packbits, float16, the x2 frame, errors
naming the file), the exact solids of the primitives, the stand-in writer (layout, speed, determinism, exact
occupancy, boundary surface points, depth renders), the random_queries transform and batch collation."""

from __future__ import annotations

import hashlib
import io
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.data.base import TransformedDataset, build_dataset
from bench.data.check import check_data
from bench.data.render import depth_images
from bench.data.shapenet55 import SYNSETS
from bench.data.shapenet_occ import FRAME_SCALE, ShapeNetOcc, list_path, synset_dir
from bench.data.synthetic import write_standin
from bench.data.synthetic.families import FAMILIES
from bench.data.synthetic.occupancy import (
    OCC_CATEGORIES,
    OCC_SIZES,
    OccupancyShape,
    sample_union_surface,
    shape_files,
    union_contains,
)
from bench.data.synthetic.shapes import Ellipsoid, Frustum, Part, Torus, box, box_mesh, cyl, ellipsoid, torus
from bench.data.transforms import build_transform
from bench.errors import DataError

AIRPLANE = "02691156"
TINY = OCC_SIZES["tiny"]


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny occupancy stand-in alone (read-only by convention)."""
    folder = tmp_path_factory.mktemp("occ") / "synthetic"
    start = time.perf_counter()
    write_standin(folder, ["shapenet_occ"], size="tiny")
    assert time.perf_counter() - start < 10
    return folder


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "STANDIN.json"}  # fmt: skip


def write_model(root: Path, model: str, points: np.ndarray, inside: np.ndarray, extra: bool = False) -> Path:
    """One model in the real ONet layout (float16 points, packbits occupancies), listed in train.lst."""
    folder = synset_dir(root, AIRPLANE) / model
    folder.mkdir(parents=True)
    meta = {"loc": np.zeros(3, np.float32), "scale": np.float32(1)}
    np.savez(folder / "points.npz", points=points.astype(np.float16), occupancies=np.packbits(inside), **meta)
    surface = np.array([[0.5, 0.0, 0.0], [-0.25, 0.125, 0.0]], np.float16)
    np.savez(folder / "pointcloud.npz", points=surface, normals=np.eye(3, dtype=np.float16)[:2], **meta)
    if extra:
        np.savez(folder / "points_near.npz", points=points[:5].astype(np.float16), occupancies=np.packbits(inside[:5]),
                 **meta)  # fmt: skip
        np.savez(folder / "depth.npz", depth=np.full((2, 4, 4), 0.5, np.float16))
    lst = list_path(root, AIRPLANE, "train")
    lst.write_text((lst.read_text() if lst.exists() else "") + model + "\n")
    return folder


def test_loader_reads_the_onet_layout_in_the_x2_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.55, 0.55, (13, 3))  # 13: packbits pads the last byte
    inside = rng.random(13) < 0.5
    write_model(tmp_path, "m1", points, inside)
    write_model(tmp_path, "m2", points, ~inside, extra=True)
    ds = build_dataset("shapenet_occ", tmp_path, "train")
    assert ds.variant == "all" and len(ds) == 2 and FRAME_SCALE == 2.0
    first, second = ds.load(0), ds.load(1)
    assert first["id"] == f"{AIRPLANE}/m1" and ds.sample_id(1) == f"{AIRPLANE}/m2"
    assert int(first["label"]) == SYNSETS.index(AIRPLANE) and first["label"].dtype == np.int64
    np.testing.assert_array_equal(first["query"], 2 * points.astype(np.float16).astype(np.float32))
    assert first["query"].dtype == first["occupancy"].dtype == np.float32
    np.testing.assert_array_equal(first["occupancy"], inside.astype(np.float32))
    np.testing.assert_array_equal(second["occupancy"], (~inside).astype(np.float32))
    np.testing.assert_array_equal(first["xyz"], [[1.0, 0, 0], [-0.5, 0.25, 0]])
    np.testing.assert_array_equal(first["normal"], np.eye(3)[:2])
    assert not {"near_query", "near_occupancy", "view"} & set(first)
    assert second["near_query"].shape == (5, 3) and second["view"].shape == (2, 4, 4)
    np.testing.assert_array_equal(second["near_occupancy"], (~inside[:5]).astype(np.float32))
    assert second["view"].dtype == np.float32
    assert len(build_dataset("shapenet_occ", tmp_path, "train", "airplane")) == 2


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(str(list_path(tmp_path, AIRPLANE, "val")))):
        build_dataset("shapenet_occ", tmp_path, "val", "airplane")
    with pytest.raises(DataError, match="no synset folders"):
        build_dataset("shapenet_occ", tmp_path, "val")
    points, inside = np.zeros((9, 3)), np.ones(9, bool)
    folder = write_model(tmp_path, "m1", points, inside)
    ds = build_dataset("shapenet_occ", tmp_path, "train")
    np.savez(folder / "points.npz", points=points.astype(np.float16), occupancies=np.packbits(inside[:8]))
    with pytest.raises(DataError, match=re.escape(str(folder / "points.npz")) + ".*1 packed bytes, expected 2"):
        ds.load(0)
    np.savez(folder / "points.npz", points=points.astype(np.float16))
    with pytest.raises(DataError, match=re.escape(str(folder / "points.npz")) + ".*missing key.*occupancies"):
        ds.load(0)
    (folder / "points.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=re.escape(str(folder / "points.npz")) + ": not a readable"):
        ds.load(0)
    (folder / "pointcloud.npz").unlink()
    with pytest.raises(DataError, match=re.escape(str(folder / "pointcloud.npz"))):
        ds.load(0)
    (synset_dir(tmp_path, "12345678")).mkdir()
    with pytest.raises(DataError, match="not one of the 55"):
        build_dataset("shapenet_occ", tmp_path, "train")


def test_primitive_solids_are_exact() -> None:
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1.2, 1.2, (4000, 3))
    x, y, z = pts.T
    radial = np.hypot(x, z)
    box_inside = (np.abs(x) <= 0.5) & (np.abs(y) <= 0.25) & (np.abs(z) <= 0.1)
    np.testing.assert_array_equal(box_mesh(1.0, 0.5, 0.2).contains(pts), box_inside)
    np.testing.assert_array_equal(box_mesh(1.0, 0.5, 0.2, open_top=True).contains(pts), box_inside)
    frustum = (np.abs(y) <= 0.4) & (radial <= 0.6 + (0.2 - 0.6) * (y + 0.4) / 0.8)
    np.testing.assert_array_equal(Frustum(0.6, 0.2, 0.8, top=False).contains(pts), frustum)
    sphere = (x / 0.9) ** 2 + (y / 0.5) ** 2 + (z / 0.3) ** 2 <= 1
    np.testing.assert_array_equal(Ellipsoid(0.9, 0.5, 0.3).contains(pts), sphere)
    np.testing.assert_array_equal(Ellipsoid(0.9, 0.5, 0.3, half=-1).contains(pts), sphere & (y <= 0))
    tube = (radial - 0.7) ** 2 + y**2 <= 0.2**2
    np.testing.assert_array_equal(Torus(0.7, 0.2).contains(pts), tube)
    half = Torus(0.7, 0.2, arc=math.pi).contains(pts)  # ring angle atan2(z, x) in [0, pi]: z >= 0
    np.testing.assert_array_equal(half, tube & (z >= 0))
    # placed parts: a z-axis cylinder at an offset, and the union of two parts
    part = cyl(0.3, 0.2, (0.5, 0.0, 0.0), axis="z")
    np.testing.assert_array_equal(part.contains(pts), (np.hypot(x - 0.5, y) <= 0.3) & (np.abs(z) <= 0.1))
    parts = [box(1.0, 0.5, 0.2, (0, 0, 0)), ellipsoid(0.9, 0.5, 0.3, (0.2, 0.1, 0))]
    expected = box_inside | (((x - 0.2) / 0.9) ** 2 + ((y - 0.1) / 0.5) ** 2 + (z / 0.3) ** 2 <= 1)
    np.testing.assert_array_equal(union_contains(parts, pts), expected)
    lo, hi = torus(0.5, 0.1, (0, 1, 0), 2 * math.pi, axis="z").bounds()
    np.testing.assert_allclose([lo, hi], [[-0.6, 0.4, -0.1], [0.6, 1.6, 0.1]])


def test_single_box_occupancy_matches_the_analytic_box() -> None:
    shape = OccupancyShape.of([Part(box_mesh(2.0, 1.0, 0.5), (3.0, 1.0, 0.0))])
    np.testing.assert_allclose(shape.loc, [3, 1, 0])
    assert shape.scale == 2.0
    files = shape_files(shape, TINY, np.random.default_rng(0))
    with np.load(io.BytesIO(files["points.npz"])) as data:
        stored = data["points"]
        occupancy = np.unpackbits(data["occupancies"])[: len(stored)].astype(bool)
        assert stored.dtype == np.float16 and float(data["scale"]) == 2.0
    q = stored.astype(np.float64)  # ONet frame: the box is 1 x 0.5 x 0.25
    analytic = (np.abs(q[:, 0]) <= 0.5) & (np.abs(q[:, 1]) <= 0.25) & (np.abs(q[:, 2]) <= 0.125)
    np.testing.assert_array_equal(occupancy, analytic)
    assert np.abs(q).max() <= 0.55 and 0 < occupancy.mean() < 1
    with np.load(io.BytesIO(files["pointcloud.npz"])) as data:
        surface = data["points"].astype(np.float64)
    on_face = np.isclose(np.abs(surface), [0.5, 0.25, 0.125], atol=1e-3).any(axis=1)
    assert on_face.all() and np.abs(surface).max(0) == pytest.approx([0.5, 0.25, 0.125], abs=1e-3)


@pytest.mark.parametrize("category", OCC_CATEGORIES)
def test_surface_points_lie_on_the_union_boundary(category: str) -> None:
    rng = np.random.default_rng(2)
    shape = OccupancyShape.of(FAMILIES[OCC_CATEGORIES[category][1]](rng))
    xyz, normal = sample_union_surface(shape.parts, 3000, rng)
    onet = shape.to_onet(xyz)
    np.testing.assert_allclose(np.linalg.norm(normal, axis=1), 1, atol=1e-6)
    assert shape.occupancy(onet - 0.003 * normal).mean() > 0.99  # nudged inward: inside
    assert shape.occupancy(onet + 0.003 * normal).mean() < 0.01  # nudged outward: outside
    lo, hi = onet.min(0), onet.max(0)  # bbox centred, longest side 1 (up to sampling)
    assert (hi - lo).max() == pytest.approx(1, abs=0.02) and np.abs(lo + hi).max() < 0.02


def test_contact_faces_are_not_sampled() -> None:
    """A leg under a seat: the leg's top and the seat's bottom under it are inside the union, not on its boundary;
    two boxes sharing a coplanar bottom face are sampled once there (uniform density)."""
    seat, leg = box(1.0, 0.2, 1.0, (0, 1.1, 0)), box(0.2, 1.0, 0.2, (0, 0.5, 0))
    xyz, _ = sample_union_surface([seat, leg], 4000, np.random.default_rng(3))
    contact = np.isclose(xyz[:, 1], 1.0, atol=1e-9) & (np.abs(xyz[:, 0]) < 0.099) & (np.abs(xyz[:, 2]) < 0.099)
    assert not contact.any() and np.isclose(xyz[:, 1], 1.0).sum() > 100  # the rest of the seat's bottom is kept
    wide, narrow = box(1.0, 0.2, 1.0, (0, 0.1, 0)), box(0.5, 0.6, 0.5, (0, 0.3, 0))
    xyz, _ = sample_union_surface([wide, narrow], 20000, np.random.default_rng(4))
    bottom = np.isclose(xyz[:, 1], 0.0)
    centre = bottom & (np.abs(xyz[:, 0]) < 0.25) & (np.abs(xyz[:, 2]) < 0.25)
    assert centre.sum() / bottom.sum() == pytest.approx(0.25, abs=0.03)  # area share 0.25, not doubled


def test_standin_layout_frame_and_renders(standin: Path) -> None:
    counts = dict(zip(ShapeNetOcc.splits, TINY.counts, strict=True))
    for split, count in counts.items():
        ds = build_dataset("shapenet_occ", standin, split)
        assert len(ds) == count * len(OCC_CATEGORIES)
        assert sorted(set(ds.labels.tolist())) == sorted(SYNSETS.index(s) for s, _ in OCC_CATEGORIES.values())
        assert all(re.fullmatch(r"\d{8}/[0-9a-f]{32}", ds.sample_id(i)) for i in range(len(ds)))
    for variant in OCC_CATEGORIES:
        assert len(build_dataset("shapenet_occ", standin, "test", variant)) == counts["test"]
    sample = build_dataset("shapenet_occ", standin, "train").load(0)
    assert sample["xyz"].shape == (TINY.surface, 3) and sample["query"].shape == (TINY.volume, 3)
    assert sample["near_query"].shape == (TINY.near, 3) and sample["view"].shape == (TINY.views, 64, 64)
    lo, hi = sample["xyz"].min(0), sample["xyz"].max(0)  # the x2 frame: longest side 2, centred
    assert (hi - lo).max() == pytest.approx(2, abs=0.05) and np.abs(lo + hi).max() < 0.05
    assert np.abs(sample["query"]).max() <= 1.1 and 0 < sample["occupancy"].mean() < 0.5
    assert 0.2 < sample["near_occupancy"].mean() < 0.8
    view = sample["view"]
    assert view.min() == 0 and 0.1 <= view[view > 0].min() and view.max() <= 1 and (view > 0).mean() > 0.01
    expected = depth_images(torch.from_numpy(sample["xyz"] / math.sqrt(2))[None], TINY.views, 64)[0].numpy()
    assert (expected > 0).mean() == pytest.approx((view > 0).mean(), abs=0.02)  # same silhouettes, sparser cloud
    status = {(s.dataset, s.variant): s for s in check_data(standin)}
    assert status["shapenet_occ", "all"].present and status["shapenet_occ", "all"].problems == []
    assert status["shapenet_occ", "chair"].n_train == counts["train"]


def test_same_seed_gives_identical_files(standin: Path, tmp_path: Path) -> None:
    write_standin(tmp_path / "again", ["shapenet_occ"], size="tiny")
    assert digests(tmp_path / "again") == digests(standin)
    write_standin(tmp_path / "other", ["shapenet_occ"], size="tiny", seed=1)
    assert digests(tmp_path / "other") != digests(standin)


def test_random_queries_subset_consistently_and_batches_stack(standin: Path) -> None:
    ds = build_dataset("shapenet_occ", standin, "train")
    raw = ds.load(3)
    transform = build_transform([{"random_subset": {"n": 256}}, {"random_queries": {"n": 300}}])
    out = transform(raw, np.random.default_rng(0))
    assert out["xyz"].shape == (256, 3) and out["query"].shape == (300, 3) and out["near_query"].shape == (300, 3)
    lookup = {tuple(p): o for p, o in zip(raw["query"].tolist(), raw["occupancy"].tolist(), strict=True)}
    assert all(lookup[tuple(p)] == o for p, o in zip(out["query"].tolist(), out["occupancy"].tolist(), strict=True))
    assert len({tuple(p) for p in out["query"].tolist()}) == 300  # without replacement: P = 1024 >= 300
    np.testing.assert_array_equal(build_transform([{"random_subset": {"n": 8}}])(raw, np.random.default_rng(0))
                                  ["query"], raw["query"])  # fmt: skip
    more = build_transform([{"random_queries": {"n": 2048}}])(raw, np.random.default_rng(0))
    assert more["query"].shape == (2048, 3) and more["near_occupancy"].shape == (2048,)  # with replacement
    loader = DataLoader(TransformedDataset(ds, transform, seed=0), batch_size=4)
    batch = next(iter(loader))
    assert batch["xyz"].shape == (4, 256, 3) and batch["occupancy"].shape == (4, 300)
    assert batch["view"].shape == (4, TINY.views, 64, 64) and len(batch["id"]) == 4


def test_projection_reexports_the_moved_render() -> None:
    from bench.data import render
    from methods.blocks import projection

    assert projection.depth_images is render.depth_images and projection.view_rotations is render.view_rotations
    assert projection.DEPTH_FLOOR == render.DEPTH_FLOOR

"""Writers of the synthetic stand-in, in the exact official on-disk formats the real loaders read.

``write_standin(<data root>/synthetic)`` writes ScanObjectNN (three h5 variants), ModelNet40 (txt with
normals, shape names, id lists and the ``.dat`` caches built by the real cache builder) and ShapeNet-55 (npy +
split lists) below the given root, so ``build_dataset(name, root=<that folder>, ...)`` reads them like real data.

Decisions: ScanObjectNN h5 coordinates are rounded to multiples of 2^-12 and stored with gzip (readers see plain
float32); ModelNet40 txt files hold fewer than 8192 points (the cache keeps them all, see
``build_modelnet_cache``); ShapeNet npy files hold ``shapenet_points`` points instead of 8192 (the loader's
``random_subset`` transform clamps); each data set draws from ``np.random.default_rng([seed, k])`` with its own k,
so writing one set or all gives the same files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from bench.data import modelnet40, scanobjectnn, shapenet55
from bench.data.synthetic.fewshot import write_fewshot
from bench.data.synthetic.parts import write_shapenetpart
from bench.data.synthetic.rooms import write_rooms
from bench.data.synthetic.scan import scan_object
from bench.data.synthetic.shapes import make_shape
from bench.errors import ConfigError

#: ModelNet40 class name -> shape family (the other official names are listed but hold no shapes)
MODELNET_FAMILIES = {
    "airplane": "airplane", "bathtub": "bathtub", "bed": "bed", "bookshelf": "shelf", "bottle": "bottle",
    "bowl": "bowl", "car": "car", "chair": "chair", "cone": "cone", "cup": "mug", "desk": "desk", "door": "door",
    "lamp": "lamp", "monitor": "display", "sink": "sink", "sofa": "sofa", "table": "table", "toilet": "toilet",
}  # fmt: skip
#: ShapeNet-55 synset -> families drawn for it (cellphone stands in for thin slabs such as doors)
SHAPENET_FAMILIES = {
    "02691156": ("airplane",), "02747177": ("bin",), "02773838": ("bag",), "02808440": ("bathtub", "toilet", "sink"),
    "02818832": ("bed",), "02871439": ("shelf",), "02876657": ("bottle",), "02880940": ("bowl",),
    "02933112": ("cabinet", "box"), "02958343": ("car",), "02992529": ("door",), "03001627": ("chair",),
    "03211117": ("display",), "03636649": ("lamp",), "03797390": ("mug",), "03938244": ("pillow",),
    "04256520": ("sofa",), "04379243": ("table", "desk"),
}  # fmt: skip
DEMO_MODELNET_CLASSES = (
    "airplane", "bathtub", "bed", "bookshelf", "bottle", "chair", "cup", "lamp", "monitor", "sofa", "table", "toilet",
)  # fmt: skip
DATASET_NAMES = ("scanobjectnn", "modelnet40", "shapenet55", "modelnet_fewshot", "s3dis", "shapenetpart")


@dataclass(frozen=True)
class StandinSize:
    """Shapes per class (train, test) and points per shape for each data set."""

    scanobjectnn: tuple[int, int]
    modelnet40: tuple[int, int]
    modelnet40_classes: tuple[str, ...]
    modelnet40_points: int
    shapenet55: tuple[int, int]
    shapenet55_synsets: tuple[str, ...]
    shapenet55_points: int


SIZES = {
    "tiny": StandinSize(
        (8, 4), (3, 2), ("airplane", "bathtub", "chair", "table"), 512, (3, 1),
        ("02691156", "03001627", "03636649", "04379243"), 512,
    ),
    "demo": StandinSize(
        (20, 8), (10, 4), DEMO_MODELNET_CLASSES, 1024, (14, 4), tuple(sorted(SHAPENET_FAMILIES)), 1536
    ),
}  # fmt: skip


def write_standin(
    root: Path, datasets: list[str] | None = None, size: str = "demo", seed: int = 0
) -> dict[str, list[Path]]:
    """Write the stand-in below ``root`` (pass ``<data root>/synthetic``); return the files written per set."""
    if size not in SIZES:
        raise ConfigError(f'unknown stand-in size "{size}". Valid: {", ".join(SIZES)}.')
    chosen = list(DATASET_NAMES) if datasets is None else list(datasets)
    for name in chosen:
        if name not in DATASET_NAMES:
            raise ConfigError(f'no synthetic stand-in for dataset "{name}". Available: {", ".join(DATASET_NAMES)}.')
    root, spec = Path(root), SIZES[size]
    if "modelnet_fewshot" in chosen and "modelnet40" not in chosen:
        chosen.insert(0, "modelnet40")  # the few-shot folds are drawn from the ModelNet40 stand-in
    writers = {"scanobjectnn": _write_scanobjectnn, "modelnet40": _write_modelnet40, "shapenet55": _write_shapenet55}
    writers["modelnet_fewshot"] = write_fewshot
    writers["s3dis"] = lambda folder, _, rng: write_rooms(folder, size, rng)  # room sizes: rooms.ROOM_SIZES
    writers["shapenetpart"] = lambda folder, _, rng: write_shapenetpart(folder, size, rng)  # parts.PART_SIZES
    written = {name: writers[name](root, spec, np.random.default_rng([seed, DATASET_NAMES.index(name)]))
               for name in chosen}  # fmt: skip
    _write_text(root / "STANDIN.json", json.dumps({"synthetic": True, "size": size, "seed": seed,
                                                   "datasets": sorted(written)}, indent=1))  # fmt: skip
    return written


def _plan(label_families: list[tuple[int, tuple[str, ...]]], counts: tuple[int, int], rng: np.random.Generator,
          ) -> Iterator[tuple[str, int, int, str]]:  # fmt: skip
    """(split, label, index within the class, family) for every shape to write, class by class."""
    for split, count in zip(("train", "test"), counts, strict=True):
        for label, families in label_families:
            for k in range(count):
                yield split, label, k, families[int(rng.integers(len(families)))]


def _write_text(path: Path, text: str) -> Path:
    """Write text atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _write_h5(path: Path, data: np.ndarray, label: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    quantised = (np.round(data * 4096) / 4096).astype(np.float32)
    with h5py.File(tmp, "w") as f:
        f.create_dataset("data", data=quantised, compression="gzip", compression_opts=4, shuffle=True)
        f.create_dataset("label", data=label.astype(np.int64))
    os.replace(tmp, path)
    return path


def _write_scanobjectnn(root: Path, spec: StandinSize, rng: np.random.Generator) -> list[Path]:
    """The three ScanObjectNN variants; the same object and view index i appears in all three files."""
    classes = [(i, (name,)) for i, name in enumerate(scanobjectnn.CLASS_NAMES)]
    clouds: dict[str, dict[str, list[np.ndarray]]] = {s: {v: [] for v in scanobjectnn.ScanObjectNN.variants}
                                                      for s in ("train", "test")}  # fmt: skip
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for split, label, _, family in _plan(classes, spec.scanobjectnn, rng):
        for variant, cloud in scan_object(family, rng).items():
            clouds[split][variant].append(cloud)
        labels[split].append(label)
    return [
        _write_h5(scanobjectnn.h5_path(root, variant, split), np.stack(clouds[split][variant]),
                  np.array(labels[split]))
        for split in ("train", "test") for variant in scanobjectnn.ScanObjectNN.variants
    ]  # fmt: skip


def _write_modelnet40(root: Path, spec: StandinSize, rng: np.random.Generator) -> list[Path]:
    """txt shapes (x,y,z,nx,ny,nz, 6 decimals), the 40 official names, id lists, then the ``.dat`` caches."""
    folder = root / modelnet40.FOLDER
    names = modelnet40.CLASS_NAMES
    classes = [(names.index(c), (MODELNET_FAMILIES[c],)) for c in spec.modelnet40_classes]
    ids: dict[str, list[str]] = {"train": [], "test": []}
    written = []
    for split, label, k, family in _plan(classes, spec.modelnet40, rng):
        offset = 0 if split == "train" else spec.modelnet40[0]
        shape_id = f"{names[label]}_{offset + k + 1:04d}"
        xyz, normal = make_shape(family, rng, spec.modelnet40_points)
        path = modelnet40.shape_txt(folder, shape_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, np.concatenate([xyz, normal], 1), fmt="%.6f", delimiter=",")
        ids[split].append(shape_id)
        written.append(path)
    written.append(_write_text(folder / "modelnet40_shape_names.txt", "\n".join(names) + "\n"))
    for split in ("train", "test"):
        written.append(_write_text(folder / f"modelnet40_{split}.txt", "\n".join(ids[split]) + "\n"))
        written.append(modelnet40.build_modelnet_cache(folder, split))
    return written


def _write_shapenet55(root: Path, spec: StandinSize, rng: np.random.Generator) -> list[Path]:
    """``<synset>-<32 hex>.npy`` complete shapes (float32 (P, 3)) and the train / test lists."""
    classes = [(shapenet55.SYNSETS.index(s), SHAPENET_FAMILIES[s]) for s in spec.shapenet55_synsets]
    lines: dict[str, list[str]] = {"train": [], "test": []}
    written = []
    for split, label, _, family in _plan(classes, spec.shapenet55, rng):
        xyz, _ = make_shape(family, rng, spec.shapenet55_points)
        name = f"{shapenet55.SYNSETS[label]}-{rng.bytes(16).hex()}.npy"
        path = shapenet55.points_dir(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, xyz)
        lines[split].append(name)
        written.append(path)
    for split in ("train", "test"):
        order = rng.permutation(len(lines[split]))  # official lists are not grouped by class
        written.append(_write_text(shapenet55.list_path(root, split), "\n".join(lines[split][i] for i in order) + "\n"))
    return written

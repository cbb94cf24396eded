"""Writers of the synthetic stand-in, in the exact official on-disk formats the real loaders read.

``write_standin(<data root>/synthetic)`` runs the registered stand-in writers (``STANDIN_WRITERS``, one per data
set, each registered by its own module with :func:`standin_writer`): here ScanObjectNN (three h5 variants),
ModelNet40 (txt with normals, shape names, id lists and the ``.dat`` caches built by the real cache builder) and
ShapeNet-55 (npy + split lists); the few-shot folds, S3DIS rooms and ShapeNetPart shapes in their modules. They
write below the given root, so ``build_dataset(name, root=<that folder>, ...)`` reads them like real data.

Writer contract: ``write(root, size, rng) -> written paths`` for a size of :data:`SIZES`; ``rng`` is
``np.random.default_rng([seed, stream])`` with the writer's own ``stream`` number (unique among the writers);
``requires`` names the writers whose files it reads, which :func:`write_standin` runs first (whatever order the
sets are asked in).

Decisions: ScanObjectNN h5 coordinates are rounded to multiples of 2^-12 and stored with gzip (readers see plain
float32); ModelNet40 txt files hold fewer than 8192 points (the cache keeps them all, see
``build_modelnet_cache``); ShapeNet npy files hold ``shapenet_points`` points instead of 8192 (the loader's
``random_subset`` transform clamps); each data set draws from ``np.random.default_rng([seed, k])`` with its own k
(its writer's stream), so writing one set or all, in any order, gives the same files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from bench.data import modelnet40, scanobjectnn, shapenet55
from bench.data.synthetic.scan import scan_object
from bench.data.synthetic.shapes import make_shape
from bench.errors import BenchError, ConfigError
from bench.io import atomic_output, atomic_write_text
from bench.registry import STANDIN_WRITERS, load_plugins

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
        (10, 8), (10, 4), DEMO_MODELNET_CLASSES, 1024, (100, 10), tuple(sorted(SHAPENET_FAMILIES)), 1024
    ),
}  # fmt: skip


WriteFunction = Callable[[Path, str, np.random.Generator], list[Path]]


@dataclass(frozen=True)
class StandinWriter:
    """A registered stand-in writer of data set ``name``: ``write(root, size, rng) -> written paths``, drawing from
    ``default_rng([seed, stream])``; ``requires``: the writers whose files it reads (run first)."""

    name: str
    write: WriteFunction
    stream: int
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "__module__", self.write.__module__)  # the registry's origin: the defining module

    def __call__(self, root: Path, size: str, rng: np.random.Generator) -> list[Path]:
        return self.write(Path(root), size, rng)


def standin_writer(name: str, stream: int, requires: tuple[str, ...] = ()) -> Callable[[WriteFunction], WriteFunction]:
    """Decorator: register ``fn(root, size, rng)`` in ``STANDIN_WRITERS`` as data set ``name``; returns ``fn``.

    ``stream`` must differ from every other writer's (a shared stream would couple two sets' files)."""

    def decorate(fn: WriteFunction) -> WriteFunction:
        for other in STANDIN_WRITERS.names():
            if other != name and STANDIN_WRITERS.get(other).stream == stream:
                raise BenchError(f'stand-in writers "{other}" and "{name}" both use stream {stream}; give '
                                 f"{fn.__module__}.{fn.__name__} an unused one.")  # fmt: skip
        STANDIN_WRITERS.add(name, StandinWriter(name, fn, stream, tuple(requires)))
        return fn

    return decorate


def write_order(datasets: list[str] | None) -> list[StandinWriter]:
    """The writers to run for ``datasets`` (None: every registered one, by stream), each after the writers it
    requires; unknown names raise the registry's did-you-mean error, a cycle of requirements a BenchError."""
    load_plugins()
    by_stream = sorted(STANDIN_WRITERS.names(), key=lambda n: STANDIN_WRITERS.get(n).stream)
    order: list[StandinWriter] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        writer = STANDIN_WRITERS.get(name)
        if name in path:
            raise BenchError(f"stand-in writers require each other in a cycle: {' -> '.join(path + (name,))}.")
        if writer in order:
            return
        for required in writer.requires:
            visit(required, path + (name,))
        order.append(writer)

    for name in by_stream if datasets is None else datasets:
        visit(name, ())
    return order


def write_standin(
    root: Path, datasets: list[str] | None = None, size: str = "demo", seed: int = 0
) -> dict[str, list[Path]]:
    """Write the stand-in below ``root`` (pass ``<data root>/synthetic``); return the files written per set (the
    sets asked for, plus the ones they require, in write order). ``datasets=None``: every registered writer."""
    if size not in SIZES:
        raise ConfigError(f'unknown stand-in size "{size}". Valid: {", ".join(SIZES)}.')
    root = Path(root)
    written = {w.name: w(root, size, np.random.default_rng([seed, w.stream])) for w in write_order(datasets)}
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
    """Write text atomically (:mod:`bench.io`)."""
    return atomic_write_text(path, text)


def _write_h5(path: Path, data: np.ndarray, label: np.ndarray) -> Path:
    quantised = (np.round(data * 4096) / 4096).astype(np.float32)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("data", data=quantised, compression="gzip", compression_opts=4, shuffle=True)
        f.create_dataset("label", data=label.astype(np.int64))
    return path


@standin_writer("scanobjectnn", stream=0)
def write_scanobjectnn(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """The three ScanObjectNN variants; the same object and view index i appears in all three files."""
    spec = SIZES[size]
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


@standin_writer("modelnet40", stream=1)
def write_modelnet40(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """txt shapes (x,y,z,nx,ny,nz, 6 decimals), the 40 official names, id lists, then the ``.dat`` caches."""
    spec = SIZES[size]
    folder = root / modelnet40.FOLDER
    names = modelnet40.CLASS_NAMES
    classes = [(names.index(c), (MODELNET_FAMILIES[c],)) for c in spec.modelnet40_classes]
    ids: dict[str, list[str]] = {"train": [], "test": []}
    written = []
    for split, label, k, family in _plan(classes, spec.modelnet40, rng):
        offset = 0 if split == "train" else spec.modelnet40[0]
        shape_id = f"{names[label]}_{offset + k + 1:04d}"
        xyz, normal = make_shape(family, rng, spec.modelnet40_points, common=True)
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


@standin_writer("shapenet55", stream=2)
def write_shapenet55(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """``<synset>-<32 hex>.npy`` complete shapes (float32 (P, 3)) and the train / test lists."""
    spec = SIZES[size]
    classes = [(shapenet55.SYNSETS.index(s), SHAPENET_FAMILIES[s]) for s in spec.shapenet55_synsets]
    lines: dict[str, list[str]] = {"train": [], "test": []}
    written = []
    for split, label, _, family in _plan(classes, spec.shapenet55, rng):
        xyz, _ = make_shape(family, rng, spec.shapenet55_points, common=True)
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

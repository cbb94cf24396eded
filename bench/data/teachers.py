"""Frozen-teacher embeddings of ShapeNet-55 for MMPD's alignment stage: side data ``teachers``, the prepare step
``bench data prepare teachers`` and the stand-in writer ``teachers``. Training never runs a teacher: it reads them.

Conventions:
- File ``<data root>/ShapeNet55-34/teachers.h5`` in the :mod:`bench.data.side` layout, one group per ShapeNet-55
  sample id (the npy file stem) of the train AND the test list (so ``pretrain.whole`` finds every id), two keys:

  - ``text``: float32 (text dim,), 384 for MiniLM: the text teacher's caption embedding of the shape's category
    (``class_text_embeddings``: ULIP's average over caption templates of the category name). Computed once per
    category present (55 at most), identical for every shape of a category.
  - ``image``: float32 (image dim,), 1280 for EfficientNet-Lite0: the image teacher's embedding of ``views`` depth
    projections of ``size`` px (``image_embeddings``: mean over views, l2-normalised).
- Clouds: ``points`` points drawn without replacement (all of them when the shape has fewer) by
  ``default_rng([SUBSET_SEED, crc32(id)])``, so a shape's subset depends on its id only, not on the order or the
  other shapes; then unit-sphere normalised (:func:`bench.data.base.pc_normalize`), as pre-training sees them.
- Root attributes (provenance; each value is JSON text, :meth:`bench.data.side.SideDataSource.describe` parses it):
  ``text`` = the teachers module's ``describe(text teacher)`` + ``captions: "templates"`` and the ``templates``,
  ``image`` = ``describe(image teacher)`` + ``views``, ``size``, ``points``; ``uses_category_names`` (true: the
  captions are category names, i.e. labels); ``test_teachers`` (true when either teacher is a random test teacher);
  ``dataset`` ("shapenet55"); ``ids`` (the number of shapes). No time stamp and no path: the same data and teachers
  give a byte-identical file.
- Teachers (``teachers=``): ``real`` = :data:`REAL_TEACHERS` (a missing extra is the teachers module's ConfigError
  naming it), ``random`` = :data:`RANDOM_TEACHERS` (frozen random stand-ins of the same interface and dimensions),
  ``auto`` = the teachers module's ``default_teachers()`` (the real ones when the extra is installed). They are
  reached through ``bench.registry.TEACHERS`` only: bench/ never imports methods/; the helpers are those of the
  module that registered the teacher (``TEACHERS.origin``).
- Written atomically (a temp file renamed at the end): on any error, nothing is left half-written and an older
  file stays as it was.
"""

from __future__ import annotations

import importlib
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import torch

from bench.data import shapenet55
from bench.data.base import check_points, pc_normalize
from bench.data.prepare import prepare_step
from bench.data.side import SideData, register_side_data
from bench.data.synthetic.writers import standin_writer
from bench.errors import ConfigError, DataError
from bench.io import atomic_output
from bench.registry import TEACHERS, load_plugins

NAME = "teachers"
REAL_TEACHERS = ("minilm", "efficientnet_lite0")
RANDOM_TEACHERS = ("random_text", "random_image")
CHOICES = ("auto", "real", "random")
#: ``bench data prepare teachers`` defaults (the stand-in writer uses them too)
#: ``size``: the depth image's side before it is resized to the teacher's 224 px; 1024 points fill 63% of 112 px
#: (29% of 224 px), so a denser image at a lower resolution (I2P-MAE densifies sparse projections for the same reason)
DEFAULTS = {"teachers": "auto", "views": 2, "size": 112, "points": 1024}
#: seed of the per-shape point subsets (with the crc32 of the id)
SUBSET_SEED = 20240607
#: shapes per image-teacher batch
BATCH = 32

TEACHER_DATA = register_side_data(SideData(
    NAME, f"{shapenet55.FOLDER}/teachers.h5", ("text", "image"),
    "ShapeNet-55 frozen-teacher embeddings: the category caption's (text) and the depth projections' (image)",
    standin=NAME, prepare=NAME,
))  # fmt: skip


@dataclass(frozen=True)
class TeacherSettings:
    """The options of one computation: the teacher choice (auto | real | random), views, image size, points."""

    teachers: str = DEFAULTS["teachers"]
    views: int = DEFAULTS["views"]
    size: int = DEFAULTS["size"]
    points: int = DEFAULTS["points"]

    @classmethod
    def parse(cls, options: dict[str, str]) -> TeacherSettings:
        """From ``key=value`` strings (other keys ignored); ConfigError naming a bad key."""
        choice = options.get("teachers", DEFAULTS["teachers"])
        if choice not in CHOICES:
            raise ConfigError(f"teachers={choice}: choose one of {', '.join(CHOICES)}.")
        numbers = {}
        for key in ("views", "size", "points"):
            text = str(options.get(key, DEFAULTS[key]))
            if not text.isdigit() or int(text) < 1:
                raise ConfigError(f"{key}={text}: must be a positive integer.")
            numbers[key] = int(text)
        return cls(choice, **numbers)


def teachers_module(name: str) -> ModuleType:
    """The module that registered teacher ``name`` (its helpers: class_text_embeddings, image_embeddings,
    describe, default_teachers, CAPTION_TEMPLATES), found through the registry after the plug-ins are loaded."""
    load_plugins()
    return importlib.import_module(TEACHERS.origin(name))


def teacher_names(choice: str) -> tuple[str, str]:
    """(text, image) teacher names for ``choice`` (auto | real | random)."""
    if choice == "real":
        return REAL_TEACHERS
    if choice == "random":
        return RANDOM_TEACHERS
    if choice != "auto":
        raise ConfigError(f"teachers={choice}: choose one of {', '.join(CHOICES)}.")
    text, image = teachers_module(RANDOM_TEACHERS[0]).default_teachers()  # the real pair when installed
    return text, image


def shape_ids(root: Path) -> tuple[list[str], list[int], list[Path]]:
    """Every ShapeNet-55 id of the train and test lists below ``root`` (train first, each once), with its label
    and npy file."""
    seen: dict[str, tuple[int, Path]] = {}
    for split in ("train", "test"):
        data = shapenet55.ShapeNet55(root, split)
        for i, name in enumerate(data.files):
            seen.setdefault(data.sample_id(i), (int(data.labels[i]), shapenet55.points_dir(root) / name))
    return list(seen), [label for label, _ in seen.values()], [path for _, path in seen.values()]


def teacher_cloud(sample_id: str, xyz: np.ndarray, points: int) -> np.ndarray:
    """The id-seeded ``points``-point subset of ``xyz`` (all points when fewer), unit-sphere normalised."""
    rng = np.random.default_rng([SUBSET_SEED, zlib.crc32(sample_id.encode())])
    pick = rng.choice(len(xyz), size=min(points, len(xyz)), replace=False)
    return pc_normalize(xyz[pick, :3])


def _load_xyz(path: Path) -> np.ndarray:
    """A shape's (P, 3) points, checked as the ShapeNet-55 loader checks them (DataError naming the file)."""
    if not path.is_file():
        raise DataError(f"ShapeNet-55 point file not found: expected {path} (listed in the train or test list).")
    try:
        return check_points(np.load(path, allow_pickle=False), path)[:, :3]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc}).") from None


def _batches(ids: list[str], files: list[Path], points: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """(positions, (B, N, 3) clouds) in order, each batch of clouds of one point count."""
    batch: list[int] = []
    clouds: list[np.ndarray] = []
    for j, (sample_id, path) in enumerate(zip(ids, files, strict=True)):
        cloud = teacher_cloud(sample_id, _load_xyz(path), points)
        if clouds and (len(batch) == BATCH or len(cloud) != len(clouds[0])):
            yield batch, np.stack(clouds)
            batch, clouds = [], []
        batch.append(j)
        clouds.append(cloud)
    if batch:
        yield batch, np.stack(clouds)


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def provenance(module: ModuleType, names: tuple[str, str], text_teacher, image_teacher, settings: TeacherSettings,
               count: int) -> dict[str, Any]:  # fmt: skip
    """The root attributes (module docstring) before JSON encoding."""
    templates = [str(t) for t in module.CAPTION_TEMPLATES]
    return {
        "text": {**module.describe(text_teacher), "captions": "templates", "templates": templates},
        "image": {**module.describe(image_teacher), "views": settings.views, "size": settings.size,
                  "points": settings.points},
        "uses_category_names": True,
        "test_teachers": any(bool(TEACHERS.get(name).is_test_teacher) for name in names),
        "dataset": "shapenet55",
        "ids": count,
    }


def write_teachers(root: Path, settings: TeacherSettings,
                   progress: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Compute and write ``teachers.h5`` below the data root ``root`` (module docstring); return it and its
    provenance. ``progress`` gets a line about every tenth of the shapes. DataError for missing ShapeNet-55 lists
    or files; the teachers module's ConfigError (naming the extra) when a real teacher is not installed."""
    root = Path(root)
    ids, labels, files = shape_ids(root)
    names = teacher_names(settings.teachers)
    module = teachers_module(names[0])
    text_teacher, image_teacher = (TEACHERS.get(name).load() for name in names)
    present = sorted(set(labels))
    with torch.no_grad():
        by_class = _as_array(module.class_text_embeddings(
            text_teacher, [shapenet55.SYNSET_NAMES[shapenet55.SYNSETS[label]] for label in present]))
    text_row = {label: by_class[k] for k, label in enumerate(present)}
    info = provenance(module, names, text_teacher, image_teacher, settings, len(ids))
    path = TEACHER_DATA.file(root)
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for key, value in info.items():
            f.attrs[key] = json.dumps(value, sort_keys=True)
        step, reported = max(1, len(ids) // 10), 0
        for positions, clouds in _batches(ids, files, settings.points):
            with torch.no_grad():
                image = _as_array(module.image_embeddings(image_teacher, torch.from_numpy(clouds), settings.views,
                                                          settings.size))  # mean over views, l2 (its convention)
            for row, j in enumerate(positions):
                group = f.require_group(ids[j])
                group.create_dataset("text", data=text_row[labels[j]])
                group.create_dataset("image", data=image[row])
            done = positions[-1] + 1
            if progress is not None and done // step > reported and done < len(ids):
                reported = done // step
                progress(f"teachers: {done}/{len(ids)} shapes embedded")
    return path, info


def summary(path: Path, info: dict[str, Any], classes: int) -> str:
    """One line: shapes, classes, teachers and their settings, the file."""
    text, image = info["text"], info["image"]
    test = " (random TEST teachers, not the real ones)" if info["test_teachers"] else ""
    return (f"teachers: {info['ids']} shapes of {classes} categories; text {text.get('name', '?')} "
            f"({text.get('dim', '?')}-d, {len(text['templates'])} caption templates), image {image.get('name', '?')} "
            f"({image.get('dim', '?')}-d, {image['views']} views of {image['size']} px, {image['points']} points)"
            f"{test} -> {path}")


@prepare_step(NAME, label="teacher embedding")
def prepare_teachers(root: Path, options: dict[str, str]) -> list[Path]:
    """``bench data prepare teachers [teachers=auto|real|random] [views=2] [size=112] [points=1024]``: the
    teacher embeddings of every ShapeNet-55 train and test id below ``root`` (module docstring); prints a summary."""
    path, info = write_teachers(root, TeacherSettings.parse(options), progress=lambda line: print(line, flush=True))
    print(summary(path, info, len(set(shape_ids(root)[1]))), flush=True)
    return [path]


@standin_writer(NAME, stream=7, requires=("shapenet55",))
def write_teachers_standin(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """The same file for the stand-in's ShapeNet-55, with the default settings and ``auto`` teachers (the real
    ones when the extra is installed, else the random test teachers; the attributes say which). Draws nothing
    from ``rng``: the subsets are seeded by id, so the file equals ``bench data prepare teachers`` on it."""
    return [write_teachers(root, TeacherSettings())[0]]

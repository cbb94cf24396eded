"""Protocol ``conditional``: class-, image- and text-to-3D, each generated shape compared with its source shape,
scored as 3DShape2VecSet's ``eval.py`` does (wave2.md 4.4; generation.md 2.2), metrics in
:mod:`bench.metrics.reconstruction`.

Per job (one method x task x seed), on ``eval_split`` of the ShapeNet occupancy layout (``shapenet_occ``; the
[-1, 1] frame of the data set, :data:`bench.data.shapenet_occ.FRAME_SCALE`):

- condition per source shape (``suite.condition``, one per variant): ``class`` its ShapeNet-55 synset index;
  ``image`` its depth renders, ``views`` fixed viewpoints at ``render`` px (the data set's ``view`` when it has that
  many, else :func:`bench.data.render.depth_images` of its surface points: the same projection), as an
  (n, V, 1, H, W) batch; ``text`` ``caption_template`` with its category name (no captioning model runs offline:
  every caption is a template, recorded);
- ``generate_fields`` once per source shape and sampling seed (CPU generator ``1000 x job seed + sampling seed``),
  ``batch_size`` shapes at a time;
- IoU (%): on the shape's uniform volume points, predicted inside iff logit >= 0 (``iou``), and on its near-surface
  points separately (``iou_near``, when the data set has them). Distance fields (``udf``) have no inside: their IoU
  is NaN and the record says why;
- mesh: marching cubes at the fields' level on a ``resolution``^3 grid over [-``bound``, ``bound``]^3
  (:mod:`bench.shape_fields`; 3DShape2VecSet: 129 over [-1, 1], ``mcubes``), then ``surface_samples`` uniform points
  on it (3DShape2VecSet: 100k); a shape with an empty level set gets the fallback points and is counted;
- CD: mean nearest-neighbour distance GT -> pred plus pred -> GT, Euclidean, not squared, not halved, against the
  shape's surface points (``gt_points``, 0: all); F-score at tau 0.01 (``fscore_01``) and 0.02 (``fscore_02``) in
  the frame's units, precision = share of predicted points within tau of the GT (the conventional naming);
- a value per metric = mean over categories of the per-category mean over shapes (3DShape2VecSet reports
  per-category means); per-category values are in the details. ``mean`` over sampling seeds is the honest
  statistic, the first seed's value the paper one, and their spread ``std``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.api import CONDITIONAL_GENERATION, SHAPE_FIELDS, Condition, JobContext, Protocol, Requirements
from bench.config import dataset_variant
from bench.data.base import build_dataset
from bench.data.render import depth_images
from bench.errors import ConfigError
from bench.metrics.reconstruction import chamfer_distance, fscore, occupancy_iou
from bench.registry import DATASETS, PROTOCOLS
from bench.results import JobResult
from bench.schema import ReportConfig, SuiteConfig
from bench.scoring import metric_names, metric_results, reference_order
from bench.shape_fields import MeshConfig, fields_to_points, query_chunked
from bench.trainer import resolve_device
from suites.protocols.toolkit import eval_mode

SEED_STRIDE = 1000
TASKS = ("class", "image", "text")
METRICS_REPORTED = ("iou", "iou_near", "cd", "fscore_01", "fscore_02")
TAUS = {"fscore_01": 0.01, "fscore_02": 0.02}


@dataclass
class ConditionalSuite(SuiteConfig):
    """The conditional protocol's settings (see the module docstring)."""

    condition: str = "class"  # class | image | text: set per variant in variant_options
    eval_split: str = "test"
    eval_size: int = 0  # 0: the whole split; k: the first k after a seed-0 shuffle
    batch_size: int = 8  # shapes per generate_fields call
    sampling_seeds: list[int] = field(default_factory=lambda: [0])
    resolution: int = 129  # grid points per axis (3DShape2VecSet: 129 over [-1, 1])
    bound: float = 1.0
    chunk: int = 65536  # query points per decoder call
    mc_backend: str = "pymcubes"
    surface_samples: int = 100000  # points sampled on each predicted mesh (3DShape2VecSet: 100k)
    gt_points: int = 0  # GT surface points per shape (0: all the data set has)
    views: int = 2  # image task: depth renders per shape
    render: int = 112  # image task: render size (px)
    caption_template: str = "a 3D model of a {}."
    metric: str = "iou"
    report: ReportConfig = field(default_factory=lambda: ReportConfig(columns="metrics",
                                                                      metrics=list(METRICS_REPORTED)))


def conditions_of(suite: Any) -> set[str]:
    """The condition kinds of the suite's variants (each variant's ``condition``, else the suite's)."""
    options = dict(suite.get("variant_options") or {}) if hasattr(suite, "get") else {}
    kinds = set()
    for variant in suite.variants:
        own = options.get(variant) or {}
        kinds.add(str(own.get("condition", suite.condition)))
    return kinds


def shape_condition(kind: str, samples: list[dict[str, Any]], suite: Any, class_names: list[str]) -> Condition:
    """The condition that each source shape gives (see the module docstring)."""
    if kind == "class":
        return Condition("class", labels=torch.tensor([int(s["label"]) for s in samples]))
    if kind == "text":
        return Condition("text", texts=tuple(suite.caption_template.format(class_names[int(s["label"])])
                                             for s in samples))
    views = []
    for sample in samples:
        view = sample.get("view")
        if view is not None and np.asarray(view).shape[0] == int(suite.views):
            views.append(torch.as_tensor(np.asarray(view, np.float32)))
        else:
            xyz = torch.as_tensor(np.asarray(sample["xyz"], np.float32)).unsqueeze(0)
            views.append(depth_images(xyz, int(suite.views), int(suite.render))[0])
    size = max(v.shape[-1] for v in views)
    views = [v if v.shape[-1] == size else torch.nn.functional.interpolate(v[None], size=(size, size))[0]
             for v in views]
    return Condition("image", images=torch.stack(views).unsqueeze(2))


def score_batch(fields: Any, samples: list[dict[str, Any]], suite: Any, seed: int) -> tuple[list[dict], int]:
    """Per-shape scores of one batch, and how many shapes had an empty level set."""
    mesh = MeshConfig(int(suite.resolution), float(suite.bound), int(suite.chunk), str(suite.mc_backend))
    surfaces = fields_to_points(fields, int(suite.surface_samples), mesh, seed)
    rows = [dict() for _ in samples]
    for key, points_key, labels_key in (("iou", "query", "occupancy"), ("iou_near", "near_query", "near_occupancy")):
        if fields.kind != "occupancy" or any(points_key not in s for s in samples):
            continue
        points = torch.as_tensor(np.stack([s[points_key] for s in samples]).astype(np.float32))
        values = query_chunked(fields, points, int(suite.chunk))
        for row, value, sample in zip(rows, values, samples, strict=True):
            row[key] = occupancy_iou(value, np.asarray(sample[labels_key]))
    for row, pred, sample in zip(rows, surfaces.points, samples, strict=True):
        gt = gt_surface(sample, int(suite.gt_points))
        row["cd"] = chamfer_distance(pred, gt)
        for name, tau in TAUS.items():
            row[name] = fscore(pred, gt, tau).f
    return rows, surfaces.empty


def gt_surface(sample: dict[str, Any], count: int) -> np.ndarray:
    xyz = np.asarray(sample["xyz"], np.float32)
    if 0 < count < len(xyz):
        return xyz[np.random.default_rng(0).permutation(len(xyz))[:count]]
    return xyz


def category_means(rows: list[dict], labels: list[int], names: list[str]) -> tuple[dict[str, float], dict]:
    """Mean over categories of the per-category means (NaN for a metric no shape has), and the per-category ones."""
    per_category: dict[str, dict[str, float]] = {}
    for label in sorted(set(labels)):
        own = [r for r, lab in zip(rows, labels, strict=True) if lab == label]
        per_category[str(label)] = {n: float(np.mean([r[n] for r in own])) if all(n in r for r in own) else
                                    float("nan") for n in names}
    means = {n: float(np.mean([c[n] for c in per_category.values()])) for n in names}
    return means, per_category


@PROTOCOLS.register("conditional")
class Conditional(Protocol):
    name = "conditional"
    requires = Requirements(frozenset({CONDITIONAL_GENERATION, SHAPE_FIELDS}), frozenset(TASKS))
    suite_class = ConditionalSuite

    @classmethod
    def requirements(cls, suite: Any) -> Requirements:
        return Requirements(cls.requires.capabilities, frozenset(conditions_of(suite)))

    @classmethod
    def check(cls, suite: Any) -> None:
        where = f"suite {suite.name}"
        bad = sorted((conditions_of(suite) | {str(suite.condition)}) - set(TASKS))
        if bad:
            raise ConfigError(f"{where}: suite.condition {bad} is not one of {', '.join(TASKS)}.")
        unknown = [m for m in metric_names(suite) if m not in METRICS_REPORTED]
        if unknown:
            raise ConfigError(f"{where}: suite.metric / suite.report.metrics name {', '.join(unknown)}; the "
                              f"conditional protocol scores {', '.join(METRICS_REPORTED)}.")
        splits = DATASETS.get(suite.dataset).splits if suite.dataset in DATASETS else ()
        if splits and suite.eval_split not in splits:
            raise ConfigError(f"{where}: suite.eval_split={suite.eval_split!r} is not a split of {suite.dataset} "
                              f"({', '.join(splits)}).")
        for key in ("batch_size", "resolution", "surface_samples", "chunk", "views", "render"):
            if int(suite[key]) < (2 if key == "resolution" else 1):
                raise ConfigError(f"{where}: suite.{key}={suite[key]} is too small.")
        seeds = list(suite.sampling_seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: suite.sampling_seeds={seeds} must be a non-empty list of distinct seeds.")
        if "{}" not in str(suite.caption_template):
            raise ConfigError(f"{where}: suite.caption_template={suite.caption_template!r} needs a {{}} for the "
                              "category name.")
        MeshConfig(int(suite.resolution), float(suite.bound), int(suite.chunk), str(suite.mc_backend)).check(
            f"{where}: suite (resolution / bound / chunk / mc_backend)")

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        self.check(suite)
        kind = str(suite.condition)
        dataset = build_dataset(suite.dataset, Path(ctx.data_root), str(suite.eval_split),
                                dataset_variant(ctx.cfg, ctx.variant))
        order = reference_order(len(dataset), int(suite.eval_size))
        samples = [dataset.load(int(i)) for i in order]
        method = ctx.pretrained_method().to(resolve_device(ctx.cfg.trainer.device))
        names = metric_names(suite)
        runs, empties, per_category = [], [], None
        for s in suite.sampling_seeds:
            seed = SEED_STRIDE * ctx.seed + int(s)
            rows, empty, field_kind = self.score_all(method, kind, samples, suite, dataset.class_names, seed)
            means, by_label = category_means(rows, [int(x["label"]) for x in samples], names)
            per_category = {dataset.class_names[int(label)]: values for label, values in by_label.items()}
            runs.append(means)
            empties.append(empty)
        details = {
            "task": kind, "shapes": len(samples), "split": str(suite.eval_split), "sampler": method.sampler_settings(),
            "empty_meshes": empties, "per_category_first_seed": per_category, "field_kind": field_kind,
            "iou_note": None if field_kind == "occupancy" else "not applicable: distance fields have no inside (NaN)",
            "conventions": {"iou": "uniform volume points, logit >= 0; iou_near on the near-surface points",
                            "cd": "mean NN distance GT->pred + pred->GT, Euclidean, not squared, not halved",
                            "fscore": "tau in frame units; precision = share of predicted points within tau of GT",
                            "frame": "[-1, 1] (ONet unit cube x 2)",
                            "grid": f"{suite.resolution}^3 over [-{suite.bound}, {suite.bound}]^3, marching cubes at "
                                    f"the field level ({suite.mc_backend})",
                            "surface_samples": int(suite.surface_samples)},
            "captions": suite.caption_template if kind == "text" else None,
            "captions_note": "category templates: no captioning model runs offline" if kind == "text" else None,
        }
        note = "one sampling run per shape, as 3DShape2VecSet / G3PT report"
        return JobResult(metric_results(names, runs, paper_note=note), [], details)

    @staticmethod
    def score_all(method: Any, kind: str, samples: list[dict], suite: Any, class_names: list[str],
                  seed: int) -> tuple[list[dict], int, str]:  # fmt: skip
        """Per-shape rows over every batch, the count of empty level sets, and the field kind."""
        generator = torch.Generator().manual_seed(seed)
        rows, empty, kind_of_field = [], 0, "occupancy"
        step = int(suite.batch_size)
        with eval_mode(method):
            for start in range(0, len(samples), step):
                batch = samples[start : start + step]
                fields = method.generate_fields(len(batch), shape_condition(kind, batch, suite, class_names),
                                                generator)
                batch_rows, batch_empty = score_batch(fields, batch, suite, seed + start)
                rows.extend(batch_rows)
                empty += batch_empty
                kind_of_field = fields.kind
        return rows, empty, kind_of_field

"""Protocol ``generation``: unconditional point-cloud generation, scored as PointFlow / PVD / LION do
(reference/generation.md 1; wave2.md 4, 7): MMD, COV and 1-NNA under CD and EMD (:mod:`bench.metrics.generation`).

Per job (one method x variant x seed):

- frame: the model sees the variant's train clouds in one frame. ``global`` (LION Table 1): one affine map for the
  whole category, minus the per-axis mean of every train point (PointFlow's mean) and divided by the largest point
  norm of the centred train split, so the clouds lie in the unit ball that a pre-trained tokenizer saw. PointFlow
  divides by its one scalar std instead; the choice changes no metric, since samples are mapped back to raw units
  (``x * scale + mean``) before scoring against raw references (LION Table 1). ``box`` (LION Table 2): every shape
  box-normalised (:func:`bench.data.shapenet15k.normalize_box`), and the metrics on box-normalised samples and
  references. Train clouds use all their points (PointFlow keeps ``[:10000]`` of each 15k shape: the same
  distribution);
- fine-tuning (``finetune_epochs`` > 0): the method's ``generation_stage`` of ``pretrain.stages`` (None: the
  implicit stage; with declared stages it must name one) with that stage's ``train`` / ``freeze``, then
  ``on_stage_start``, trained by the one Trainer (the job's ``trainer`` section, ``finetune_epochs`` epochs, the job
  seed, the job's work folder: it resumes) on the model-frame train clouds, each a fresh random subset of
  ``pretrain.npoints`` points per epoch (the density the method was pre-trained at). 0: sample the pre-trained
  method as it is;
- references: :func:`bench.scoring.reference_clouds` (``reference_split``, ``reference_size``, ``npoints`` points);
- condition (``condition``): ``none`` (unconditional), or ``class``: sample k is conditioned on the ShapeNet-55
  class of reference k (the methods that accept a class condition; one category per variant);
- sampling: per sampling seed s, ``generate(n_ref, npoints, generator=torch.Generator().manual_seed(1000 * job
  seed + s))`` in eval mode without gradients (a CPU generator: a method on another device draws on the CPU and
  moves the noise), mapped to the metric frame; non-finite samples are a DataError naming the method;
- results: one per metric of ``suite.report.metrics``, headline (``suite.metric``) first; ``mean`` over sampling
  seeds (honest), ``single`` = the first sampling seed's (paper: one run, as PointFlow / LION report), ``std``.
  ``details``: sampler settings, frame, reference, distance options, noise floor, 1-NNA acc_t / acc_f, EMD audit,
  and ``samples_file``: ``figure_samples`` generated clouds of the first sampling seed and as many references, in
  the metric frame (``<workdir>/samples.npz``, keys ``samples`` / ``refs``), for the report's figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.api import CONDITIONAL_GENERATION, GENERATION, Condition, JobContext, Method, Protocol, Requirements
from bench.config import dataset_variant
from bench.data.base import TransformedDataset, build_dataset
from bench.data.shapenet15k import NORMALISATIONS, normalize_box
from bench.data.transforms import build_transform
from bench.errors import ConfigError, DataError
from bench.io import atomic_write
from bench.pretraining import IMPLICIT, Stage, stages_of
from bench.registry import DATASETS, PROTOCOLS
from bench.results import JobResult
from bench.schema import ReportConfig, SuiteConfig
from bench.scoring import (
    GENERATION_METRICS,
    audit,
    distance_options,
    generation_details,
    metric_names,
    metric_results,
    reference_clouds,
    reference_order,
    score_sets,
)
from bench.trainer import resolve_device
from suites.protocols.toolkit import enter_stage, eval_mode, fit_stage

SEED_STRIDE = 1000  # generator seed = SEED_STRIDE * job seed + sampling seed
CONDITIONS = ("none", "class")
REPORTED = ("nna_cd", "nna_emd", "cov_cd", "cov_emd", "mmd_cd", "mmd_emd")  # the default table: LION's columns


@dataclass
class GenerationSuite(SuiteConfig):
    """The generation protocol's settings (see the module docstring)."""

    npoints: int = 2048  # points per generated and per reference cloud (PointFlow / LION: 2048)
    metric: str = "nna_cd"
    normalisation: str = "global"  # global (LION Table 1) | box (LION Table 2)
    reference_split: str = "val"  # PointFlow / PVD / LION score against val (their "test")
    reference_size: int = 0  # 0: the whole split; k: the first k after a seed-0 shuffle
    sampling_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    emd_cost: str = "sqeuclidean"  # sqeuclidean (PVD, LION) | euclidean (PointFlow's own table)
    emd_method: str = "approx"  # approx (approxmatch, the metric path) | exact (Hungarian; slow)
    emd_audit: int = 0  # k (sample, reference) pairs re-scored exactly: approx / exact ratio in the record
    chunk_mb: int = 256  # memory bound of one block of pairwise distances
    finetune_epochs: int = 0  # epochs of the generation stage on the variant's train split; 0: sample as is
    figure_samples: int = 4  # generated clouds (and as many references) saved for the report's figure
    condition: str = "none"  # none | class: each sample conditioned on the class of the reference it stands for
    report: ReportConfig = field(default_factory=lambda: ReportConfig(columns="metrics", metrics=list(REPORTED)))


@dataclass(frozen=True)
class Frame:
    """The model frame: ``global`` (model = (raw - mean) / scale) or ``box`` (each shape box-normalised)."""

    kind: str
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def to_model(self, xyz: np.ndarray) -> np.ndarray:
        if self.kind == "box":
            return normalize_box(xyz)
        return ((np.asarray(xyz, np.float64) - np.array(self.mean)) / self.scale).astype(np.float32)

    def to_metric(self, clouds: np.ndarray) -> np.ndarray:
        """Generated clouds in the metric frame: raw units (global) or box-normalised (box)."""
        if self.kind == "box":
            return normalize_box(clouds)
        return (np.asarray(clouds, np.float64) * self.scale + np.array(self.mean)).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "box":
            return {"kind": "box", "rule": "per shape: minus its bbox centre, divided by half its largest extent"}
        return {"kind": "global", "mean": list(self.mean), "scale": self.scale,
                "rule": "minus the per-axis mean of the train points, divided by the largest centred point norm"}


def model_frame(train: Any, kind: str) -> Frame:
    """The frame of ``kind`` for a train split (two passes over its clouds for ``global``, in float64)."""
    if kind == "box":
        return Frame("box")
    total, count = np.zeros(3), 0
    for i in range(len(train)):
        xyz = np.asarray(train.load(i)["xyz"], np.float64)
        total, count = total + xyz.sum(axis=0), count + len(xyz)
    mean = total / count
    scale = max(float(np.sqrt(((np.asarray(train.load(i)["xyz"], np.float64) - mean) ** 2).sum(1)).max())
                for i in range(len(train)))
    if not scale > 0:
        raise DataError("the train split's points all coincide: no frame to normalise them in.")
    return Frame("global", (float(mean[0]), float(mean[1]), float(mean[2])), scale)


class FramedClouds:
    """A split's samples with their ``xyz`` in a frame (``load`` / ``len``, what TransformedDataset reads)."""

    def __init__(self, dataset: Any, frame: Frame) -> None:
        self.dataset, self.frame = dataset, frame

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, i: int) -> dict[str, Any]:
        sample = self.dataset.load(i)
        return {**sample, "xyz": self.frame.to_model(sample["xyz"])}


def generation_stage(cfg: Any, method_cls: type[Method]) -> Stage:
    """The stage named ``method_cls.generation_stage`` (None: the implicit one); ConfigError when there is none."""
    stages = stages_of(cfg)
    wanted = method_cls.generation_stage or IMPLICIT
    found = next((s for s in stages if s.name == wanted), None)
    if found is None:
        names = ", ".join(s.name for s in stages)
        raise ConfigError(f"{method_cls.name}.generation_stage is {method_cls.generation_stage!r}, but its "
                          f"pretrain.stages are {names}: the generation protocol fine-tunes that stage, so it must "
                          "name one of them.")
    return found


def finetune(ctx: JobContext, method: Method, clouds: FramedClouds) -> list[dict[str, float]]:
    """Train the generation stage for ``suite.finetune_epochs`` epochs; its per-epoch rows ([] for 0 epochs)."""
    cfg = ctx.cfg
    epochs = int(cfg.suite.finetune_epochs)
    if epochs <= 0:
        return []
    stage = generation_stage(cfg, ctx.method_cls)
    enter_stage(method, stage)
    dataset = TransformedDataset(clouds, build_transform([{"random_subset": {"n": int(cfg.pretrain.npoints)}}]),
                                 seed=ctx.seed)
    return fit_stage(ctx, method, dataset, epochs, stage.name).history


def draw(method: Method, n: int, points: int, seed: int, condition: Condition | None = None) -> np.ndarray:
    """``n`` clouds from ``method.generate`` with a CPU generator seeded ``seed``, in eval mode, as float32 numpy."""
    with eval_mode(method):
        out = method.generate(n, points, condition, generator=torch.Generator().manual_seed(seed))
    clouds = out.detach().float().cpu().numpy()
    if clouds.shape != (n, points, 3):
        raise DataError(f"{method.name}.generate({n}, {points}) returned shape {clouds.shape}, not ({n}, {points}, 3).")
    bad = ~np.isfinite(clouds).all(axis=(1, 2))
    if bad.any():
        raise DataError(f"method {method.name} generated NaN or inf points in {int(bad.sum())} of {n} clouds "
                        f"(generator seed {seed}): the generator diverged or its sampler settings are invalid.")
    return clouds


def reference_condition(reference: Any, size: int) -> Condition:
    """Class labels of the reference clouds, in their order (the sample set gets the reference set's class mix)."""
    labels = [int(reference.load(int(i))["label"]) for i in reference_order(len(reference), size)]
    return Condition("class", labels=torch.tensor(labels))


def save_figure_clouds(path: Path, samples: np.ndarray, refs: np.ndarray, k: int) -> str | None:
    """The first ``k`` samples and references (metric frame) as ``path`` (npz, atomically); None when k is 0."""
    if k <= 0:
        return None
    atomic_write(path, lambda handle: np.savez(handle, samples=samples[:k], refs=refs[:k]))
    return str(path)


@PROTOCOLS.register("generation")
class Generation(Protocol):
    name = "generation"
    requires = Requirements(frozenset({GENERATION}))
    suite_class = GenerationSuite

    @classmethod
    def requirements(cls, suite: Any) -> Requirements:
        if str(suite.condition) == "class":
            return Requirements(frozenset({GENERATION, CONDITIONAL_GENERATION}), frozenset({"class"}))
        return cls.requires

    @classmethod
    def check(cls, suite) -> None:
        where = f"suite {suite.name}"
        if str(suite.condition) not in CONDITIONS:
            raise ConfigError(f"{where}: suite.condition={suite.condition!r}; choose one of {', '.join(CONDITIONS)}.")
        if suite.normalisation not in NORMALISATIONS:
            raise ConfigError(f"{where}: suite.normalisation={suite.normalisation!r}; choose one of "
                              f"{', '.join(NORMALISATIONS)}.")
        splits = DATASETS.get(suite.dataset).splits if suite.dataset in DATASETS else ()
        if splits and suite.reference_split not in splits:
            raise ConfigError(f"{where}: suite.reference_split={suite.reference_split!r} is not a split of "
                              f"{suite.dataset} ({', '.join(splits)}).")
        unknown = [m for m in metric_names(suite) if m not in GENERATION_METRICS]
        if unknown:
            raise ConfigError(f"{where}: suite.metric / suite.report.metrics name {', '.join(unknown)}; the "
                              f"generation protocol scores {', '.join(GENERATION_METRICS)}.")
        seeds = list(suite.sampling_seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}: suite.sampling_seeds={seeds} must be a non-empty list of distinct seeds.")
        for key in ("reference_size", "emd_audit", "finetune_epochs", "figure_samples"):
            if int(getattr(suite, key)) < 0:
                raise ConfigError(f"{where}: suite.{key}={getattr(suite, key)} must be 0 or more.")
        if int(suite.npoints) < 1:
            raise ConfigError(f"{where}: suite.npoints={suite.npoints} must be at least 1.")
        distance_options(suite)

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        self.check(suite)
        if int(suite.finetune_epochs) > 0:
            generation_stage(ctx.cfg, ctx.method_cls)  # a bad stage name fails before any data is read
        root, variant = Path(ctx.data_root), dataset_variant(ctx.cfg, ctx.variant)
        train = build_dataset(suite.dataset, root, "train", variant)
        frame = model_frame(train, suite.normalisation)
        method = ctx.pretrained_method()
        epochs = finetune(ctx, method, FramedClouds(train, frame))
        method.to(resolve_device(ctx.cfg.trainer.device))
        reference = build_dataset(suite.dataset, root, suite.reference_split, variant)
        refs, _ = reference_clouds(reference, int(suite.npoints), int(suite.reference_size), suite.normalisation)
        condition = reference_condition(reference, int(suite.reference_size)) if suite.condition == "class" else None
        options = distance_options(suite, str(resolve_device(ctx.cfg.trainer.device)))
        runs, first = [], None
        for s in suite.sampling_seeds:
            seed = SEED_STRIDE * ctx.seed + int(s)
            samples = frame.to_metric(draw(method, len(refs), int(suite.npoints), seed, condition))
            runs.append({**score_sets(samples, refs, options), "sampling_seed": int(s), "generator_seed": seed})
            first = samples if first is None else first
        emd = audit(first, refs, int(suite.emd_audit), str(suite.emd_cost))
        details = generation_details(suite, options, runs, len(refs), ctx.variant, emd)
        details.update(
            sampler=method.sampler_settings(), frame=frame.as_dict(), finetune_epochs=int(suite.finetune_epochs),
            condition=str(suite.condition),
            reference={"split": str(suite.reference_split), "size": len(refs), "points": int(suite.npoints)},
            samples_file=save_figure_clouds(Path(ctx.workdir) / "samples.npz", first, refs,
                                            int(suite.figure_samples)),
        )
        return JobResult(metric_results(metric_names(suite), runs), epochs, details)

"""Protocol ``svm``: linear SVM probing of a frozen encoder (reference/protocols.md 2.7).

Per job (one method x variant x seed):
- encoder: the method's backbone with its pre-training weights (random init, seeded by the job seed, for methods
  without pre-training such as scratch: a legitimate baseline), eval mode, float32, no gradient;
- clouds: train and test splits through the suite's ``transforms.test`` chain (1024 points by FPS, ReCon
  ``cfgs/svm``), no augmentation;
- feature (ReCon ``tools/runner_svm.py``): concat(cls-token output, max + mean over patch tokens), 2C wide (768 for
  ViT-S); for encoders without a cls output, concat(max, mean) over patch tokens (Point-M2AE). Point-MAE's
  pre-training has no cls token, so its cls output comes from the backbone's seeded random cls token;
- classifier: ``sklearn.svm.LinearSVC(C)`` (squared hinge, one-vs-rest, ``dual=True`` as the references' sklearn
  default, ``random_state`` = the job seed), fitted for every C of ``suite.c_grid`` plus the reference C. With
  ``suite.standardize`` (ours; off in the paper setting, as ReCon and Point-M2AE fit raw features) each feature
  dimension is first scaled to zero mean and unit variance over the rows the SVM is fitted on (a sklearn
  ``StandardScaler`` in a pipeline, so the held-out part never informs it). Why it exists: a pre-trained
  transformer's tokens share a large shape-independent component (issue 16: per-dimension spread over shapes 0.1
  of the mean magnitude, against 0.7-1.0 for a random init), which dominates a raw-feature SVM's margin and hides
  the shape information, so raw features rank a random init first on the stand-in.

``epochs``: one row per C (ascending): ``C``, ``val_acc`` (fit on train minus a held-out part, scored on that part)
and ``test_acc`` (fit on all of train, scored on test). ``final``:
- ``last`` (honest): ``test_acc`` of the C with the best ``val_acc`` (ties: the smaller C). The held-out part is
  ``suite.validation`` of each train class (:func:`suites.protocols.toolkit.stratified_split`, split seed = the job
  seed);
- ``best`` (paper): ``test_acc`` at the data set's fixed reference C (``suite.reference_c``, in the suite yaml with
  its source), the published practice;
- ``grid_best``: max over the grid of ``test_acc`` (pure test-set selection); ``c_selected``, ``c_reference``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.api import REPRESENTATION, EncoderOutput, JobContext, Protocol, Requirements
from bench.errors import ConfigError
from bench.registry import PROTOCOLS
from bench.results import HONEST, INFO, PAPER, JobResult, MetricResult, Statistic
from bench.schema import SuiteConfig
from bench.trainer import resolve_device
from suites.protocols.toolkit import (
    CachedSamples,
    chain,
    check_point_budget,
    eval_batch_size,
    job_backbone,
    load_pretrained,
    predict,
    prepared,
    spec_of,
    stratified_split,
)


@dataclass
class ReferenceC:
    """A data set's fixed C in the reference code, and where it comes from."""

    c: float = 0.0
    source: str = ""


@dataclass
class SVMSuite(SuiteConfig):
    """The svm protocol's settings: the references' fixed C per data set, the C grid, the hold-out to choose C."""

    reference_c: dict[str, ReferenceC] = field(default_factory=dict)
    c_grid: list[float] = field(default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
    validation: float = 0.2  # fraction of each train class held out to choose C (honest; bench tune sets it)
    standardize: bool = False  # StandardScaler before the SVM (ours, module docstring); the references: raw


def selection(holdout: float) -> dict[str, str]:
    return {
        "last": f"test accuracy with C chosen on a held-out {holdout:.0%} of train (stratified), refit on all of train",
        "best": "test accuracy with the reference's fixed C for the data set (published practice)",
        "grid_best": "max over the C grid of test accuracy (test-set selection)",
    }


def svm_feature(out: EncoderOutput) -> Tensor:
    """(B, 2C): concat(cls, max + mean over tokens) with a cls output, else concat(max, mean) over tokens."""
    tokens = out.tokens.float()
    peak, mean = tokens.max(dim=1).values, tokens.mean(dim=1)
    if out.cls is None:
        return torch.cat([peak, mean], dim=-1)
    return torch.cat([out.cls.float(), peak + mean], dim=-1)


def encode(backbone: nn.Module, samples: CachedSamples, device: torch.device, batch_size: int) -> np.ndarray:
    """Features (N, 2C) float64 of every sample, in order, in eval mode."""
    features = predict(backbone, samples, device, batch_size, lambda m, b: svm_feature(m(b["xyz"].to(device))))
    return features.double().numpy()


def accuracy(clf: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Overall accuracy in percent."""
    return 100.0 * float(np.mean(clf.predict(x) == y))


def fit(x: np.ndarray, y: np.ndarray, c: float, seed: int, standardize: bool = False) -> tuple[Any, int]:
    """LinearSVC(C=c) fitted on (x, y), after a StandardScaler fitted on the same rows when ``standardize``; also
    the number of ConvergenceWarnings raised (0 or 1). sklearn is imported here, not at module level: every
    command that loads the plug-ins would otherwise pay for it (about 1 s)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=c, dual=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), svm) if standardize else svm
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, y)
    return clf, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], grid: list[float], seed: int,
          holdout: float, standardize: bool = False) -> tuple[list[dict[str, float]], int]:  # fmt: skip
    """One row per C: ``val_acc`` on the held-out part of train, ``test_acc`` after a refit on all of train."""
    (x, y), (tx, ty) = train, test
    kept, held = stratified_split(y, holdout, seed=seed)
    rows, unconverged = [], 0
    for c in grid:
        small, warn_a = fit(x[kept], y[kept], c, seed, standardize)
        full, warn_b = fit(x, y, c, seed, standardize)
        rows.append({"C": c, "val_acc": accuracy(small, x[held], y[held]), "test_acc": accuracy(full, tx, ty)})
        unconverged += warn_a + warn_b
    return rows, unconverged


def summarize(rows: list[dict[str, float]], reference_c: float, holdout: float) -> MetricResult:
    """The ``acc`` result from the per-C rows (definitions in the module docstring)."""
    rules = selection(holdout)
    chosen = max(rows, key=lambda r: (r["val_acc"], -r["C"]))
    (reference,) = [r for r in rows if r["C"] == reference_c]
    stats = {
        "last": Statistic(chosen["test_acc"], rules["last"], HONEST),
        "best": Statistic(reference["test_acc"], rules["best"], PAPER),
        "grid_best": Statistic(max(r["test_acc"] for r in rows), rules["grid_best"], INFO),
        "c_selected": Statistic(chosen["C"], "C with the best held-out accuracy", INFO),
        "c_reference": Statistic(reference_c, "the reference's fixed C", INFO),
        "best_epoch": Statistic(float(rows.index(reference)), "row of the reference C", INFO),
    }
    return MetricResult.of(spec_of("acc"), stats)


@PROTOCOLS.register("svm")
class SVMProbe(Protocol):
    name = "svm"
    requires = Requirements(frozenset({REPRESENTATION}))
    suite_class = SVMSuite

    @classmethod
    def check(cls, suite) -> None:
        check_point_budget(suite)
        if suite.metric != "acc":
            raise ConfigError(f"suite {suite.name}: the svm protocol scores acc, not suite.metric={suite.metric!r}.")
        if suite.dataset not in suite.reference_c:
            raise ConfigError(f'suite "{suite.name}": suite.reference_c has no entry for data set "{suite.dataset}" '
                              f'(it has {", ".join(suite.reference_c) or "none"}); add {{c: ..., source: ...}}.')
        if not 0.0 < suite.validation < 1.0:
            raise ConfigError(f"suite {suite.name}: suite.validation={suite.validation} must lie in (0, 1).")

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        self.check(suite)
        reference = suite.reference_c[suite.dataset]
        specs = chain(suite.transforms.test)
        train, test = prepared(ctx, "train", specs), prepared(ctx, "test", specs)
        backbone, load_report = self.build_encoder(ctx)
        device = resolve_device(ctx.cfg.trainer.device)
        backbone.to(device)
        batch = eval_batch_size(ctx.cfg.trainer)
        xy = [(encode(backbone, s, device, batch), s.labels().numpy()) for s in (train, test)]
        grid = sorted({*suite.c_grid, reference.c})
        rows, unconverged = probe(xy[0], xy[1], grid, ctx.seed, suite.validation, suite.standardize)
        for i, row in enumerate(rows):
            if ctx.on_epoch_end is not None:
                ctx.on_epoch_end(i, row)
        extra = {"checkpoint_load": load_report, "reference_c_source": reference.source,
                 "feature_dim": int(xy[0][0].shape[1]), "convergence_warnings": unconverged}  # fmt: skip
        return JobResult([summarize(rows, reference.c, suite.validation)], rows, extra)

    @staticmethod
    def build_encoder(ctx: JobContext) -> tuple[nn.Module, dict[str, Any] | None]:
        """The frozen backbone: pre-training weights when there are any, else the init drawn from the job seed."""
        torch.manual_seed(ctx.seed)
        backbone = job_backbone(ctx, drop_path=0.0)
        report = load_pretrained(backbone, ctx)
        return backbone.requires_grad_(False), report

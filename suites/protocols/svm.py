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
  default, ``random_state`` = the job seed), fitted for every C of the grid (:data:`C_GRID` plus the reference C).

``epochs``: one row per C (ascending): ``C``, ``val_acc`` (fit on train minus a held-out part, scored on that part)
and ``test_acc`` (fit on all of train, scored on test). ``final``:
- ``last`` (honest): ``test_acc`` of the C with the best ``val_acc`` (ties: the smaller C). The held-out part is
  ``HOLDOUT`` of each train class (:func:`suites.protocols.finetune.stratified_split`, split seed = the job seed);
- ``best`` (paper): ``test_acc`` at the data set's fixed reference C (:data:`REFERENCE_C`), the published practice;
- ``grid_best``: max over the grid of ``test_acc`` (pure test-set selection); ``c_selected``, ``c_reference``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bench.api import EncoderOutput, JobContext, JobResult, Protocol
from bench.errors import ConfigError
from bench.registry import PROTOCOLS
from bench.trainer import resolve_device
from suites.protocols.common import job_backbone, load_pretrained
from suites.protocols.finetune import CachedSamples, Finetune, chain, check_point_budget, stratified_split

#: data set -> (fixed C of the reference, where it comes from)
REFERENCE_C: dict[str, tuple[float, str]] = {
    "modelnet40": (0.075, "ReCon tools/runner_svm.py LinearSVC(C=0.075), ModelNet40"),
    "scanobjectnn": (0.042, "Point-M2AE tools/runner_test_svm.py C=0.042, ScanObjectNN OBJ_BG"),
}
#: C values tried besides the reference one (log-spaced over the range the references use)
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
#: fraction of each train class held out to choose C (honest statistic)
HOLDOUT = 0.2

SELECTION = {
    "last": f"test accuracy with C chosen on a held-out {HOLDOUT:.0%} of train (stratified), refit on all of train",
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


@torch.no_grad()
def encode(backbone: nn.Module, samples: CachedSamples, device: torch.device, batch_size: int = 64) -> np.ndarray:
    """Features (N, 2C) float64 of every sample, in order, in eval mode."""
    backbone.eval()
    loader = DataLoader(samples, batch_size=batch_size, shuffle=False)
    return torch.cat([svm_feature(backbone(b["xyz"].to(device))).cpu() for b in loader]).double().numpy()


def accuracy(clf: LinearSVC, x: np.ndarray, y: np.ndarray) -> float:
    """Overall accuracy in percent."""
    return 100.0 * float(np.mean(clf.predict(x) == y))


def fit(x: np.ndarray, y: np.ndarray, c: float, seed: int) -> tuple[LinearSVC, int]:
    """LinearSVC(C=c) fitted on (x, y); also the number of ConvergenceWarnings raised (0 or 1)."""
    clf = LinearSVC(C=c, dual=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x, y)
    return clf, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def probe(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], grid: list[float], seed: int,
          ) -> tuple[list[dict[str, float]], int]:  # fmt: skip
    """One row per C: ``val_acc`` on the held-out part of train, ``test_acc`` after a refit on all of train."""
    (x, y), (tx, ty) = train, test
    kept, held = stratified_split(y, HOLDOUT, seed=seed)
    rows, unconverged = [], 0
    for c in grid:
        small, warn_a = fit(x[kept], y[kept], c, seed)
        full, warn_b = fit(x, y, c, seed)
        rows.append({"C": c, "val_acc": accuracy(small, x[held], y[held]), "test_acc": accuracy(full, tx, ty)})
        unconverged += warn_a + warn_b
    return rows, unconverged


def summarize(rows: list[dict[str, float]], reference_c: float) -> dict[str, float]:
    """``final`` from the per-C rows (definitions in the module docstring)."""
    chosen = max(rows, key=lambda r: (r["val_acc"], -r["C"]))
    (reference,) = [r for r in rows if r["C"] == reference_c]
    return {
        "last": chosen["test_acc"],
        "best": reference["test_acc"],
        "grid_best": max(r["test_acc"] for r in rows),
        "c_selected": chosen["C"],
        "c_reference": reference_c,
        "best_epoch": float(rows.index(reference)),
    }


@PROTOCOLS.register("svm")
class SVMProbe(Protocol):
    name = "svm"

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        check_point_budget(suite)
        if suite.dataset not in REFERENCE_C:
            raise ConfigError(f'suite "{suite.name}": the svm protocol has no reference C for data set '
                              f'"{suite.dataset}" (known: {", ".join(REFERENCE_C)}).')  # fmt: skip
        reference_c, source = REFERENCE_C[suite.dataset]
        specs = chain(suite.transforms.test)
        train, test = Finetune.prepared(ctx, "train", specs), Finetune.prepared(ctx, "test", specs)
        backbone, load_report = self.build_encoder(ctx)
        device = resolve_device(ctx.cfg.trainer.device)
        backbone.to(device)
        xy = [(encode(backbone, s, device), s.labels().numpy()) for s in (train, test)]
        grid = sorted({*C_GRID, reference_c})
        rows, unconverged = probe(xy[0], xy[1], grid, ctx.seed)
        for i, row in enumerate(rows):
            if ctx.on_epoch_end is not None:
                ctx.on_epoch_end(i, row)
        extra = {"checkpoint_load": load_report, "reference_c_source": source, "feature_dim": int(xy[0][0].shape[1]),
                 "convergence_warnings": unconverged}  # fmt: skip
        return JobResult("acc", True, rows, summarize(rows, reference_c), dict(SELECTION), extra)

    @staticmethod
    def build_encoder(ctx: JobContext) -> tuple[nn.Module, dict[str, Any] | None]:
        """The frozen backbone: pre-training weights when there are any, else the init drawn from the job seed."""
        torch.manual_seed(ctx.seed)
        backbone = job_backbone(ctx, drop_path=0.0)
        report = load_pretrained(backbone, ctx)
        return backbone.requires_grad_(False), report

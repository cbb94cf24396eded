"""The stand-in carries the demo's signal (issue 16): its classes are told apart by structure, not by the global
statistics any random feature reads off, and its unlabelled pre-training set outnumbers the labelled sets.

Margins, measured on the demo stand-in (seed 0) with the commands in the issue-16 closing note:

- global statistics: a logistic regression on bounding-box extents and covariance eigenvalues (:func:`linear_accuracy`)
  reaches 44% on objonly and 48% on ModelNet40 (stand-in seed 1: 50% / 60%; chance 6.7% / 8.3%), where it reached
  88% / 94% before issue 16 (the limits 60% / 70% sit between); what is left is the spread of the mass inside the
  common box (thin legs or a solid block), i.e. structure;
- unlabelled : labelled = 1800 ShapeNet-55 train shapes : 150 ScanObjectNN train shapes (12x; the real sets 18x);
- the slow checks (marked ``slow``, run in CI): see their docstrings. The ranking of the methods across two stand-in
  seeds is measured in the issue-16 note only (the main command on stand-in seeds 0 and 1): a CI check of it would
  pre-train every method twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.data.base import build_dataset
from bench.data.synthetic import SIZES, write_standin
from bench.registry import load_plugins


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo-size ScanObjectNN and ModelNet40 stand-ins (seed 0), a few seconds to write."""
    root = tmp_path_factory.mktemp("demo") / "synthetic"
    write_standin(root, ["scanobjectnn", "modelnet40"], size="demo", seed=0)
    return root


def global_statistics(xyz: np.ndarray) -> np.ndarray:
    """Bounding-box extents (per axis and sorted) and covariance eigenvalues (raw and as shares): what a random
    network reads off a cloud's overall shape and size."""
    extents = np.ptp(xyz, axis=0)
    eigen = np.linalg.eigvalsh(np.cov((xyz - xyz.mean(0)).T))
    return np.concatenate([extents, np.sort(extents), eigen, eigen / eigen.sum()])


def linear_accuracy(root: Path, dataset: str, variant: str | None) -> float:
    """Test accuracy of a logistic regression on standardised :func:`global_statistics` of the train split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    load_plugins()
    train, test = (build_dataset(dataset, root, split, variant) for split in ("train", "test"))
    x_train, x_test = (np.stack([global_statistics(d.load(i)["xyz"]) for i in range(len(d))]) for d in (train, test))
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(max_iter=3000).fit(scaler.transform(x_train), np.asarray(train.labels))
    return float(np.mean(model.predict(scaler.transform(x_test)) == np.asarray(test.labels)))


@pytest.mark.parametrize(("dataset", "variant", "limit"), [("scanobjectnn", "objonly", 0.60),
                                                          ("modelnet40", None, 0.70)])  # fmt: skip
def test_global_statistics_do_not_tell_the_classes_apart(demo_root: Path, dataset: str, variant: str | None,
                                                         limit: float) -> None:  # fmt: skip
    accuracy = linear_accuracy(demo_root, dataset, variant)
    assert accuracy < limit, f"{dataset}: global statistics alone reach {accuracy:.2f} (limit {limit})"


def test_unlabelled_shapes_outnumber_the_labelled_ones() -> None:
    demo = SIZES["demo"]
    pretraining = demo.shapenet55[0] * len(demo.shapenet55_synsets)
    labelled = demo.scanobjectnn[0] * 15
    assert pretraining >= 10 * labelled, (pretraining, labelled)


def honest_by_cell(out: Path) -> dict[tuple[str, str], np.ndarray]:
    """(method, variant) -> the honest statistic of each seed's record below ``out``, in record order."""
    from bench.records import load_records

    honest: dict[tuple[str, str], list[float]] = {}
    for record in load_records(out / "records"):
        _, variant, method, _ = record.job_id.split("/")
        honest.setdefault((method, variant), []).append(record.results[0].value("honest"))
    return {key: np.array(values) for key, values in honest.items()}


def assert_beats_beyond_the_seed_std(honest: dict, method: str, baseline: str, variant: str, seeds: int = 3) -> float:
    """The issue's test of one cell: mean(method) - mean(baseline) > the larger sample std; returns the gap."""
    ours, base = honest[(method, variant)], honest[(baseline, variant)]
    assert len(ours) == len(base) == seeds, honest
    gap, spread = ours.mean() - base.mean(), max(ours.std(ddof=1), base.std(ddof=1))
    assert gap > spread, (variant, method, ours, baseline, base)
    return float(gap)


@pytest.mark.slow
def test_pretrained_point_mae_features_beat_random_ones_under_the_svm_suite(tmp_path: Path) -> None:
    """``bench run suite=svm method=point_mae,scratch`` with the demo profile (3 seeds, the demo's standardised
    LinearSVC, C chosen on held-out train data): Point-MAE's pre-trained features against the same encoder at its
    random init (scratch), both frozen. Measured (issue-16 note, honest mean +- std): ModelNet40 97.92 +- 2.08 vs
    93.06 +- 2.41, objbg 35.56 +- 0.48 vs 23.33 +- 1.44. With raw features (the references' practice,
    ``suite.standardize=false``) the random init ranked first on ModelNet40 (92.36 vs 88.19, Point-MAE pre-trained
    10 epochs): the pre-trained tokens share a large shape-independent component that dominates an unscaled SVM."""
    out = tmp_path / "runs"
    code = main_run(["suite=svm", "method=point_mae,scratch", "data.standin_size=demo",
                     f"data.root={tmp_path / 'data'}", f"output.dir={out}"])  # fmt: skip
    assert code == 0
    honest = honest_by_cell(out)
    assert_beats_beyond_the_seed_std(honest, "point_mae", "scratch", "modelnet40")
    assert assert_beats_beyond_the_seed_std(honest, "point_mae", "scratch", "objbg") >= 8.0


@pytest.mark.slow
def test_a_pretrained_method_beats_scratch_on_every_variant_beyond_the_seed_std(tmp_path: Path) -> None:
    """The demo's signal, as the issue states it: on each ScanObjectNN variant a pre-trained method (MMPD, demo
    pre-training and fine-tuning) beats scratch under the honest statistic by more than the larger seed std. These
    are exactly the main command's MMPD and scratch jobs (3 seeds, stand-in seed 0, two one-thread workers), so the
    same numbers: measured from a fresh clone (issue-16 note), honest mean +- std,

    ========  =============  =============  ======
    variant   MMPD           scratch        gap
    ========  =============  =============  ======
    objbg     55.56 +- 5.02  31.11 +- 3.94  +24.44
    objonly   90.83 +- 2.20  86.94 +- 2.68  +3.89
    hardest   37.78 +- 4.11  21.67 +- 3.00  +16.11
    ========  =============  =============  ======

    objonly is the thin one (1.2 points above the std): with 6 distillation epochs MMPD reached 80.28 there, with
    18 (the demo's now) 90.83. Slow: MMPD's two pre-training stages (~100 s on 2 idle cores) and 18 jobs (~110 s)."""
    out = tmp_path / "runs"
    code = main_run(["suite=scanobjectnn", "method=mmpd,scratch", "data.standin_size=demo",
                     f"data.root={tmp_path / 'data'}", f"output.dir={out}"])  # fmt: skip
    assert code == 0
    honest = honest_by_cell(out)
    for variant in ("objbg", "objonly", "hardest"):
        assert_beats_beyond_the_seed_std(honest, "mmpd", "scratch", variant)


def main_run(args: list[str]) -> int:
    """``bench --quiet run <args>`` without tracking, two workers of one thread (the demo's executor)."""
    from bench.cli import main

    return main(["--quiet", "run", *args, "tracking.enabled=false", "executor.workers=2"])

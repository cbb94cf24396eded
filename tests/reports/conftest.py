"""Shared helpers for the report tests: hand-built, valid RunRecords."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.records import RunRecord


def build_record(
    method: str = "point_mae",
    suite: str = "scanobjectnn",
    variant: str = "objbg",
    seed: int = 0,
    last: float = 80.0,
    best: float = 85.0,
    **overrides: Any,
) -> RunRecord:
    """A valid RunRecord with a two-epoch history, written in the schema-1 layout (``final``, ``selection``,
    ``higher_is_better``) and read as any record is (:meth:`RunRecord.from_dict` upgrades it to typed results);
    ``overrides`` set any other field, ``extra_final`` adds to final."""
    final: dict[str, float] = {"last": last, "best": best, "best_epoch": 1}
    final.update(overrides.pop("extra_final", {}))
    fields: dict[str, Any] = {
        "job_id": f"{suite}/{variant}/{method}/seed{seed}",
        "sweep_id": "sweep-test",
        "method": method,
        "suite": suite,
        "suite_version": 1,
        "variant": variant,
        "seed": seed,
        "protocol": "finetune",
        "data_kind": "real",
        "profile": "paper",
        "recipe": "method",
        "metric": "acc",
        "higher_is_better": True,
        "epochs": [{"epoch": 0, "test_acc": best}, {"epoch": 1, "test_acc": last}],
        "final": final,
        "selection": {"best": "max over epochs on test", "last": "last epoch"},
        "config": {"seed": seed},
        "env": {"git_commit": "abc1234", "torch": "2.4.0", "cuda": None, "ops_backend": "torch", "device": "cpu"},
        "wall_time_s": 12.5,
        "config_hash": "cfg0001abc",
        "created": "2025-01-01T00:00:00",
    }
    fields.update(overrides)
    return RunRecord.from_dict(fields)


@pytest.fixture
def make_record() -> Callable[..., RunRecord]:
    """The :func:`build_record` factory."""
    return build_record


@pytest.fixture
def three_seeds() -> list[RunRecord]:
    """Seeds 0, 1, 2 with last 80, 82, 84 and best 85, 86, 90: paper 90 (seed 2), honest 82.00 ± 2.00."""
    return [build_record(seed=s, last=last, best=best) for s, last, best in [(0, 80, 85), (1, 82, 86), (2, 84, 90)]]


def curve_rows(metric: str, last: float, best: float, epochs: int = 12, seed: int = 0) -> list[dict[str, float]]:
    """Epoch rows rising towards ``best`` (reached at epoch ``epochs - 3``) and ending at ``last``."""
    peak = epochs - 3
    rows = []
    for epoch in range(epochs):
        if epoch < peak:
            value = best - (best - 40.0) * (1 - epoch / peak) ** 2 - 0.5 * ((epoch + seed) % 2)
        else:
            value = best if epoch == peak else last + (best - last) * (epochs - 1 - epoch) / (epochs - peak)
        rows.append({"epoch": epoch, f"test_{metric}": min(value, best), "train_loss": 2.0 / (1 + epoch)})
    rows[-1][f"test_{metric}"] = last
    return rows


def report_config(columns: str = "variants", metrics: tuple[str, ...] = (), paper_statistic: str = "max") -> dict:
    """A resolved-config fragment carrying ``suite.report`` (as the runner stores it in record.config)."""
    return {"suite": {"report": {"columns": columns, "metrics": list(metrics), "paper_statistic": paper_statistic}}}


def fewshot_records(method: str = "point_mae", variant: str = "5w10s", folds: int = 10, base: float = 95.0,
                    **overrides: Any) -> list[RunRecord]:
    """One record per fold (the seed field) of a fold-mean suite: best = base + fold % 4, last = best - 1."""
    cfg = report_config(paper_statistic="fold_mean")
    return [build_record(method=method, suite="fewshot", variant=variant, seed=f, best=base + f % 4,
                         last=base + f % 4 - 1, config=cfg, epochs=curve_rows("acc", base + f % 4 - 1, base + f % 4,
                                                                              seed=f), **overrides)
            for f in range(folds)]


def metric_records(suite: str, variant: str, metrics: dict[str, tuple[float, float]], method: str = "point_mae",
                   seeds: tuple[int, ...] = (0, 1), **overrides: Any) -> list[RunRecord]:
    """Records of a ``columns: metrics`` suite; ``metrics`` maps name -> (last, best) of seed 0 (seed s adds s);
    the first name is the headline."""
    names = list(metrics)
    cfg = report_config("metrics", tuple(names))
    records = []
    for seed in seeds:
        extra = {f"{n}_{k}": v + seed for n, (last, best) in metrics.items() for k, v in (("last", last),
                                                                                        ("best", best))}
        last, best = metrics[names[0]]
        records.append(build_record(method=method, suite=suite, variant=variant, seed=seed, last=last + seed,
                                    best=best + seed, metric=names[0], extra_final=extra, config=cfg,
                                    epochs=curve_rows(names[0], last + seed, best + seed, seed=seed), **overrides))
    return records


@pytest.fixture
def fewshot() -> Callable[..., list[RunRecord]]:
    """The :func:`fewshot_records` factory."""
    return fewshot_records


@pytest.fixture
def by_metric() -> Callable[..., list[RunRecord]]:
    """The :func:`metric_records` factory."""
    return metric_records


@pytest.fixture
def with_report() -> Callable[..., dict]:
    """The :func:`report_config` factory."""
    return report_config


COMMAND = "bench run suite=scanobjectnn method=point_mae,scratch,point_pqae"


def realistic_set() -> list[RunRecord]:
    """A report's worth of records: ScanObjectNN (3 methods x 3 variants x 3 seeds, 30-epoch curves, commands),
    ModelNet40 with votes, few-shot (2 methods x 4 variants x 10 folds), ShapeNetPart and S3DIS (metric columns)
    and a synthetic ScanObjectNN row."""
    records = []
    for method, offset in (("point_mae", 0.0), ("scratch", -6.0), ("point_pqae", 3.5)):
        for variant, base in (("objbg", 89.0), ("objonly", 87.5), ("hardest", 84.0)):
            for seed in range(3):
                best = base + offset + 0.6 * seed
                last = best - 1.2 + 0.3 * seed
                config = {"seed": seed, "suite": {"name": "scanobjectnn", "vote": {"times": 10}},
                          "trainer": {"epochs": 300, "lr": 5e-4}}
                records.append(build_record(method=method, variant=variant, seed=seed, best=best, last=last,
                                            command=f"{COMMAND} seeds=[{seed}]", config=config,
                                            epochs=curve_rows("acc", last, best, epochs=30, seed=seed)))
    vote = {"vote": 93.4, "vote_best_of_r": 93.9, "vote_repeats": 299}
    records += [build_record(suite="modelnet40", variant="1k", seed=s, best=93.0 + 0.3 * s, last=92.4, extra_final=vote,
                             epochs=curve_rows("acc", 92.4, 93.0 + 0.3 * s, epochs=30, seed=s)) for s in range(2)]
    for variant, base in (("5w10s", 95.0), ("5w20s", 96.5), ("10w10s", 91.0), ("10w20s", 93.5)):
        records += fewshot_records("point_mae", variant, base=base) + fewshot_records("scratch", variant, base=base - 4)
    partseg = {"inst_miou": (85.6, 86.0), "cls_miou": (83.9, 84.3)}
    records += metric_records("shapenetpart", "default", partseg)
    records += metric_records("shapenetpart", "default", {k: (a - 0.7, b - 0.8) for k, (a, b) in partseg.items()},
                              method="scratch")
    records += metric_records("s3dis", "area5", {"miou": (58.9, 60.1), "macc": (68.0, 69.2), "oa": (88.5, 89.1)},
                              method="point_pqae")
    records += [build_record(seed=s, data_kind="synthetic", profile="demo", last=40.0 + s, best=45.0 + s,
                             epochs=curve_rows("acc", 40.0 + s, 45.0 + s, epochs=8, seed=s)) for s in range(2)]
    return records


def tuning_summary() -> dict[str, Any]:
    """A tuning summary.json in the documented schema (reports.sources): 8 trials, trial 3 pruned, 84.0 vs 81.5."""
    trials = [{"number": i, "state": "PRUNED" if i == 3 else "COMPLETE", "value": None if i == 3 else 80.0 + i * 7 % 5,
               "params": {"lr": round(1e-4 * (i + 1), 6), "weight_decay": 0.05}} for i in range(8)]
    return {"study": "scanobjectnn-point_mae-lr", "suite": "scanobjectnn", "method": "point_mae",
            "direction": "maximize", "metric": "val_acc", "best_params": {"lr": 0.0003, "weight_decay": 0.05},
            "best_value": 84.0, "default_value": 81.5, "trials": trials}


@pytest.fixture(scope="session")
def realistic() -> list[RunRecord]:
    """:func:`realistic_set`, built once."""
    return realistic_set()


@pytest.fixture(scope="session")
def tuning_raw() -> Callable[[], dict[str, Any]]:
    """The :func:`tuning_summary` factory (a fresh dict per call)."""
    return tuning_summary

"""Generation scores: what the generation protocol and ``bench score generation`` share.

Reference set (:func:`reference_clouds`): the ``reference_split`` (``val``: what PointFlow / PVD / LION call "test")
of a shapenet15k variant; with ``reference_size`` k > 0 the first k clouds after a ``default_rng(0)`` shuffle, else
(or when k exceeds the split) the whole split. Each cloud is reduced to N points by
:func:`bench.data.shapenet15k.subsample` with its own ``default_rng([0, index])`` (a cloud's points do not depend on
k), and is in raw units (``global``) or box-normalised after the subset (``box``, LION Table 2). The sample set
always has the reference set's size.

Results (:func:`metric_results`): one :class:`~bench.results.MetricResult` per name, headline first; statistics
over the sampling runs: ``mean`` (honest), ``single`` (paper: the first run alone, as PointFlow / LION report one)
and ``std`` (info: sample std, ddof=1; 0 for one run).

``bench score generation`` (:mod:`bench.score_command`) scores samples from any model with the same helpers.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from bench.errors import ConfigError, DataError
from bench.metrics import generation as gen
from bench.registry import METRICS
from bench.results import HONEST, INFO, PAPER, MetricResult, Statistic

#: the registered generation metrics a suite may report
GENERATION_METRICS = ("nna_cd", "nna_emd", "cov_cd", "cov_emd", "mmd_cd", "mmd_emd")
SUITE_OF = {"global": "generation", "box": "generation_box"}


# --- shared with the protocol ------------------------------------------------------------------------------------
def distance_options(suite: Any, device: str = "cpu"):
    """The suite's :class:`~bench.metrics.generation.DistanceOptions`, checked (ConfigError naming the key)."""
    options = gen.DistanceOptions(emd_cost=str(suite.emd_cost), emd_method=str(suite.emd_method),
                                  chunk_mb=int(suite.chunk_mb), device=str(device))
    try:
        options.check()
    except ValueError as err:  # its message starts with the field's name
        raise ConfigError(f"suite.{err}") from None
    return options


def finite_clouds(clouds: np.ndarray, what: str) -> np.ndarray:
    """``clouds`` (n, N, 3) as float32; DataError naming ``what`` for another shape or non-finite values."""
    arr = np.asarray(clouds)
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{what}: expected a numeric (n, N, 3) array, got dtype {arr.dtype}.")
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{what}: expected an (n, N, 3) array of n >= 1 clouds, got shape {arr.shape}.")
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if bad.any():
        raise DataError(f"{what}: {int(bad.sum())} of {len(arr)} clouds hold NaN or inf values (the first is cloud "
                        f"{int(np.flatnonzero(bad)[0])}).")
    return arr.astype(np.float32, copy=False)


def reference_order(n: int, size: int) -> np.ndarray:
    """Indices of the reference clouds: all ``n`` in order when ``size`` is 0 or at least n, else the first ``size``
    of a seed-0 shuffle (the record's ``reference.size`` says how many were used)."""
    if size <= 0 or size >= n:
        return np.arange(n)
    return np.random.default_rng(0).permutation(n)[:size]


def reference_clouds(dataset: Any, npoints: int, size: int, normalisation: str) -> tuple[np.ndarray, list[str]]:
    """The reference set (n, npoints, 3) in the metric frame and its sample ids (see the module docstring)."""
    from bench.data.shapenet15k import normalize_box, subsample

    clouds, ids = [], []
    for index in reference_order(len(dataset), size):
        sample = dataset.load(int(index))
        if len(sample["xyz"]) < npoints:
            raise DataError(f"reference cloud {sample['id']} has {len(sample['xyz'])} points, fewer than the "
                            f"{npoints} to score at: lower the point count.")
        clouds.append(subsample(sample["xyz"], npoints, np.random.default_rng([0, int(index)])))
        ids.append(str(sample["id"]))
    refs = np.stack(clouds).astype(np.float32)
    return (normalize_box(refs) if normalisation == "box" else refs), ids


def score_sets(samples: np.ndarray, refs: np.ndarray, options) -> dict[str, float]:
    """MMD / COV / 1-NNA (and 1-NNA's acc_t / acc_f) of one sample set against the references, as floats."""
    scores = gen.compute_all_metrics(torch.from_numpy(np.ascontiguousarray(samples)),
                                     torch.from_numpy(np.ascontiguousarray(refs)), options)
    return {key: float(value) for key, value in scores.as_dict().items()}


def audit(samples: np.ndarray, refs: np.ndarray, k: int, cost: str) -> dict[str, Any] | None:
    """``k`` sample/reference pairs re-scored with the exact EMD (approx/exact ratio); None when k is 0."""
    if k <= 0:
        return None
    found = gen.emd_audit(torch.from_numpy(np.ascontiguousarray(samples)), torch.from_numpy(np.ascontiguousarray(refs)),
                          k, cost, torch.Generator().manual_seed(0))
    return found.as_dict()


def noise_floor(n: int, variant: str) -> tuple[float, str]:
    """1-NNA's noise floor (points) for ``n`` references and the note the leaderboard shows under the table."""
    floor = float(gen.nna_noise_floor(n))
    return floor, f"1-NNA noise floor ±{floor:.1f} points at n={n} ({variant}): the binomial sd of one sampling run."


def metric_names(suite: Any) -> list[str]:
    """The reported metric names: the headline (``suite.metric``), then ``suite.report.metrics`` in order."""
    return list(dict.fromkeys([str(suite.metric), *[str(m) for m in suite.report.metrics]]))


def metric_results(names: list[str], runs: list[dict[str, float]],
                   paper_note: str = "one sampling run, as PointFlow/LION report") -> list[MetricResult]:
    """One result per name over the sampling ``runs`` (mean honest, first run paper, std info); ``paper_note``
    says whose convention the single run follows."""
    n = len(runs)
    plural = "" if n == 1 else "s"
    results = []
    for name in names:
        values = [run[name] for run in runs]
        spread = statistics.stdev(values) if n > 1 else 0.0
        stats = {
            "mean": Statistic(statistics.fmean(values), f"mean over {n} sampling seed{plural}", HONEST),
            "single": Statistic(values[0], paper_note, PAPER),
            "std": Statistic(spread, f"sample std over {n} sampling seed{plural} (ddof=1; 0 for one)", INFO),
        }
        results.append(MetricResult.of(METRICS.get(name).spec(), stats, name=name))
    return results


def nna_parts(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean over runs of 1-NNA's accuracy on the references (acc_t) and on the samples (acc_f), per distance."""
    out = {}
    for name in ("nna_cd", "nna_emd"):
        if all(f"{name}_t" in run for run in runs):
            out[name] = {part: statistics.fmean(run[f"{name}_{suffix}"] for run in runs)
                         for part, suffix in (("acc_t", "t"), ("acc_f", "f"))}
    return out


def generation_details(suite: Any, options: Any, runs: list[dict[str, float]], n_ref: int, variant: str,
                       emd: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """What every generation record's details hold: normalisation, distance options, noise floor, 1-NNA parts."""
    floor, line = noise_floor(n_ref, variant)
    details = {"normalisation": str(suite.normalisation), "distance": asdict(options), "noise_floor_nna": floor,
               "table_notes": [line], "nna": nna_parts(runs), "runs": runs}
    if emd is not None:
        details["emd_audit"] = emd
    return details

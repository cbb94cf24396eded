"""Unconditional-generation metrics (PointFlow -> PVD -> LION protocol): MMD, COV and 1-NNA under CD and EMD.

Re-implemented from the definitions in PointFlow ``metrics/evaluation_metrics.py`` (``compute_all_metrics``,
``_pairwise_EMD_CD_``, ``lgan_mmd_cov``, ``knn``; stevenygd/PointFlow, MIT licence). JSD is not included.

S = generated samples, R = references (|S| == |R|), every cloud ``(N, 3)`` with the same N.

- CD(X, Y) = mean_x min_y |x - y|^2 + mean_y min_x |x - y|^2: squared distances, the sum of the two means, no 1/2
  (PointFlow ``distChamfer``; :func:`extensions.ops.chamfer_per_cloud`). Nearest neighbours come from
  :func:`extensions.ops.chamfer_distance` in float32 (exact differences), the means are taken in float64.
- EMD(X, Y) = mean_i cost(x_i, y_pi(i)) for the matching of :func:`extensions.emd.earth_movers_distance`.
  ``emd_cost="sqeuclidean"`` (|x - y|^2: PyTorchEMD, as in the PVD and LION tables; the default) or ``"euclidean"``
  (|x - y|: PointFlow's own table). The two give MMD-EMD about 10x apart and 1-NNA-EMD several points apart, so
  always log which one was used. ``emd_method="approx"`` is PSGN approxmatch (an upper bound, float32);
  ``"exact"`` is the Hungarian assignment (scipy, float64, about 1 s per 2048-point pair on the CPU).
- Matrices: M_rs[i, j] = D(r_i, s_j) (reference first, as PointFlow's ``_pairwise_EMD_CD_(ref, sample)``),
  M_rr[i, j] = D(r_i, r_j), M_ss[i, j] = D(s_i, s_j).
- MMD = (1/|R|) sum_r min_s M_rs[r, s]: raw distance (``mmd_cd`` is displayed x10^3, ``mmd_emd`` x10^2).
- COV = 100 * |{argmin_r M_rs[r, s] : s in S}| / |R|, in percent.
- 1-NNA = leave-one-out 1-NN accuracy on R u S, labels reference = 1 and sample = 0, over the joint matrix
  M = [[M_rr, M_rs], [M_rs^T, M_ss]] with +inf on the diagonal. The nearest neighbour of cloud j is the argmin over
  the rows of column j (PointFlow ``topk(k=1, dim=0, largest=False)``), the prediction is its label. In percent,
  ideal 50; ``acc_t`` is the accuracy on the references, ``acc_f`` on the samples.
- Ties: the lowest index wins everywhere (``torch.argmin`` returns the first minimum; PointFlow's ``topk`` and
  ``min`` leave ties unspecified). In 1-NNA the references come first, so a sample and a reference at the same
  distance make the prediction "reference".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bench.metrics.base import MAX, MIN, Direction, Metric
from bench.registry import METRICS
from extensions import ops
from extensions.emd import earth_movers_distance

EMD_COSTS = ("sqeuclidean", "euclidean")  # LION/PVD use the squared cost; PointFlow's own table the Euclidean one
EMD_METHODS = ("approx", "exact")
DISTANCES = ("cd", "emd")
_ENTRY_BYTES = 4  # one float32 entry of a block's (pairs, N, N') distance tensor


def _one_of(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class DistanceOptions:
    """How the pairwise distances are computed (the EMD cost and method are part of the result: log them)."""

    emd_cost: str = "sqeuclidean"
    emd_method: str = "approx"
    chunk_mb: int = 256  # memory bound (MiB) of one block's (pairs, N, N') float32 distance tensor
    device: str = "cpu"  # where the pairwise blocks are computed

    def check(self) -> None:
        """ValueError naming the bad field and the allowed values."""
        _one_of("emd_cost", self.emd_cost, EMD_COSTS)
        _one_of("emd_method", self.emd_method, EMD_METHODS)
        if isinstance(self.chunk_mb, bool) or not isinstance(self.chunk_mb, int) or self.chunk_mb < 1:
            raise ValueError(f"chunk_mb must be a positive integer (MiB); got {self.chunk_mb!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0'; got {self.device!r}") from exc


DEFAULT_OPTIONS = DistanceOptions()


# --- input checks ------------------------------------------------------------------------------------------------
def _check_clouds(name: str, x: object) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a tensor of point clouds (n, N, 3); got {type(x).__name__}")
    if x.dim() != 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be point clouds of shape (n, N, 3); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: no clouds")
    if x.shape[1] == 0:
        raise ValueError(f"{name} clouds have no points: shape {tuple(x.shape)}")
    bad = ~torch.isfinite(x).all(dim=2).all(dim=1) if x.is_floating_point() else torch.zeros(0, dtype=torch.bool)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        count = int(bad.sum())
        raise ValueError(f"{name} has non-finite values (NaN or inf) in {count} cloud(s), first at index {first}")


def _check_pair(a: Tensor, b: Tensor, same_points: bool) -> None:
    _check_clouds("a", a)
    _check_clouds("b", b)
    if same_points and a.shape[1] != b.shape[1]:
        raise ValueError(f"EMD needs the same number of points in every cloud; got {a.shape[1]} and {b.shape[1]}")


def _check_sets(samples: Tensor, refs: Tensor, equal_sizes: bool = True) -> None:
    _check_clouds("samples", samples)
    _check_clouds("refs", refs)
    if samples.shape[1] != refs.shape[1]:
        raise ValueError(
            f"samples and refs must have the same number of points per cloud; got {samples.shape[1]} "
            f"(samples) and {refs.shape[1]} (refs): subsample the larger ones first"
        )
    if equal_sizes and samples.shape[0] != refs.shape[0]:
        raise ValueError(
            f"samples and refs must be sets of the same size (1-NNA's ideal of 50% needs it); got "
            f"{samples.shape[0]} samples and {refs.shape[0]} refs"
        )


# --- pairwise distance matrices ----------------------------------------------------------------------------------
def _pairs_per_block(points_a: int, points_b: int, chunk_mb: int) -> int:
    return max(1, (int(chunk_mb) << 20) // (_ENTRY_BYTES * points_a * points_b))


def _blocked(a: Tensor, b: Tensor | None, pair_fn: Callable[[Tensor, Tensor], Tensor], chunk_mb: int,
             device: str) -> Tensor:  # fmt: skip
    """(n, m) float64 matrix of ``pair_fn`` over the pairs (a_i, b_j), a block of pairs at a time on ``device``.

    ``b is None``: a against itself, only the strict upper triangle is computed and mirrored (diagonal 0)."""
    dev = torch.device(device)
    a_dev = a.to(dev)
    b_dev = a_dev if b is None else b.to(dev)
    n, m = a.shape[0], b_dev.shape[0]
    if b is None:
        rows, cols = torch.triu_indices(n, n, offset=1)
    else:
        rows, cols = torch.arange(n).repeat_interleave(m), torch.arange(m).repeat(n)
    step = _pairs_per_block(a.shape[1], b_dev.shape[1], chunk_mb)
    out = torch.zeros(n, m, dtype=torch.float64)
    for start in range(0, rows.numel(), step):
        r, c = rows[start : start + step], cols[start : start + step]
        values = pair_fn(a_dev[r.to(dev)], b_dev[c.to(dev)]).to("cpu", torch.float64)
        out[r, c] = values
        if b is None:
            out[c, r] = values
    return out


def _cd_pairs(x: Tensor, y: Tensor) -> Tensor:
    d_xy, d_yx = ops.chamfer_distance(x, y)
    return d_xy.double().mean(1) + d_yx.double().mean(1)


@torch.no_grad()
def pairwise_cd(a: Tensor, b: Tensor, chunk_mb: int = 256, device: str | torch.device = "cpu") -> Tensor:
    """(n, N, 3), (m, N', 3) -> (n, m) float64; entry [i, j] = CD(a_i, b_j).

    PointFlow CD: per pair mean_x min_y |x-y|^2 + mean_y min_x |x-y|^2 (squared, sum of the two means, no 1/2).
    Nearest neighbours by :func:`extensions.ops.chamfer_distance` (compiled backend when built, else the reference)
    in float32, means in float64. Chunked over pairs so a block's (pairs, N, N') float32 distance tensor stays under
    ``chunk_mb`` (the compiled backends never materialise it; the reference does and is ~100x slower on the CPU, so
    build the ops first: ``python -m extensions.build``). ``pairwise_cd(a, a)`` (the same tensor) computes the upper
    triangle only and mirrors it: CD is symmetric and its diagonal is 0."""
    _check_pair(a, b, same_points=False)
    a32 = a.detach().float()
    return _blocked(a32, None if b is a else b.detach().float(), _cd_pairs, chunk_mb, device)


@torch.no_grad()
def pairwise_emd(a: Tensor, b: Tensor, cost: str = "sqeuclidean", method: str = "approx", chunk_mb: int = 256,
                 device: str | torch.device = "cpu") -> Tensor:  # fmt: skip
    """(n, N, 3), (m, N, 3) -> (n, m) float64; entry [i, j] = EMD(a_i, b_j) (a_i is the first argument, which
    matters for the asymmetric approximation: every pair is computed, no mirroring).

    :func:`extensions.emd.earth_movers_distance` on blocks of pairs: ``cost`` ``"sqeuclidean"`` | ``"euclidean"``,
    ``method`` ``"approx"`` (float32) | ``"exact"`` (float64, scipy on the CPU). Needs N == N'. ``chunk_mb`` bounds a
    block's (pairs, N, N) float32 tensor; the approximation holds a few such temporaries."""
    _one_of("cost", cost, EMD_COSTS)
    _one_of("method", method, EMD_METHODS)
    _check_pair(a, b, same_points=True)
    dtype = torch.float64 if method == "exact" else torch.float32

    def pair_fn(x: Tensor, y: Tensor) -> Tensor:
        return earth_movers_distance(x, y, cost, method)

    return _blocked(a.detach().to(dtype), b.detach().to(dtype), pair_fn, chunk_mb, device)


@dataclass
class DistanceMatrices:
    """M_rs (refs x samples), M_rr (refs x refs), M_ss (samples x samples) for one distance, float64."""

    rs: Tensor
    rr: Tensor
    ss: Tensor


def _matrix(a: Tensor, b: Tensor, distance: str, options: DistanceOptions) -> Tensor:
    if distance == "cd":
        return pairwise_cd(a, b, options.chunk_mb, options.device)
    return pairwise_emd(a, b, options.emd_cost, options.emd_method, options.chunk_mb, options.device)


def distance_matrices(samples: Tensor, refs: Tensor, distance: str,
                      options: DistanceOptions = DEFAULT_OPTIONS) -> DistanceMatrices:  # fmt: skip
    """The three matrices of ``distance`` (``"cd"`` or ``"emd"``), references as the first argument of M_rs."""
    _one_of("distance", distance, DISTANCES)
    options.check()
    _check_sets(samples, refs, equal_sizes=False)
    return DistanceMatrices(
        rs=_matrix(refs, samples, distance, options),
        rr=_matrix(refs, refs, distance, options),
        ss=_matrix(samples, samples, distance, options),
    )


# --- MMD, COV, 1-NNA -------------------------------------------------------------------------------------------
def _check_matrix(name: str, m: Tensor, shape: tuple[int, int] | None = None) -> Tensor:
    if not isinstance(m, Tensor) or m.dim() != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
        raise ValueError(f"{name} must be a non-empty 2-d distance matrix; got {got}")
    if shape is not None and tuple(m.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(m.shape)}")
    if torch.isnan(m).any():
        raise ValueError(f"{name} contains NaN distances")
    return m.detach().to("cpu", torch.float64)


def mmd_cov(m_rs: Tensor) -> tuple[float, float]:
    """(MMD, COV) from M_rs (refs x samples), as PointFlow ``lgan_mmd_cov(M_rs.t())``.

    MMD = mean over references of the distance to the nearest sample (raw units); COV = 100 * (number of distinct
    references that are the nearest reference of some sample) / |R|. Ties: lowest index (``torch.argmin``)."""
    m = _check_matrix("m_rs", m_rs)
    mmd = m.min(dim=1).values.mean().item()
    covered = m.argmin(dim=0).unique().numel()
    return mmd, 100.0 * covered / m.shape[0]


@dataclass(frozen=True)
class NNAResult:
    """1-NNA in percent: ``acc`` overall, ``acc_t`` on the references, ``acc_f`` on the samples."""

    acc: float
    acc_t: float
    acc_f: float


def one_nn_accuracy(m_rr: Tensor, m_rs: Tensor, m_ss: Tensor) -> NNAResult:
    """Leave-one-out 1-NN accuracy on R u S (references first, label 1 = reference), as PointFlow ``knn(k=1)``.

    Joint matrix [[M_rr, M_rs], [M_rs^T, M_ss]] with +inf on the diagonal; the nearest neighbour of column j is the
    argmin over rows, the lowest index among ties (so a tie between a reference and a sample goes to the
    reference); prediction = label of the nearest; acc = mean(pred == label) * 100."""
    rs = _check_matrix("m_rs", m_rs)
    n_r, n_s = rs.shape
    rr = _check_matrix("m_rr", m_rr, (n_r, n_r))
    ss = _check_matrix("m_ss", m_ss, (n_s, n_s))
    joint = torch.cat([torch.cat([rr, rs], dim=1), torch.cat([rs.t(), ss], dim=1)], dim=0)
    joint.fill_diagonal_(math.inf)
    label = torch.cat([torch.ones(n_r, dtype=torch.bool), torch.zeros(n_s, dtype=torch.bool)])
    correct = (label[joint.argmin(dim=0)] == label).double()
    return NNAResult(
        100.0 * correct.mean().item(), 100.0 * correct[:n_r].mean().item(), 100.0 * correct[n_r:].mean().item()
    )


@dataclass
class GenerationScores:
    """All six metrics and the 1-NNA parts: MMD raw (not scaled), COV and 1-NNA in percent."""

    mmd_cd: float
    cov_cd: float
    nna_cd: float
    nna_cd_t: float
    nna_cd_f: float
    mmd_emd: float
    cov_emd: float
    nna_emd: float
    nna_emd_t: float
    nna_emd_f: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compute_all_metrics(samples: Tensor, refs: Tensor, options: DistanceOptions = DEFAULT_OPTIONS) -> GenerationScores:
    """As PointFlow ``compute_all_metrics`` (minus JSD): MMD, COV and 1-NNA for CD and for EMD.

    ValueError when a set is empty, the shapes are not (n, N, 3), the point counts differ, a value is not finite,
    or |S| != |R| (1-NNA's ideal of 50% needs equal sizes)."""
    options.check()
    _check_sets(samples, refs)
    values: dict[str, float] = {}
    for distance in DISTANCES:
        mats = distance_matrices(samples, refs, distance, options)
        values[f"mmd_{distance}"], values[f"cov_{distance}"] = mmd_cov(mats.rs)
        nna = one_nn_accuracy(mats.rr, mats.rs, mats.ss)
        values.update({f"nna_{distance}": nna.acc, f"nna_{distance}_t": nna.acc_t, f"nna_{distance}_f": nna.acc_f})
    return GenerationScores(**values)


# --- EMD audit and noise floor -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EMDAudit:
    """Approximate vs exact EMD on sampled (sample, reference) pairs; ratio = approx / exact per pair."""

    pairs: int
    approx_mean: float
    exact_mean: float
    ratio_mean: float
    ratio_max: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def emd_audit(samples: Tensor, refs: Tensor, k: int, cost: str, generator: torch.Generator) -> EMDAudit:
    """Re-score k random (sample, reference) pairs (distinct pairs, at most |S| * |R|) with the exact assignment
    (scipy, float64) and the approximation (float32), reference first as in M_rs; ratio = approx / exact per pair
    (1 when both are 0, inf when only the exact one is)."""
    _one_of("cost", cost, EMD_COSTS)
    _check_sets(samples, refs, equal_sizes=False)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (pairs to audit) must be a positive integer; got {k!r}")
    m = refs.shape[0]
    pick = torch.randperm(samples.shape[0] * m, generator=generator)[:k]
    s, r = samples[pick // m].detach().cpu(), refs[pick % m].detach().cpu()
    approx = earth_movers_distance(r.float(), s.float(), cost, "approx").double()
    exact = earth_movers_distance(r.double(), s.double(), cost, "exact")
    ratio = torch.where(exact > 0, approx / exact.clamp_min(1e-300), torch.where(approx > 0, math.inf, 1.0))
    return EMDAudit(
        int(pick.numel()), approx.mean().item(), exact.mean().item(), ratio.mean().item(), ratio.max().item()
    )


def nna_noise_floor(n: int) -> float:
    """Binomial sd in points of a 1-NNA over 2n clouds at its ideal 50%: 100 * sqrt(0.25 / (2 n)) (1.76 at n = 405)."""
    if n < 1:
        raise ValueError(f"n (clouds per set) must be positive; got {n!r}")
    return 100.0 * math.sqrt(0.25 / (2 * n))


# --- registered metrics ------------------------------------------------------------------------------------------
class GenerationMetric(Metric):
    """Accumulates samples (``preds``) and references (``target``) as clouds; ``compute`` scores everything seen.

    Each instance computes only its own distance's matrices (MMD and COV need M_rs only); to get all six metrics at
    once call :func:`compute_all_metrics`, which computes each matrix once. NaN when nothing was seen."""

    distance: ClassVar[str] = "cd"
    statistic: ClassVar[str] = "mmd"  # "mmd" | "cov" | "nna"

    def __init__(self, options: DistanceOptions | None = None) -> None:
        self.options = DEFAULT_OPTIONS if options is None else options
        self.options.check()
        self.reset()

    def reset(self) -> None:
        self._samples: list[Tensor] = []
        self._refs: list[Tensor] = []

    def update(self, preds: Tensor, target: Tensor) -> None:
        for name, clouds, store in (("preds (samples)", preds, self._samples), ("target (refs)", target, self._refs)):
            if isinstance(clouds, Tensor) and clouds.dim() == 3 and clouds.shape[0] == 0 and clouds.shape[2] == 3:
                continue  # an empty batch adds nothing
            _check_clouds(name, clouds)
            if store and store[0].shape[1] != clouds.shape[1]:
                raise ValueError(f"{name}: every cloud must have {store[0].shape[1]} points; got {clouds.shape[1]}")
            store.append(clouds.detach().cpu())

    def compute(self) -> float:
        if not self._samples and not self._refs:
            return float("nan")
        empty = torch.zeros(0, 1, 3)
        samples = torch.cat(self._samples) if self._samples else empty
        refs = torch.cat(self._refs) if self._refs else empty
        _check_sets(samples, refs)
        if self.statistic == "nna":
            mats = distance_matrices(samples, refs, self.distance, self.options)
            return one_nn_accuracy(mats.rr, mats.rs, mats.ss).acc
        mmd, cov = mmd_cov(_matrix(refs, samples, self.distance, self.options))
        return mmd if self.statistic == "mmd" else cov


@METRICS.register("mmd_cd")
class MMDCD(GenerationMetric):
    name, direction, unit, scale = "mmd_cd", MIN, "", 1e3
    distance, statistic = "cd", "mmd"


@METRICS.register("mmd_emd")
class MMDEMD(GenerationMetric):
    name, direction, unit, scale = "mmd_emd", MIN, "", 1e2
    distance, statistic = "emd", "mmd"


@METRICS.register("cov_cd")
class COVCD(GenerationMetric):
    name, direction, unit = "cov_cd", MAX, "%"
    distance, statistic = "cd", "cov"


@METRICS.register("cov_emd")
class COVEMD(GenerationMetric):
    name, direction, unit = "cov_emd", MAX, "%"
    distance, statistic = "emd", "cov"


@METRICS.register("nna_cd")
class NNACD(GenerationMetric):
    name, direction, unit = "nna_cd", Direction("target", 50.0), "%"
    distance, statistic = "cd", "nna"


@METRICS.register("nna_emd")
class NNAEMD(GenerationMetric):
    name, direction, unit = "nna_emd", Direction("target", 50.0), "%"
    distance, statistic = "emd", "nna"

"""Generation metrics: a hand-computed 3 + 3 case with ties, agreement with plain loops written from the PointFlow
definitions, CD/EMD matrices against brute-force oracles, the EMD audit, sanity cases, bad input, registered metrics."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from bench.metrics.base import MAX, MIN, Direction
from bench.metrics.generation import (
    DistanceOptions,
    compute_all_metrics,
    distance_matrices,
    emd_audit,
    mmd_cov,
    nna_noise_floor,
    one_nn_accuracy,
    pairwise_cd,
    pairwise_emd,
)
from bench.registry import METRICS, load_plugins

load_plugins()
EXACT = DistanceOptions(emd_method="exact")


def _clouds(n: int, points: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(n, points, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- plain loops straight from PointFlow's lgan_mmd_cov and knn(k=1), lowest index on ties ----------------------
def _loop_mmd_cov(rs: list[list[float]]) -> tuple[float, float]:
    n_r, n_s = len(rs), len(rs[0])
    mmd = sum(min(rs[r][s] for s in range(n_s)) for r in range(n_r)) / n_r
    nearest = set()
    for s in range(n_s):
        best = 0
        for r in range(1, n_r):
            if rs[r][s] < rs[best][s]:
                best = r
        nearest.add(best)
    return mmd, 100 * len(nearest) / n_r


def _loop_nna(rr: list[list[float]], rs: list[list[float]], ss: list[list[float]]) -> tuple[float, float, float]:
    n_r, n_s = len(rr), len(ss)

    def joint(i: int, j: int) -> float:  # row i, column j of [[M_rr, M_rs], [M_rs^T, M_ss]]
        if i < n_r:
            return rr[i][j] if j < n_r else rs[i][j - n_r]
        return rs[j][i - n_r] if j < n_r else ss[i - n_r][j - n_r]

    correct = []
    for j in range(n_r + n_s):
        best = None
        for i in range(n_r + n_s):
            if i != j and (best is None or joint(i, j) < joint(best, j)):
                best = i
        correct.append((best < n_r) == (j < n_r))
    acc_t, acc_f = sum(correct[:n_r]) / n_r, sum(correct[n_r:]) / n_s
    return 100 * sum(correct) / len(correct), 100 * acc_t, 100 * acc_f


def _loop_cd(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i in range(len(a)):
        for j in range(len(b)):
            d = torch.cdist(a[i].double(), b[j].double()).square()
            out[i, j] = d.min(1).values.mean() + d.min(0).values.mean()
    return out


def _scipy_emd(x: torch.Tensor, y: torch.Tensor, cost: str) -> float:
    c = cdist(x.double().numpy(), y.double().numpy(), metric=cost)
    rows, cols = linear_sum_assignment(c)
    return float(c[rows, cols].mean())


def _loop_emd(a: torch.Tensor, b: torch.Tensor, cost: str) -> torch.Tensor:
    return torch.tensor([[_scipy_emd(x, y, cost) for y in b] for x in a], dtype=torch.float64)


# --- 1. hand-computed --------------------------------------------------------------------------------------------
def test_hand_computed_three_plus_three_with_ties():
    # rows r0..r2, columns s0..s2
    rs = torch.tensor([[1.0, 1.0, 4.0], [1.0, 3.0, 5.0], [5.0, 2.0, 2.0]])
    rr = torch.tensor([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    ss = torch.tensor([[0.0, 2.0, 3.0], [2.0, 0.0, 1.0], [3.0, 1.0, 0.0]])
    # MMD: nearest sample per reference: r0 -> 1, r1 -> 1, r2 -> 2; mean 4/3.
    # COV: nearest reference per sample (column argmin): s0 [1, 1, 5] ties r0/r1 -> r0; s1 [1, 3, 2] -> r0;
    #      s2 [4, 5, 2] -> r2. Covered {r0, r2}: 2/3 = 66.67 % (highest-index ties would give {r1, r0, r2}: 100 %).
    mmd, cov = mmd_cov(rs)
    assert mmd == pytest.approx(4 / 3) and cov == pytest.approx(200 / 3)
    # joint matrix, order r0 r1 r2 s0 s1 s2, inf on the diagonal; column j's nearest row (lowest index on ties):
    #   r0: [inf 1 3 | 1 1 4]  min 1 at r1, s0, s1 -> r1 (reference, correct)
    #   r1: [1 inf 2 | 1 3 5]  min 1 at r0, s0     -> r0 (correct)
    #   r2: [3 2 inf | 5 2 2]  min 2 at r1, s1, s2 -> r1 (correct)
    #   s0: [1 1 5 | inf 2 3]  min 1 at r0, r1     -> r0 (reference, wrong)
    #   s1: [1 3 2 | 2 inf 1]  min 1 at r0, s2     -> r0 (wrong)
    #   s2: [4 5 2 | 3 1 inf]  min 1 at s1         -> s1 (correct)
    # acc = 4/6, acc_t = 3/3, acc_f = 1/3 (highest-index ties would give acc_t = 0, acc_f = 2/3).
    nna = one_nn_accuracy(rr, rs, ss)
    assert (nna.acc, nna.acc_t, nna.acc_f) == pytest.approx((200 / 3, 100.0, 100 / 3))
    assert _loop_mmd_cov(rs.tolist()) == pytest.approx((mmd, cov))
    assert _loop_nna(rr.tolist(), rs.tolist(), ss.tolist()) == pytest.approx((nna.acc, nna.acc_t, nna.acc_f))


# --- 2. agreement with the loops -------------------------------------------------------------------------------
@pytest.mark.parametrize("n_r,n_s", [(5, 5), (6, 4)])
@pytest.mark.parametrize("integers", [False, True], ids=["float", "ties"])
def test_matrix_functions_match_the_loops(n_r, n_s, integers):
    g = torch.Generator().manual_seed(n_r * 10 + n_s + integers)

    def draw(*shape: int) -> torch.Tensor:  # small integers: many ties
        return torch.randint(0, 4, shape, generator=g).double() if integers else torch.rand(*shape, generator=g)

    for _ in range(5):  # asymmetric matrices: pins which side of M_rs is the reference
        rs, rr, ss = draw(n_r, n_s), draw(n_r, n_r), draw(n_s, n_s)
        nna = one_nn_accuracy(rr, rs, ss)
        assert mmd_cov(rs) == pytest.approx(_loop_mmd_cov(rs.tolist()))
        assert (nna.acc, nna.acc_t, nna.acc_f) == pytest.approx(_loop_nna(rr.tolist(), rs.tolist(), ss.tolist()))


def test_compute_all_metrics_matches_the_loops_on_clouds():
    samples, refs = _clouds(7, 32, seed=1), _clouds(7, 32, seed=2) * 0.9 + 0.05
    scores = compute_all_metrics(samples, refs, EXACT).as_dict()
    for distance, oracle in (("cd", _loop_cd), ("emd", lambda a, b: _loop_emd(a, b, "sqeuclidean"))):
        rs, rr, ss = (oracle(x, y).tolist() for x, y in ((refs, samples), (refs, refs), (samples, samples)))
        mmd, cov = _loop_mmd_cov(rs)
        acc, acc_t, acc_f = _loop_nna(rr, rs, ss)
        got = [scores[f"{k}_{distance}"] for k in ("mmd", "cov", "nna")]
        got += [scores[f"nna_{distance}_{part}"] for part in ("t", "f")]
        assert got == pytest.approx([mmd, cov, acc, acc_t, acc_f], rel=1e-6)


# --- 3. pairwise CD ---------------------------------------------------------------------------------------------
def test_pairwise_cd_equals_brute_force_and_chunking_is_exact():
    a, b = _clouds(6, 256, seed=3), _clouds(5, 200, seed=4)
    one_block = pairwise_cd(a, b)
    assert one_block.shape == (6, 5) and one_block.dtype == torch.float64
    torch.testing.assert_close(one_block, _loop_cd(a, b), rtol=1e-5, atol=1e-8)
    assert torch.equal(pairwise_cd(a, b, chunk_mb=1), one_block)  # 1 MiB: 5 pairs of 256 x 200 per block


def test_pairwise_cd_of_a_set_with_itself_is_mirrored_exactly():
    a = _clouds(6, 256, seed=5)
    mirrored = pairwise_cd(a, a, chunk_mb=1)
    assert torch.equal(mirrored, pairwise_cd(a, a.clone()))  # every pair computed: the same bits
    assert torch.equal(mirrored, mirrored.t()) and torch.all(mirrored.diag() == 0)


# --- 4. pairwise EMD --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
def test_exact_pairwise_emd_equals_scipy(cost):
    a, b = _clouds(3, 64, seed=6), _clouds(4, 64, seed=7)
    got = pairwise_emd(a, b, cost=cost, method="exact", chunk_mb=1)
    torch.testing.assert_close(got, _loop_emd(a, b, cost), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cost,bound", [("euclidean", 1.5), ("sqeuclidean", 3.0)])
def test_approx_emd_is_an_upper_bound_within_a_loose_ratio(cost, bound):
    a, b = _clouds(3, 128, seed=8), _clouds(3, 128, seed=9)
    approx = pairwise_emd(a, b, cost=cost)
    exact = pairwise_emd(a, b, cost=cost, method="exact")
    assert torch.all(approx >= exact - 1e-5)
    # measured on these uniform clouds: ratio ~1.2 (euclidean), ~2.1 (sqeuclidean: approxmatch errs more when squared)
    assert torch.all(approx / exact < bound)


# --- 5. EMD audit -----------------------------------------------------------------------------------------------
def test_emd_audit_scores_k_pairs_and_is_reproducible():
    samples, refs = _clouds(5, 64, seed=10), _clouds(5, 64, seed=11)
    audit = emd_audit(samples, refs, k=4, cost="euclidean", generator=torch.Generator().manual_seed(0))
    again = emd_audit(samples, refs, k=4, cost="euclidean", generator=torch.Generator().manual_seed(0))
    assert audit == again and audit.pairs == 4
    assert audit.ratio_max >= audit.ratio_mean >= 1 - 1e-6 and audit.approx_mean >= audit.exact_mean > 0
    assert set(audit.as_dict()) == {"pairs", "approx_mean", "exact_mean", "ratio_mean", "ratio_max"}
    assert emd_audit(samples[:2], refs[:2], k=10, cost="sqeuclidean", generator=torch.Generator()).pairs == 4


def test_noise_floor():
    assert nna_noise_floor(405) == pytest.approx(1.7568, abs=1e-4)
    assert nna_noise_floor(1) == pytest.approx(100 * math.sqrt(0.125))


# --- 6. sanity --------------------------------------------------------------------------------------------------
def test_identical_sets_give_mmd_0_cov_100_nna_0():
    refs = _clouds(6, 48, seed=12)
    for samples in (refs, refs.clone()):
        scores = compute_all_metrics(samples, refs, EXACT)
        assert scores.mmd_cd == 0 and scores.mmd_emd == 0 and scores.cov_cd == 100 and scores.cov_emd == 100
        # each cloud's nearest other cloud is its twin in the other set: the classifier is always wrong
        assert scores.nna_cd == 0 and scores.nna_emd == 0


def test_clearly_different_sets_give_nna_100():
    g = torch.Generator().manual_seed(13)
    sphere = torch.nn.functional.normalize(torch.randn(6, 64, 3, generator=g), dim=-1)
    refs = sphere * torch.linspace(0.8, 1.2, 6).view(6, 1, 1)
    samples = torch.rand(6, 64, 3, generator=g) + 10.0
    scores = compute_all_metrics(samples, refs)
    assert scores.nna_cd == scores.nna_emd == 100 and scores.nna_cd_t == scores.nna_cd_f == 100
    assert scores.mmd_cd > 100 and scores.cov_cd < 100


# --- 7. bad input -----------------------------------------------------------------------------------------------
def test_bad_input_is_a_clear_value_error():
    good = _clouds(3, 16, seed=14)
    nan = good.clone()
    nan[1, 2, 0] = float("nan")
    cases = [
        (good, _clouds(3, 17, seed=15), "same number of points"),
        (nan, good, "non-finite values .* first at index 1"),
        (good[0], good, r"\(n, N, 3\)"),
        (good[..., :2], good, r"\(n, N, 3\)"),
        (good, _clouds(4, 16, seed=16), "same size"),
        (good[:0], good, "empty"),
    ]
    for samples, refs, message in cases:
        with pytest.raises(ValueError, match=message):
            compute_all_metrics(samples, refs)
    with pytest.raises(ValueError, match="same number of points"):
        pairwise_emd(good, _clouds(2, 8, seed=17))
    with pytest.raises(ValueError, match="emd_cost must be one of sqeuclidean, euclidean"):
        compute_all_metrics(good, good, DistanceOptions(emd_cost="l2"))
    with pytest.raises(ValueError, match="chunk_mb"):
        DistanceOptions(chunk_mb=0).check()
    with pytest.raises(ValueError, match="distance must be one of cd, emd"):
        distance_matrices(good, good, "jsd", DistanceOptions())
    with pytest.raises(ValueError, match="m_ss must have shape"):
        one_nn_accuracy(torch.zeros(2, 2), torch.zeros(2, 3), torch.zeros(2, 2))


# --- 8. registered metrics --------------------------------------------------------------------------------------
CONTRACT = {
    "mmd_cd": (MIN, "", 1e3),
    "mmd_emd": (MIN, "", 1e2),
    "cov_cd": (MAX, "%", 1.0),
    "cov_emd": (MAX, "%", 1.0),
    "nna_cd": (Direction.parse("target:50"), "%", 1.0),
    "nna_emd": (Direction.parse("target:50"), "%", 1.0),
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_registered_metric_contract_and_streaming(name):
    cls = METRICS.get(name)
    assert (cls.spec().direction, cls.spec().unit, cls.spec().scale) == CONTRACT[name] and cls.name == name
    samples, refs = _clouds(6, 32, seed=18), _clouds(6, 32, seed=19)
    streamed, once = cls(), cls(DistanceOptions(chunk_mb=1))
    assert math.isnan(streamed.compute())
    streamed.update(preds=samples[:4], target=refs[:2])
    streamed.update(preds=samples[4:], target=refs[2:])
    once.update(preds=samples, target=refs)
    expected = compute_all_metrics(samples, refs).as_dict()[name]
    assert streamed.compute() == pytest.approx(once.compute()) == pytest.approx(expected)
    streamed.reset()
    assert math.isnan(streamed.compute())
    streamed.update(preds=samples, target=refs[:5])
    with pytest.raises(ValueError, match="same size"):
        streamed.compute()

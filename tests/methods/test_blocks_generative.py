"""The generative blocks: VQ with anti-collapse, Morton serialisation, the sliding mask ratio, MaskGIT decoding,
the local field and its surface extraction."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from methods.blocks.field import extract_surface, sample_queries, udf_target
from methods.blocks.maskgit import MaskSchedule, SamplerConfig, filter_logits, maskgit_decode, sample_ids
from methods.blocks.quant import VectorQuantizer
from methods.blocks.serialization import apply_order, morton_codes, morton_order


# --- vector quantisation ---------------------------------------------------------------------------------------
def test_quantizer_uses_most_codes_on_clustered_data_thanks_to_restarts() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=8, num_codes=16, code_dim=4, decay=0.9).train()
    centres = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1) * 5
    for _ in range(60):
        batch = centres[torch.randint(16, (256,))] + 0.05 * torch.randn(256, 8)
        out = vq(batch)
    assert out.usage > 0.5 and out.perplexity > 8
    assert out.vectors.shape == (256, 8) and out.ids.shape == (256,)


def test_quantizer_is_straight_through_and_lookup_matches() -> None:
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=6, num_codes=8, code_dim=3).eval()
    x = torch.randn(5, 6, requires_grad=True)
    out = vq(x)
    (out.vectors.sum() + out.loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.allclose(vq.lookup(out.ids), out.vectors, atol=1e-6)
    assert torch.equal(out.ids, vq.nearest(vq.encode(x)))


def test_collapsed_codebook_reports_perplexity_one() -> None:
    vq = VectorQuantizer(dim=4, num_codes=8, code_dim=2).eval()
    out = vq(torch.ones(10, 4))
    assert float(out.perplexity) == pytest.approx(1.0) and float(out.usage) == pytest.approx(1 / 8)


# --- serialisation ---------------------------------------------------------------------------------------------
def test_morton_codes_interleave_bits_x_then_y_then_z() -> None:
    corners = torch.tensor([[[-1.0, -1, -1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]]])
    assert morton_codes(corners, bits=1).tolist() == [[0, 4, 2, 1, 7]]
    order = morton_order(corners, bits=1)
    assert order.tolist() == [[0, 3, 2, 1, 4]]
    (sorted_pts,) = apply_order(order, corners)
    assert sorted_pts[0, -1].tolist() == [1, 1, 1]


# --- mask-ratio schedule ---------------------------------------------------------------------------------------
def test_sliding_schedule_starts_near_point_mae_and_its_last_epoch_reaches_all_masked() -> None:
    schedule = MaskSchedule()
    first = schedule.sample(0, 100, 20000, torch.Generator().manual_seed(0))
    last = schedule.sample(99, 100, 20000, torch.Generator().manual_seed(0))
    assert abs(float(first.mean()) - 0.6) < 0.02 and float(first.std()) < 0.06
    assert float((last > 0.9).float().mean()) >= 0.10  # the rule, empirically ...
    assert schedule.mass_above(0.9, 99, 100) >= 0.10  # ... and exactly
    assert float(last.max()) > 0.99 and float(last.min()) >= 0.5


def test_mage_and_unofficial_schedules() -> None:
    assert MaskSchedule("mage").mass_above(0.9, 0, 1) == pytest.approx(0.0826, abs=2e-3)  # MAGE alone: < 10%
    unofficial = MaskSchedule("sliding_exp")
    assert max(unofficial.distribution(e, 50)[0] for e in range(50)) == pytest.approx(0.75)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unofficial.check()
    assert any("75%" in str(w.message) for w in caught)
    assert torch.all(MaskSchedule("fixed", start=0.6).sample(3, 10, 5) == 0.6)


# --- MaskGIT decoding ------------------------------------------------------------------------------------------
def test_filter_logits_top_k_and_top_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))
    assert kept.tolist() == [[True, True, False, False]]
    ids, logp = sample_ids(logits, 0.0, 0, 1.0, None)
    assert ids.item() == 0 and logp.item() == pytest.approx(math.log(0.5), abs=1e-5)


def test_maskgit_fills_every_slot_on_schedule_and_keeps_known_ones() -> None:
    g, k = 16, 5
    calls = []

    def predict(ids, centers, known):
        calls.append(int((~known).sum()))
        logits = torch.zeros(*ids.shape, k)
        logits[..., 3] = 10.0
        return logits, torch.ones(*ids.shape, 3)

    cfg = SamplerConfig(steps=4, temperature=0.0)
    known = torch.zeros(2, g, dtype=torch.bool)
    known[:, :2] = True
    ids = torch.zeros(2, g, dtype=torch.long)
    ids[:, :2] = 1
    out_ids, out_centers = maskgit_decode(predict, ids, torch.zeros(2, g, 3), known, cfg, torch.Generator())
    assert calls[0] == 2 * 14 and len(calls) == 4
    assert [cfg.still_masked(t, g) for t in range(4)] == [14, 11, 6, 0]
    assert out_ids[:, :2].eq(1).all() and out_ids[:, 2:].eq(3).all()
    assert out_centers[:, :2].eq(0).all() and out_centers[:, 2:].eq(1).all()


# --- field -----------------------------------------------------------------------------------------------------
def test_udf_target_is_the_clamped_nearest_point_distance() -> None:
    xyz = torch.rand(2, 50, 3) * 2 - 1
    queries = sample_queries(xyz, 40, 0.02, torch.Generator().manual_seed(7))
    expected = (queries[:, :, None] - xyz[:, None]).square().sum(-1).min(-1).values.sqrt().clamp(max=0.1)
    assert torch.allclose(udf_target(queries, xyz, 0.1), expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["centres", "grid"])
def test_surface_extraction_lands_on_a_sphere(mode: str) -> None:
    def field(q):
        return (q.norm(dim=-1) - 0.5).abs()

    centers = torch.nn.functional.normalize(torch.randn(2, 16, 3), dim=-1) * 0.5
    points = extract_surface(field, centers, 200, mode=mode, seeds=32, seed_std=0.05, resolution=16,
                             generator=torch.Generator().manual_seed(0))
    assert points.shape == (2, 200, 3)
    assert (points.norm(dim=-1) - 0.5).abs().max() < 1e-3

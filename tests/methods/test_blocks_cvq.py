"""Cross-scale residual quantisation: settings validation, the phase-1 LayerNorm bottleneck, straight-through
f_hat, per-scale statistics, reconstruction error falling as scales are added (vq and lfq), the AR inputs, and the
LFQ ids and entropy terms against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from methods.blocks.cvq import CrossScaleQuantizer, LookupFreeQuantizer, code_statistics

SCALES = [1, 4, 16]


def _cvq(quantizer: str = "vq", **kwargs) -> CrossScaleQuantizer:
    return CrossScaleQuantizer(32, 16, SCALES, 64, 8, quantizer=quantizer, heads=4, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scales": [1, 4, 4, 16]}, "scales must be strictly increasing"),
        ({"scales": [4, 1, 16]}, "scales must be strictly increasing"),
        ({"scales": [1, 4, 8]}, "scales must end at num_latents=16"),
        ({"scales": []}, "scales must be a non-empty"),
        ({"quantizer": "fsq"}, "quantizer must be one of"),
        ({"quantizer": "lfq", "codebook_size": 100}, "codebook_size must be a power of two"),
        ({"codebook_size": 1}, "codebook_size must be >= 2"),
        ({"quant_resi": 1.5}, "quant_resi must lie in"),
    ],
)
def test_invalid_settings_name_the_field(kwargs: dict, message: str) -> None:
    settings = {"width": 32, "num_latents": 16, "scales": SCALES, "codebook_size": 64, "code_dim": 8} | kwargs
    with pytest.raises(ValueError, match=message):
        CrossScaleQuantizer(**settings)


def test_without_quantisation_the_bottleneck_is_layernorm() -> None:
    cvq = _cvq()
    z = torch.randn(2, 16, 32) * 3 + 1
    out = cvq(z, quantize=False)
    torch.testing.assert_close(out.f_hat, F.layer_norm(z, (32,)))
    assert out.ids == [] and out.usage == [] and out.perplexity == [] and float(out.loss) == 0.0


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_outputs_shapes_statistics_and_straight_through(quantizer: str) -> None:
    cvq = _cvq(quantizer)
    z = torch.randn(3, 16, 32, requires_grad=True)
    out = cvq(z)
    assert out.f_hat.shape == (3, 16, 32) and out.loss.dim() == 0 and float(out.loss.detach()) > 0
    assert [tuple(i.shape) for i in out.ids] == [(3, 1), (3, 4), (3, 16)]
    assert all(i.dtype == torch.int64 and int(i.min()) >= 0 and int(i.max()) < 64 for i in out.ids)
    for usage, perplexity, ids in zip(out.usage, out.perplexity, out.ids, strict=True):
        assert usage.dim() == 0 and 0.0 < float(usage) <= 1.0 and not usage.requires_grad
        assert float(usage) == pytest.approx(len(ids.unique()) / 64)
        assert 1.0 - 1e-5 <= float(perplexity) <= 64
    (grad,) = torch.autograd.grad(out.f_hat.sum(), z)
    torch.testing.assert_close(grad, torch.ones_like(z))  # gradient identity to z (VAR's straight-through)


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_decode_ids_reproduces_f_hat_in_eval(quantizer: str) -> None:
    cvq = _cvq(quantizer).eval()
    z = torch.randn(2, 16, 32)
    with torch.no_grad():
        out = cvq(z)
        torch.testing.assert_close(cvq.decode_ids(out.ids), out.f_hat, atol=1e-5, rtol=1e-5)
        _, ids, _ = cvq.quantize(1, cvq.downsample(1, z))
        torch.testing.assert_close(cvq.quantize(1, cvq.downsample(1, z))[0], cvq.lookup(1, ids))


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_each_scale_quantises_the_residual_of_the_previous_scales(quantizer: str) -> None:
    """ids of scale s == the quantised down-sampled residual z - decode_ids(ids[:s]) (R -= h, VAR)."""
    cvq = _cvq(quantizer).eval()
    z = torch.randn(2, 16, 32)
    with torch.no_grad():
        ids = cvq(z).ids
        torch.testing.assert_close(cvq.quantize(0, cvq.downsample(0, z))[1], ids[0])
        for s in (1, 2):
            residual = z - cvq.decode_ids(ids[:s])
            torch.testing.assert_close(cvq.quantize(s, cvq.downsample(s, residual))[1], ids[s])


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_loss_is_the_mean_over_scales_of_the_var_term_plus_the_quantiser_term(quantizer: str) -> None:
    cvq = _cvq(quantizer).eval()
    z = torch.randn(2, 16, 32)
    with torch.no_grad():
        out = cvq(z)
        var_terms = [(1 + 0.25) * float(F.mse_loss(cvq.decode_ids(out.ids[: s + 1]), z)) for s in range(3)]
        quantiser = [float(cvq.quantize(0, cvq.downsample(0, z))[2])]
        quantiser += [float(cvq.quantize(s, cvq.downsample(s, z - cvq.decode_ids(out.ids[:s])))[2]) for s in (1, 2)]
        expected = (sum(var_terms) + sum(quantiser)) / 3  # beta |sg(f_hat) - z|^2 + |f_hat - sg(z)|^2, per scale
    assert float(out.loss) == pytest.approx(expected, rel=1e-4)


def test_prenorm_quantises_the_layernormed_latents() -> None:
    plain, normed = _cvq().eval(), _cvq(prenorm=True).eval()
    normed.load_state_dict(plain.state_dict())
    z = torch.randn(2, 16, 32) * 2 + 1
    with torch.no_grad():
        a, b = normed(z), plain(F.layer_norm(z, (32,)))
    assert all(torch.equal(x, y) for x, y in zip(a.ids, b.ids, strict=True))
    torch.testing.assert_close(a.f_hat, b.f_hat)


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_reconstruction_error_falls_as_scales_are_added(quantizer: str) -> None:
    """After a short fit, |decode_ids(ids[:k]) - z|^2 is non-increasing in k, strictly over the first scales."""
    cvq = _cvq(quantizer)
    z = torch.randn(8, 16, 32)
    optimizer = torch.optim.Adam(cvq.parameters(), lr=3e-3)
    for _ in range(120):
        optimizer.zero_grad()
        cvq(z).loss.backward()
        optimizer.step()
    cvq.eval()
    with torch.no_grad():
        ids = cvq(z).ids
        errors = [float(z.square().mean())] + [float((cvq.decode_ids(ids[:k]) - z).square().mean()) for k in (1, 2, 3)]
    assert errors[1] < errors[0] and errors[2] < errors[1]
    assert errors[3] <= errors[2] + 1e-6
    assert errors[3] < 0.9 * errors[0]


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_next_inputs_are_downsampled_partial_reconstructions(quantizer: str) -> None:
    cvq = _cvq(quantizer).eval()
    with torch.no_grad():
        ids = cvq(torch.randn(2, 16, 32)).ids
        inputs = cvq.next_inputs(ids)
        assert inputs.shape == (2, 4 + 16, 32)
        begin = 0
        for s in (1, 2):
            expected = cvq.next_input(s, cvq.decode_ids(ids[:s]))
            torch.testing.assert_close(inputs[:, begin : begin + SCALES[s]], expected, atol=1e-5, rtol=1e-5)
            begin += SCALES[s]
        torch.testing.assert_close(cvq.next_input(2, cvq.decode_ids(ids[:2])), cvq.decode_ids(ids[:2]))  # identity
    with pytest.raises(ValueError, match="scale 0 has no AR input"):
        cvq.next_input(0, inputs)
    with pytest.raises(ValueError, match="all 3 scales"):
        cvq.next_inputs(ids[:2])
    with pytest.raises(ValueError, match=r"ids of scale 1 must be \(B, 4\)"):
        cvq.decode_ids([ids[0], ids[2]])


def test_last_scale_is_identity_both_ways() -> None:
    cvq = _cvq()
    f = torch.randn(2, 16, 32)
    assert cvq.downsample(2, f) is f
    torch.testing.assert_close(cvq.upsample(2, f), 0.5 * f + 0.5 * cvq.phi[2](f))  # only the Phi blend
    assert cvq.downsample(0, f).shape == (2, 1, 32) and cvq.upsample(1, torch.randn(2, 4, 32)).shape == (2, 16, 32)


def test_code_statistics_by_hand() -> None:
    usage, perplexity = code_statistics(torch.tensor([[0, 0], [1, 3]]), 4)
    assert float(usage) == 0.75
    assert float(perplexity) == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))


def test_lfq_ids_are_the_sign_bits_most_significant_first() -> None:
    lfq = LookupFreeQuantizer(3, 8, entropy_weight=0.0)
    with torch.no_grad():
        lfq.proj_in.weight.copy_(torch.eye(3))
    q = lfq(torch.tensor([[0.5, -1.0, 2.0], [-0.1, -0.2, 0.0]]))
    assert q.ids.tolist() == [5, 0 + 0 + 1]  # [+, -, +] -> 0b101; [-, -, 0 -> +] -> 0b001
    torch.testing.assert_close(q.vectors, lfq.proj_out(torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, 1.0]])))
    torch.testing.assert_close(lfq.lookup(q.ids), q.vectors)
    expected = 0.25 * ((0.5 - 1) ** 2 + 0 + 1 + 0.9**2 + 0.8**2 + 1) / 6
    assert float(q.loss.detach()) == pytest.approx(expected)
    with pytest.raises(ValueError, match="power of two"):
        LookupFreeQuantizer(3, 12)


def test_lfq_entropy_penalty_by_hand() -> None:
    lfq = LookupFreeQuantizer(3, 8, temperature=0.01)
    assert float(lfq.entropy_penalty(torch.zeros(5, 3))) == pytest.approx(0.0, abs=1e-5)  # uniform - uniform
    confident = lfq.ids_to_signs(torch.arange(8)) * 10  # every code once, saturated
    assert float(lfq.entropy_penalty(confident)) == pytest.approx(-math.log(8), abs=1e-4)
    collapsed = torch.ones(8, 3)  # all on one code, saturated
    assert float(lfq.entropy_penalty(collapsed)) == pytest.approx(0.0, abs=1e-4)


def test_lfq_per_token_entropy_factorises_over_bits() -> None:
    lfq = LookupFreeQuantizer(3, 8, temperature=1.0)
    z = torch.randn(6, 3)
    codes = lfq.ids_to_signs(torch.arange(8))
    probs = (-(z.unsqueeze(1) - codes).square().sum(-1)).softmax(-1)  # softmax(-|z - c|^2 / T) over all codes
    exact = -(probs * probs.log()).sum(-1).mean()
    codebook = -(probs.mean(0) * probs.mean(0).log()).sum()
    torch.testing.assert_close(lfq.entropy_penalty(z), exact - codebook, atol=1e-5, rtol=1e-5)

"""Perceiver tokenizer blocks: Fourier embedding values, encoder/decoder shapes, permutation invariance of the
encoder over the input points, and chunked occupancy queries equal to one pass."""

from __future__ import annotations

import math

import pytest
import torch

from methods.blocks.field import fourier_features
from methods.blocks.perceiver import FourierEmbed, OccupancyDecoder, PerceiverEncoder


def test_fourier_embed_values_by_hand() -> None:
    embed = FourierEmbed(2, include_pi=False)
    assert embed.out_dim == 3 + 12
    xyz = torch.tensor([[0.5, -1.0, 0.25]])
    angles = [0.5, 1.0, -1.0, -2.0, 0.25, 0.5]  # per axis: 2^0 x, 2^1 x
    expected = torch.tensor([[0.5, -1.0, 0.25] + [math.sin(a) for a in angles] + [math.cos(a) for a in angles]])
    torch.testing.assert_close(embed(xyz), expected)


def test_fourier_embed_with_pi_is_the_field_features() -> None:
    xyz = torch.rand(2, 5, 3) * 2 - 1
    embed = FourierEmbed(6)
    assert embed.out_dim == 39
    torch.testing.assert_close(embed(xyz), fourier_features(xyz, 6))


def test_encoder_shapes_and_feature_checks() -> None:
    enc = PerceiverEncoder(32, num_latents=8, heads=4, depth=2, num_freqs=4)
    assert enc(torch.rand(2, 50, 3)).shape == (2, 8, 32)
    assert enc.query.shape == (8, 32) and enc.query.std() < 0.05
    with_normals = PerceiverEncoder(32, num_latents=8, heads=4, depth=1, in_features=3)
    assert with_normals(torch.rand(2, 50, 3), torch.randn(2, 50, 3)).shape == (2, 8, 32)
    with pytest.raises(ValueError, match="in_features=3"):
        with_normals(torch.rand(2, 50, 3))
    with pytest.raises(ValueError, match="in_features=0"):
        enc(torch.rand(2, 50, 3), torch.randn(2, 50, 3))


def test_encoder_is_invariant_to_point_order() -> None:
    enc = PerceiverEncoder(32, num_latents=8, heads=4, depth=2, in_features=2).eval()
    xyz, feats = torch.rand(2, 64, 3), torch.randn(2, 64, 2)
    order = torch.randperm(64)
    out = enc(xyz, feats)
    torch.testing.assert_close(enc(xyz[:, order], feats[:, order]), out, atol=1e-5, rtol=1e-5)
    other = xyz.clone()
    other[:, 0] += 0.3  # a moved point changes the latents: the test can fail
    assert not torch.allclose(enc(other, feats), out, atol=1e-4)


def test_decoder_shapes_and_chunked_queries_equal_one_pass() -> None:
    dec = OccupancyDecoder(32, heads=4, depth=2, num_freqs=4).eval()
    decoded = dec.decode(torch.randn(2, 8, 32))
    assert decoded.shape == (2, 8, 32)
    points = torch.rand(2, 30, 3) * 2 - 1
    full = dec.query(points, decoded)
    assert full.shape == (2, 30)
    for chunk in (1, 7, 30, 64):
        torch.testing.assert_close(dec.query(points, decoded, chunk=chunk), full, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(dec.query(points[:, 5:9], decoded), full[:, 5:9], atol=1e-6, rtol=1e-6)
    with pytest.raises(ValueError, match="chunk"):
        dec.query(points, decoded, chunk=-1)


def test_decoder_value_depends_on_latents() -> None:
    dec = OccupancyDecoder(32, heads=4, depth=1).eval()
    points = torch.rand(1, 10, 3)
    a = dec.query(points, dec.decode(torch.randn(1, 8, 32)))
    b = dec.query(points, dec.decode(torch.randn(1, 8, 32)))
    assert not torch.allclose(a, b)

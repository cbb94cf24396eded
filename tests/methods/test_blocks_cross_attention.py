"""CrossAttention (q + fused kv, Point-PQAE names) and the decoder without positions (PQ_decoder)."""

from __future__ import annotations

import torch

from methods.blocks.transformer import Attention, CrossAttention, TransformerDecoder


def test_cross_attention_matches_explicit_softmax() -> None:
    attn = CrossAttention(32, num_heads=4).eval()
    assert list(attn.state_dict()) == ["q.weight", "kv.weight", "proj.weight", "proj.bias"]
    x, ctx = torch.randn(2, 5, 32), torch.randn(2, 9, 32)
    q = attn.q(x).view(2, 5, 4, 8).transpose(1, 2)
    k, v = attn.kv(ctx).view(2, 9, 2, 4, 8).permute(2, 0, 3, 1, 4)
    weights = ((q @ k.transpose(-2, -1)) * 8**-0.5).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 32))
    torch.testing.assert_close(attn(x, ctx), expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_on_itself_equals_fused_self_attention() -> None:
    cross, fused = CrossAttention(32, num_heads=4).eval(), Attention(32, num_heads=4).eval()
    q_w, kv_w = fused.qkv.weight.split([32, 64])
    cross.load_state_dict(
        {"q.weight": q_w, "kv.weight": kv_w, "proj.weight": fused.proj.weight, "proj.bias": fused.proj.bias}
    )
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(cross(x), fused(x), atol=1e-5, rtol=1e-5)


def test_decoder_without_positions_norms_every_token() -> None:
    dec = TransformerDecoder(16, depth=2, num_heads=2).eval()
    x = torch.randn(2, 6, 16)
    expected = x
    for block in dec.blocks:
        expected = block(expected)
    torch.testing.assert_close(dec(x), dec.norm(expected))
    torch.testing.assert_close(dec(x, torch.zeros_like(x), 6), dec(x))  # zero positions, all tokens: same

"""Transformer blocks: attention numerics, swappable attention, drop path, encoder/decoder wiring."""

from __future__ import annotations

import pytest
import torch
from methods_support import TINY_ENCODER

from methods.blocks.encoder import PointEncoder
from methods.blocks.transformer import (
    Attention,
    Block,
    DropPath,
    SplitQKVAttention,
    TransformerDecoder,
    TransformerEncoder,
    drop_path_rates,
)


def explicit_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    weights = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
    return attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


def test_attention_matches_explicit_softmax() -> None:
    attn = Attention(32, num_heads=4).eval()
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(attn(x), explicit_attention(attn, x), atol=1e-5, rtol=1e-5)
    assert "qkv.bias" not in attn.state_dict()


def test_split_qkv_attention_equals_fused_and_does_cross_attention() -> None:
    fused = Attention(32, num_heads=4).eval()
    split = SplitQKVAttention(32, num_heads=4).eval()
    q_w, k_w, v_w = fused.qkv.weight.chunk(3, dim=0)
    split.load_state_dict(
        {
            "q_linear.weight": q_w,
            "k_linear.weight": k_w,
            "v_linear.weight": v_w,
            "proj.weight": fused.proj.weight,
            "proj.bias": fused.proj.bias,
        }
    )
    x = torch.randn(2, 7, 32)
    torch.testing.assert_close(split(x), fused(x), atol=1e-5, rtol=1e-5)
    assert split(x, torch.randn(2, 11, 32)).shape == (2, 7, 32)
    with pytest.raises(ValueError, match="self-attention only"):
        fused(x, torch.randn(2, 11, 32))


def test_block_takes_another_attention_without_copying() -> None:
    block = Block(32, num_heads=4, attn_layer=SplitQKVAttention)
    names = list(block.state_dict())
    assert "attn.q_linear.weight" in names and "attn.qkv.weight" not in names
    context = torch.randn(2, 5, 32)
    assert block(torch.randn(2, 3, 32), context).shape == (2, 3, 32)


def test_drop_path() -> None:
    layer = DropPath(0.5)
    x = torch.ones(4000, 3)
    out = layer(x)
    kept = out[:, 0] != 0
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    assert 0.4 < kept.float().mean() < 0.6
    assert (out[kept] == 2.0).all()
    assert layer.eval()(x).equal(x)
    assert drop_path_rates(0.1, 4) == pytest.approx([0.0, 1 / 30, 2 / 30, 0.1])
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in TransformerEncoder(16, 4, 2, drop_path=0.1).blocks]
    assert rates == pytest.approx([0.0, 1 / 30, 2 / 30, 0.1])


def test_pos_added_at_every_block_and_hidden_outputs() -> None:
    enc = TransformerEncoder(16, depth=3, num_heads=2).eval()
    x, pos = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    expected, outs = x, []
    for block in enc.blocks:
        expected = block(expected + pos)
        outs.append(expected)
    final, hidden = enc.forward_hidden(x, pos, [2, 0])
    torch.testing.assert_close(final, expected)
    torch.testing.assert_close(hidden[0], outs[2])
    torch.testing.assert_close(hidden[1], outs[0])


def test_decoder_returns_last_n_through_norm() -> None:
    dec = TransformerDecoder(16, depth=2, num_heads=2).eval()
    x, pos = torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    out = dec(x, pos, 4)
    full = x
    for block in dec.blocks:
        full = block(full + pos)
    torch.testing.assert_close(out, dec.norm(full[:, -4:]))


def test_point_encoder_outputs(cloud: torch.Tensor) -> None:
    enc = PointEncoder(TINY_ENCODER, num_group=16, group_size=8, drop_path=0.0, cls_token=True).eval()
    out = enc(cloud, hidden_blocks=(0, -1))
    assert out.tokens.shape == (2, 16, 32) and out.centers.shape == (2, 16, 3) and out.cls.shape == (2, 32)
    assert len(out.hidden) == 2 and out.hidden[0].shape == (2, 16, 32)
    torch.testing.assert_close(enc.norm(out.hidden[1]), out.tokens)  # hidden = last block output before norm
    with pytest.raises(ValueError, match="out of range"):
        enc(cloud, hidden_blocks=(2,))


def test_point_encoder_visible_mask(cloud: torch.Tensor) -> None:
    enc = PointEncoder(TINY_ENCODER, num_group=16, group_size=8, drop_path=0.0, cls_token=False).eval()
    neighborhood, centers = enc.group_divider(cloud)
    visible = torch.zeros(2, 16, dtype=torch.bool)
    visible[0, :6] = True
    visible[1, 10:] = True
    out = enc.forward_tokens(neighborhood, centers, visible_mask=visible)
    assert out.cls is None and out.tokens.shape == (2, 6, 32)
    torch.testing.assert_close(out.centers[1], centers[1, 10:])
    visible[1, 9] = True
    with pytest.raises(ValueError, match="same number"):
        enc.forward_tokens(neighborhood, centers, visible_mask=visible)

"""MMPD: the alignment losses, the frozen teacher of stage 2, token shuffling, the backbone choice, the stages."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from bench.config import resolve
from bench.errors import ConfigError
from bench.identity import stage_hash
from bench.registry import load_plugins
from bench.schema import StageConfig
from methods.blocks.encoder import EncoderConfig
from methods.mmpd import MMPD, MMPDConfig

load_plugins()
TINY = MMPDConfig(encoder=EncoderConfig(trans_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, encoder_dims=32),
                  num_group=16, group_size=8, decoder_depth=1, decoder_num_heads=2)  # fmt: skip


def tiny(**changes) -> MMPD:
    torch.manual_seed(0)
    return MMPD(replace(TINY, **changes))


def batch(n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {"xyz": torch.rand(n, 128, 3, generator=g), "teachers.text": torch.randn(n, 384, generator=g),
            "teachers.image": torch.randn(n, 1280, generator=g)}


def test_smoothl1_alignment_vanishes_on_the_target_and_infonce_matches_its_definition() -> None:
    method = tiny()
    target = torch.randn(3, 8)
    assert method.alignment(2 * target, target, "smoothl1").item() == pytest.approx(0.0, abs=1e-7)
    p, t = F.normalize(torch.randn(2, 8), dim=-1), F.normalize(torch.randn(2, 8), dim=-1)
    scale = 1 / 0.07
    logits = (scale * p @ t.t()).tolist()
    by_hand = 0.0
    for row in range(2):  # symmetric cross-entropy, written out
        own = math.exp(logits[row][row])
        by_hand += -math.log(own / sum(math.exp(v) for v in logits[row])) / 4
        by_hand += -math.log(own / sum(math.exp(logits[k][row]) for k in range(2))) / 4
    assert method.alignment(p, t, "infonce").item() == pytest.approx(by_hand, rel=1e-5)


@pytest.mark.parametrize("readout", ["cls_heads", "tokens"])
def test_align_stage_trains_the_encoder_against_both_teachers(readout: str) -> None:
    method = tiny(readout=readout).train()
    out = method(batch())
    out["loss"].backward()
    assert {"text_loss", "image_loss", "logit_scale"} <= set(out)
    assert method.align_encoder.blocks.blocks[0].attn.qkv.weight.grad is not None
    assert method.logit_scale.grad is not None


def test_align_stage_without_the_side_data_names_the_command() -> None:
    with pytest.raises(ConfigError, match="bench data prepare teachers"):
        tiny()({"xyz": torch.rand(2, 128, 3)})


def test_distill_stage_keeps_the_teacher_frozen_and_trains_the_student() -> None:
    method = tiny()
    method.on_stage_start(StageConfig(name="distill"))
    method.train()
    assert not method.align_encoder.training and method.MAE_encoder.training
    before = {k: v.clone() for k, v in method.align_encoder.state_dict().items()}
    out = method(batch())
    out["loss"].backward()
    assert {"recon_loss", "local_loss", "global_loss"} <= set(out)
    assert all(torch.equal(before[k], v) for k, v in method.align_encoder.state_dict().items())
    assert method.MAE_encoder.blocks.blocks[0].attn.qkv.weight.grad is not None
    assert method.local_proj.weight.grad is not None and method.global_proj.weight.grad is not None


def test_student_can_start_from_the_teacher() -> None:
    method = tiny(student_init="teacher")
    method.on_stage_start(StageConfig(name="distill"))
    assert torch.equal(method.MAE_encoder.norm.weight, method.align_encoder.norm.weight)
    assert torch.equal(method.MAE_encoder.pos_embed[0].weight, method.align_encoder.pos_embed[0].weight)


def test_pos_swap_exchanges_positions_among_a_fraction_of_the_visible_tokens() -> None:
    method = tiny(shuffle="pos_swap", shuffle_fraction=0.5)
    order = method.position_order(3, 10)
    assert order.shape == (3, 10)
    for row in order:
        assert sorted(row.tolist()) == list(range(10))  # a permutation ...
        assert int((row != torch.arange(10)).sum()) <= 5  # ... of at most half of the tokens
    assert tiny().position_order(3, 10) is None


def test_order_shuffling_is_a_no_op_on_a_vit() -> None:
    """Self-attention with positions attached is permutation-equivariant: permuting the visible tokens permutes
    the outputs and changes nothing else (why `order` warns)."""
    with pytest.warns(UserWarning, match="no-op"):
        replace(TINY, shuffle="order").validate()
    encoder = tiny().MAE_encoder.eval()
    neighborhood, centers = encoder.group_divider(torch.rand(2, 128, 3))
    perm = torch.randperm(16)
    plain = encoder.forward_tokens(neighborhood, centers)
    shuffled = encoder.forward_tokens(neighborhood[:, perm], centers[:, perm])
    assert torch.allclose(plain.tokens[:, perm], shuffled.tokens, atol=1e-5)
    assert torch.allclose(plain.cls, shuffled.cls, atol=1e-5)


@pytest.mark.parametrize("backbone", ["point_mae", "scratch"])
def test_the_backbone_is_any_registered_encoder_of_visible_patches(backbone: str) -> None:
    method = tiny(backbone=backbone)
    method.on_stage_start(StageConfig(name="distill"))
    assert torch.isfinite(method(batch())["loss"])
    encoder = MMPD.build_backbone(method.cfg, num_group=16, group_size=8, drop_path=0.0)
    prefixed = {k[len("MAE_encoder."):]: v for k, v in method.state_dict().items() if k.startswith("MAE_encoder.")}
    encoder.load_state_dict(prefixed)
    assert encoder(torch.rand(2, 128, 3)).tokens.shape == (2, 16, 32)


def test_a_backbone_that_cannot_encode_visible_patches_is_refused() -> None:
    with pytest.raises(ConfigError, match="must encode visible patches"):
        tiny(backbone="point_mge")
    with pytest.raises(ConfigError, match="another registered representation method"):
        tiny(backbone="mmpd")


def test_a_change_to_stage_two_re_runs_stage_two_only() -> None:
    base = resolve("scanobjectnn", "mmpd", profile="demo")
    changed = resolve("scanobjectnn", "mmpd", profile="demo", overrides=["pretrain.stages.1.trainer.epochs=7"])
    kinds = ["synthetic", "synthetic"]
    assert stage_hash(changed, 0, kinds) == stage_hash(base, 0, kinds)
    assert stage_hash(changed, 1, kinds) != stage_hash(base, 1, kinds)

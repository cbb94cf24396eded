"""The fast channels-last patch embedding equals a literal Conv1d mini-PointNet (train and eval mode), and its float32
gradients are as close to float64 as the literal layout's (issue 14 item 15: the flat BatchNorm's float32 sums)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from methods.blocks.patch_embed import PatchEmbed, batch_norm_rows


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


#: parameters whose exact gradient is 0 (a BatchNorm removes any per-channel constant added before it)
ZERO_GRADIENT = {"first_conv.0.bias", "first_conv.3.bias", "second_conv.0.bias"}


def _gradients(module: PatchEmbed, patches: Tensor, weights: Tensor, literal: bool) -> dict[str, Tensor]:
    out = literal_forward(module, patches) if literal else module(patches)
    (out * weights).sum().backward()
    return {name: p.grad for name, p in module.named_parameters() if name not in ZERO_GRADIENT}


@pytest.mark.parametrize("literal", [False, True], ids=["ours", "reference-layout"])
def test_float32_gradients_match_float64(literal: bool) -> None:
    """Training mode, 2 x 64 patches of 32 points (4096 BatchNorm rows): float32 within 1e-5 of float64 for both
    layouts (both ~1e-6; the flat layout through torch's channels-last BatchNorm gave ~3e-3 here)."""
    torch.manual_seed(0)
    module = PatchEmbed(384)
    patches, weights = torch.randn(2, 64, 32, 3) * 0.08, torch.randn(2, 64, 384)
    single = _gradients(copy.deepcopy(module), patches, weights, literal)
    double = _gradients(copy.deepcopy(module).double(), patches.double(), weights.double(), literal)
    for name, grad in single.items():
        error = ((grad.double() - double[name]).norm() / double[name].norm()).item()
        assert error < 1e-5, (name, error)


def _bn_pair(**options) -> tuple[nn.BatchNorm1d, nn.BatchNorm1d]:
    bn = nn.BatchNorm1d(6, **options)
    if bn.affine:
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return bn, copy.deepcopy(bn)


@pytest.mark.parametrize("options", [{}, {"momentum": None}, {"track_running_stats": False}])
def test_batch_norm_rows_is_nn_batchnorm(options) -> None:
    """Same outputs, gradients and running statistics as ``nn.BatchNorm1d`` over two training steps, then eval."""
    torch.manual_seed(1)
    ours, theirs = _bn_pair(**options)
    for _ in range(2):
        x = (torch.randn(300, 6) * 2 + 3).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        dy = torch.randn(300, 6)
        y, y_ref = batch_norm_rows(ours, x), theirs(x_ref)
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        (y * dy).sum().backward()
        (y_ref * dy).sum().backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    ours.eval()
    theirs.eval()
    x = torch.randn(50, 6)
    torch.testing.assert_close(batch_norm_rows(ours, x), theirs(x), rtol=1e-5, atol=1e-5)


def test_batch_norm_rows_sums_precisely() -> None:
    """65536 rows offset by 3, a sparse same-signed dy (like a max-pool's): float32 against float64 (measured: input
    gradient 1.6e-7, weight gradient 3.7e-5, running mean 7e-8; torch's flat BatchNorm: 3.8e-6, 9.1e-4, 1.8e-6)."""
    torch.manual_seed(2)
    bn = nn.BatchNorm1d(32)
    x = torch.randn(65536, 32) * 0.3 + 3
    dy = (torch.rand(65536, 32) < 0.05) * torch.rand(65536, 32)
    results = []
    for dtype in (torch.float32, torch.float64):
        module = copy.deepcopy(bn).to(dtype)
        inputs = x.to(dtype, copy=True).requires_grad_()
        (batch_norm_rows(module, inputs) * dy.to(dtype)).sum().backward()
        results.append({"input": inputs.grad, "weight": module.weight.grad, "bias": module.bias.grad,
                        "running_mean": module.running_mean, "running_var": module.running_var})
    tolerance = {"input": 1e-6, "weight": 1e-4, "bias": 1e-6, "running_mean": 1e-6, "running_var": 1e-6}
    for name, single in results[0].items():
        double = results[1][name]
        error = ((single.double() - double).norm() / double.norm()).item()
        assert error < tolerance[name], (name, error)

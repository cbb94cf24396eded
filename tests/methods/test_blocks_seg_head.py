"""Segmentation head: parity with a literal re-statement of the reference ``get_model`` head (concat, then
conv, per point), official names and widths, block choice, category restriction of inputs, cls-token removal."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from methods_support import TINY_ENCODER, TINY_POINTS

from methods.blocks.encoder import PointEncoder
from methods.blocks.seg_head import PointSegmenter, SegmentationHead, segmentation_blocks


def literal_reference(head: SegmentationHead, xyz, centers, levels, category=None):
    """The reference forward, step by step as in ``pt.py`` / yanx27 ``PointNetFeaturePropagation`` (channels
    first, brute-force squared distances sorted, concat before every conv, global feature repeated per point)."""
    b, n, _ = xyz.shape
    x = torch.cat([lv.transpose(1, 2) for lv in levels], dim=1)  # (B, F, G)
    glob = [x.max(2)[0].unsqueeze(-1).repeat(1, 1, n), x.mean(2).unsqueeze(-1).repeat(1, 1, n)]
    if category is not None:
        one_hot = torch.eye(head.category_dim)[category].view(b, -1, 1)
        glob.append(head.label_conv(one_hot).repeat(1, 1, n))
    dists = ((xyz[:, :, None] - centers[:, None]) ** 2).sum(-1)
    dists, idx = dists.sort(dim=-1)
    dists, idx = dists[:, :, :3], idx[:, :, :3]
    recip = 1.0 / (dists + 1e-8)
    weight = recip / recip.sum(2, keepdim=True)
    feats = x.transpose(1, 2)
    gathered = torch.stack([feats[i][idx[i]] for i in range(b)])  # (B, N, 3, F)
    interp = (gathered * weight[..., None]).sum(2)
    h = torch.cat([xyz, interp], dim=-1).transpose(1, 2)
    for conv, bn in zip(head.propagation_0.mlp_convs, head.propagation_0.mlp_bns, strict=True):
        h = F.relu(bn(conv(h)))
    h = torch.cat([h, *glob], dim=1)
    h = head.dp1(F.relu(head.bns1(head.convs1(h))))
    h = F.relu(head.bns2(head.convs2(h)))
    return head.convs3(h).transpose(1, 2)


@pytest.mark.parametrize("category_dim", [16, 0])
def test_head_matches_the_literal_reference(category_dim: int) -> None:
    head = SegmentationHead(24, 50, category_dim=category_dim).eval()
    for bn in [m for m in head.modules() if isinstance(m, torch.nn.BatchNorm1d)]:  # non-trivial eval statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    xyz, centers = torch.randn(2, 100, 3), torch.randn(2, 12, 3)
    levels = [torch.randn(2, 12, 24) for _ in range(3)]
    category = torch.tensor([3, 15]) if category_dim else None
    out = head(xyz, centers, levels, category)
    assert out.shape == (2, 100, 50)
    torch.testing.assert_close(out, literal_reference(head, xyz, centers, levels, category), rtol=1e-4, atol=1e-4)


def test_vit_s_head_has_the_reference_names_and_widths() -> None:
    shapes = {k: tuple(v.shape) for k, v in SegmentationHead(384, 50, category_dim=16).state_dict().items()}
    assert shapes["label_conv.0.weight"] == (64, 16, 1) and "label_conv.0.bias" not in shapes
    assert shapes["propagation_0.mlp_convs.0.weight"] == (1536, 1155, 1)
    assert shapes["propagation_0.mlp_convs.1.weight"] == (1024, 1536, 1)
    assert shapes["propagation_0.mlp_bns.1.running_var"] == (1024,)
    assert shapes["convs1.weight"] == (512, 3392, 1) and shapes["convs2.weight"] == (256, 512, 1)
    assert shapes["convs3.weight"] == (50, 256, 1) and shapes["bns2.weight"] == (256,)


def test_semantic_head_without_category_and_with_colour_input() -> None:
    head = SegmentationHead(16, 13, point_dim=6, category_dim=0)
    assert head.label_conv is None and head.convs1.in_channels == 8 * 16 // 3 + 2 * 3 * 16
    assert head.propagation_0.mlp_convs[0].in_channels == 6 + 3 * 16
    out = head(torch.randn(2, 40, 6), torch.randn(2, 8, 3), [torch.randn(2, 8, 16)] * 3)
    assert out.shape == (2, 40, 13)


def test_bad_inputs_are_named() -> None:
    head = SegmentationHead(16, 50, category_dim=16)
    xyz, centers, levels = torch.randn(2, 40, 3), torch.randn(2, 8, 3), [torch.randn(2, 8, 16)] * 3
    with pytest.raises(ValueError, match="category"):
        head(xyz, centers, levels)
    with pytest.raises(ValueError, match="3 feature levels"):
        head(xyz, centers, levels[:2], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        head(torch.randn(2, 40, 4), centers, levels, torch.tensor([0, 1]))


@pytest.mark.parametrize("depth,blocks", [(12, [3, 7, 11]), (6, [1, 3, 5]), (4, [0, 1, 3]), (2, [0, 0, 1])])
def test_segmentation_blocks(depth: int, blocks: list[int]) -> None:
    assert segmentation_blocks(depth) == blocks


def test_segmenter_drops_the_cls_token_and_reads_normed_hidden_blocks() -> None:
    backbone = PointEncoder(TINY_ENCODER, num_group=16, group_size=8, drop_path=0.0, cls_token=True)
    model = PointSegmenter(backbone, 50, category_dim=16).eval()
    assert model.backbone.cls_token is None and not any("cls" in k for k in model.state_dict())
    assert model.blocks == [0, 0, 1]
    cloud, category = torch.rand(2, TINY_POINTS, 3), torch.tensor([0, 7])
    logits = model(cloud, category)
    assert logits.shape == (2, TINY_POINTS, 50)
    out = backbone(cloud, hidden_blocks=[0, 0, 1])
    torch.testing.assert_close(backbone.norm(out.hidden[-1]), out.tokens)  # the last level is the final output
    expected = model.head(cloud, out.centers, [backbone.norm(h) for h in out.hidden], category)
    torch.testing.assert_close(logits, expected)


def test_segmenter_trains_end_to_end() -> None:
    backbone = PointEncoder(TINY_ENCODER, num_group=16, group_size=8, drop_path=0.0)
    model = PointSegmenter(backbone, 4, category_dim=2)
    cloud = torch.rand(4, TINY_POINTS, 3)
    target = (cloud[..., 0] > 0.5).long() + 2 * (cloud[..., 1] > 0.5).long()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = F.cross_entropy(model(cloud, torch.tensor([0, 1, 0, 1])).transpose(1, 2), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("head."))

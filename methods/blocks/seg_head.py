"""Point segmentation model of the Point-MAE family (``segmentation/models/pt.py`` ``get_model``), shared by part
segmentation (ShapeNetPart: with the category one-hot) and semantic segmentation (S3DIS: ``category_dim=0``).

Reference structure (C = 384, L = 3 levels, K = 50 parts; widths in brackets at those values):
- the outputs of blocks [3, 7, 11] (0-based), each through the encoder's final LayerNorm, concatenated: F = L*C
  [1152] features per patch; global feature = concat(max, mean over patches) [2F = 2304];
- ``label_conv``: Conv1d(category_dim -> 64, no bias), BN, LeakyReLU(0.2) of the category one-hot [16 -> 64];
- ``propagation_0`` (PointNet++ feature propagation, yanx27 ``PointNetFeaturePropagation``): the 3 nearest patch
  centres of every point (:func:`extensions.ops.three_nn`), weights 1 / (squared distance + 1e-8) normalised to sum
  1 (the reference's ``square_distance`` weighting, not ``ops.interpolation_weights``' 1 / distance), features
  interpolated (:func:`extensions.ops.three_interpolate`) and concatenated after the per-point input (xyz), then
  Conv1d+BN+ReLU layers ``propagation_dims`` [1155 -> 1536 -> 1024];
- ``convs1`` Conv1d(propagation + 2F + 64 -> 512) [3392 -> 512], BN, ReLU, Dropout(0.5), ``convs2`` (512 -> 256),
  BN, ReLU, ``convs3`` (256 -> K). The reference returns log_softmax; this returns the logits (cross-entropy on
  logits = its NLL on log_softmax, and the argmax is the same).

Parameter names are the official ones (``label_conv.*``, ``propagation_0.mlp_convs.N.*`` / ``mlp_bns.N.*``,
``convs1-3``, ``bns1-2``). Head init (``init``, :class:`SegmentationHeadConfig`, the partseg / semseg protocols'
``suite.head``, set per method and suite in the method yaml's recipe): ``torch_default`` = PyTorch's default for
every layer, as Point-MAE and Point-PQAE part segmentation (``segmentation/models/pt.py`` ``get_model``, no
re-initialisation); ``trunc_normal`` = Conv1d/Linear trunc_normal(.02), zero bias, LayerNorm 1/0, BatchNorm kept,
as Point-MaDi part segmentation (``part_segmentation/models/pt.py`` L228-241) and Point-PQAE / Point-MaDi S3DIS
(``semantic_segmentation/models/pt.py`` L232-245 / L230-243). Those references re-initialise the whole model,
encoder included, before loading the checkpoint; here only the head is: the encoder is the method's (its
checkpoint overwrites it either way).
Two linear layers are evaluated in an equivalent cheaper order (same parameters, same values up to rounding):
the first propagation conv is applied to the G patch features before interpolating (interpolation weights sum
to 1, so it commutes with the affine map), and ``convs1``'s global-feature columns once per cloud, not per point.
Widths default to the reference ratios of C (``propagation_dims`` = (4C, 8C/3), ``mlp_dims`` = (4C/3, 2C/3)),
so the ViT-S head is exactly the reference and tiny encoders get a proportionally small head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import Encoder
from bench.errors import ConfigError
from extensions import ops
from methods.blocks.transformer import apply_init

#: the reference's blocks for depth 12 (``fetch_idx = [3, 7, 11]``)
REFERENCE_BLOCKS = (3, 7, 11)
#: initialisations of the head's layers (module docstring)
SEG_HEAD_INITS = ("torch_default", "trunc_normal")


def known_fields(cls: type, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``options`` as keyword arguments of dataclass ``cls``; ConfigError naming ``where`` for an unknown key."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown {where} key(s) {unknown}; known: {known}")
    return dict(options)


@dataclass
class SegmentationHeadConfig:
    """``suite.head`` of the partseg and semseg protocols: the head's ``init`` (module docstring)."""

    init: str = "torch_default"

    @classmethod
    def of(cls, options: Mapping[str, Any], where: str = "suite.head") -> SegmentationHeadConfig:
        """The validated config of a plain mapping of its fields (ConfigError naming ``where`` when wrong)."""
        head = cls(**known_fields(cls, options, where))
        head.validate(where)
        return head

    def validate(self, where: str = "suite.head") -> None:
        """Raise ConfigError naming ``<where>.init`` for an unknown init."""
        if self.init not in SEG_HEAD_INITS:
            raise ConfigError(f"{where}.init={self.init!r} is not one of {', '.join(SEG_HEAD_INITS)}")


def segmentation_blocks(depth: int, levels: int = 3) -> list[int]:
    """0-based blocks the head reads: the last block of each of ``levels`` equal parts of the encoder,
    ``max(0, (k + 1) * depth // levels - 1)``: [3, 7, 11] at depth 12 (the reference), [0, 1, 3] at depth 4.
    Encoders shallower than ``levels`` repeat blocks (the head keeps its L*C input width)."""
    if depth < 1 or levels < 1:
        raise ValueError(f"segmentation_blocks: need depth >= 1 and levels >= 1, got depth={depth}, levels={levels}")
    return [max(0, (k + 1) * depth // levels - 1) for k in range(levels)]


def inverse_square_weights(dist2: Tensor, eps: float = 1e-8) -> Tensor:
    """Reference feature-propagation weights: 1 / (squared distance + eps), normalised to sum 1 over the 3 NN."""
    recip = 1.0 / (dist2.clamp_min(0) + eps)
    return recip / recip.sum(-1, keepdim=True)


class FeaturePropagation(nn.Module):
    """``PointNetFeaturePropagation``: interpolate (B, G, F) patch features to N points, concat after the (B, N, P)
    per-point input, then Conv1d(1x1)+BN+ReLU per entry of ``dims``. Returns (B, dims[-1], N), channels first."""

    def __init__(self, point_dim: int, feature_dim: int, dims: Sequence[int]) -> None:
        super().__init__()
        if not dims:
            raise ValueError("FeaturePropagation needs at least one layer width")
        self.point_dim = point_dim
        widths = [point_dim + feature_dim, *dims]
        self.mlp_convs = nn.ModuleList(nn.Conv1d(a, b, 1) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.mlp_bns = nn.ModuleList(nn.BatchNorm1d(b) for b in dims)

    def forward(self, xyz: Tensor, points: Tensor, centers: Tensor, features: Tensor) -> Tensor:
        """xyz (B, N, 3) query positions, points (B, N, P) per-point input, centers (B, G, 3), features (B, G, F)."""
        idx, dist2 = ops.three_nn(xyz, centers)
        weight = inverse_square_weights(dist2)
        first = self.mlp_convs[0]
        split = self.point_dim
        # conv(concat(points, interp(features))) = W_p points + interp(W_f features) + b, as the weights sum to 1
        projected = F.conv1d(features.transpose(1, 2), first.weight[:, split:]).transpose(1, 2)  # (B, G, D0)
        # interpolated in float32 (under bf16 autocast too), so the compiled ops apply
        x = ops.three_interpolate(projected.float().contiguous(), idx, weight.float()).transpose(1, 2)  # (B, D0, N)
        if split:
            x = x + F.conv1d(points.transpose(1, 2), first.weight[:, :split])
        x = F.relu(self.mlp_bns[0](x + first.bias[None, :, None]))
        for conv, bn in zip(self.mlp_convs[1:], self.mlp_bns[1:], strict=True):
            x = F.relu(bn(conv(x)))
        return x


class SegmentationHead(nn.Module):
    """Per-point logits from multi-level patch tokens (reference part-segmentation head; see the module doc).

    token_dim: C, the width of each level; num_levels: L, how many levels ``forward`` receives (concatenated);
    num_classes: output classes (50 parts / 13 S3DIS classes); point_dim: width of the per-point input
    concatenated before propagation (3 = xyz as the reference; e.g. 6 for xyz + rgb); category_dim: size of the
    category one-hot fed through ``label_conv`` (16 for ShapeNetPart; 0 = no category input); label_dim: its
    output width (64); propagation_dims / mlp_dims: layer widths (default: the reference's ratios of C);
    init: one of :data:`SEG_HEAD_INITS` (module docstring).
    """

    def __init__(
        self,
        token_dim: int,
        num_classes: int,
        *,
        num_levels: int = 3,
        point_dim: int = 3,
        category_dim: int = 0,
        label_dim: int = 64,
        propagation_dims: Sequence[int] | None = None,
        mlp_dims: Sequence[int] | None = None,
        dropout: float = 0.5,
        init: str = "torch_default",
    ) -> None:
        super().__init__()
        if init not in SEG_HEAD_INITS:
            raise ValueError(f"SegmentationHead: init must be one of {', '.join(SEG_HEAD_INITS)}, got {init!r}")
        feature_dim = num_levels * token_dim
        propagation_dims = list(propagation_dims or (4 * token_dim, 8 * token_dim // 3))
        mlp_dims = list(mlp_dims or (4 * token_dim // 3, 2 * token_dim // 3))
        if len(mlp_dims) != 2:
            raise ValueError(f"SegmentationHead: mlp_dims must hold 2 widths (convs1, convs2), got {mlp_dims}")
        self.num_levels, self.point_dim, self.category_dim = num_levels, point_dim, category_dim
        self.num_classes = num_classes
        if category_dim:
            self.label_conv = nn.Sequential(
                nn.Conv1d(category_dim, label_dim, 1, bias=False), nn.BatchNorm1d(label_dim), nn.LeakyReLU(0.2)
            )
        else:
            self.label_conv = None
        self.local_dim = propagation_dims[-1]
        self.propagation_0 = FeaturePropagation(point_dim, feature_dim, propagation_dims)
        self.convs1 = nn.Conv1d(self.local_dim + 2 * feature_dim + (label_dim if category_dim else 0), mlp_dims[0], 1)
        self.bns1 = nn.BatchNorm1d(mlp_dims[0])
        self.dp1 = nn.Dropout(dropout)
        self.convs2 = nn.Conv1d(mlp_dims[0], mlp_dims[1], 1)
        self.bns2 = nn.BatchNorm1d(mlp_dims[1])
        self.convs3 = nn.Conv1d(mlp_dims[1], num_classes, 1)
        apply_init(self, init)

    def forward(
        self, points: Tensor, centers: Tensor, levels: Sequence[Tensor], category: Tensor | None = None
    ) -> Tensor:
        """points (B, N, point_dim) whose first 3 columns are xyz; centers (B, G, 3); ``num_levels`` tensors
        (B, G, C) (already normalised); category (B,) int64 when ``category_dim`` > 0 -> logits (B, N, classes)."""
        self._check(points, levels, category)
        feats = torch.cat(list(levels), dim=-1)  # (B, G, L*C)
        glob = [feats.max(dim=1).values, feats.mean(dim=1)]
        if self.label_conv is not None:
            one_hot = F.one_hot(category.long(), self.category_dim).to(feats.dtype)
            glob.append(self.label_conv(one_hot.unsqueeze(-1)).squeeze(-1))
        glob_t = torch.cat(glob, dim=-1).unsqueeze(-1)  # (B, 2F [+64], 1)
        local = self.propagation_0(points[..., :3], points, centers, feats)  # (B, D, N)
        w = self.convs1.weight
        x = F.conv1d(local, w[:, : self.local_dim], self.convs1.bias) + F.conv1d(glob_t, w[:, self.local_dim :])
        x = self.dp1(F.relu(self.bns1(x)))
        x = F.relu(self.bns2(self.convs2(x)))
        return self.convs3(x).transpose(1, 2)

    def _check(self, points: Tensor, levels: Sequence[Tensor], category: Tensor | None) -> None:
        if points.dim() != 3 or points.shape[-1] != self.point_dim:
            raise ValueError(f"SegmentationHead: points must be (B, N, {self.point_dim}), got {tuple(points.shape)}")
        if len(levels) != self.num_levels:
            raise ValueError(f"SegmentationHead: expected {self.num_levels} feature levels, got {len(levels)}")
        if self.category_dim and (category is None or category.shape != points.shape[:1]):
            got = None if category is None else tuple(category.shape)
            raise ValueError(f"SegmentationHead: category must be ({points.shape[0]},) class indices, got {got}")


class PointSegmenter(nn.Module):
    """Backbone (forward(xyz, hidden_blocks) -> EncoderOutput) + :class:`SegmentationHead`.

    forward(points (B, N, point_dim), category (B,) or None) -> (B, N, num_classes) logits. The backbone sees
    ``points[..., :3]``; its ``hidden`` outputs of ``blocks`` (default :func:`segmentation_blocks` of its
    ``depth``) go through its final LayerNorm ``norm`` when it has one (the reference's shared ``self.norm``).
    The reference segmentation model has no cls token: a backbone built with one has it removed (``cls_token`` /
    ``cls_pos`` set to None) unless ``keep_cls_token``; encoder checkpoints are loaded after that. ``head_options``
    go to :class:`SegmentationHead` (e.g. ``init``).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        category_dim: int = 0,
        point_dim: int = 3,
        blocks: Sequence[int] | None = None,
        keep_cls_token: bool = False,
        **head_options,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, Encoder):
            raise TypeError(f"{type(backbone).__name__} is not a bench.api.Encoder; PointSegmenter needs its width "
                            "and depth")
        width = backbone.out_dim
        if blocks is None:
            blocks = segmentation_blocks(backbone.depth)
        if not keep_cls_token:
            backbone.drop_cls_token()
        self.backbone = backbone
        self.blocks = [int(b) for b in blocks]
        self.head = SegmentationHead(
            width, num_classes, num_levels=len(self.blocks), point_dim=point_dim, category_dim=category_dim,
            **head_options,
        )

    def forward(self, points: Tensor, category: Tensor | None = None) -> Tensor:
        out = self.backbone(points[..., :3].contiguous(), hidden_blocks=self.blocks)
        levels = [self.backbone.norm_hidden(h) for h in out.hidden]
        return self.head(points, out.centers, levels, category)

"""Point-PQAE (Zhang et al., ICCV 2025): cross-reconstruct two decoupled views through a positional query.

Choices (faithful to the authors' ``models/Point_PQAE.py``, ``models/RandomCrop.py``, ``models/pos.py`` and
``cfgs/pretrain/base.yaml``, aHapBean/Point-PQAE; each is a config field):
- Views (:func:`methods.blocks.views.decoupled_view`): two independent crops per cloud, each keeping the
  ``int(N * r)`` points nearest a random seed, r ~ U[min_crop_rate=0.6, 1] (one r per view and batch), min-max
  normalised per axis to [-1, 1] (box centre recorded), then rotated about Y by its own random angle.
- Grouping per view: 64 FPS centres (start index 0) x 32 kNN points; patches centred, not scaled.
- Encoder ``PQAE_encoder``: the shared ViT-S :class:`PointEncoder` WITH cls token, on all patches of each view
  (no masking), shared by both views (each view is embedded separately: BatchNorm statistics per view, as the
  reference), drop path linspace(0, 0.1, 12).
- VRPE: sinusoidal embedding (:mod:`methods.blocks.positional`, dim/12 frequencies per coordinate) of the 6-D
  (target-view patch centre, box-centre offset other - target); the offset is in the input (unrotated,
  unnormalised) frame, as in the reference; rotation angles are not used.
- Positional query ``PQattn_contrast``: cross-attention (q/kv linears, no bias, 6 heads, no residual, no norm)
  with the target view's VRPE as queries over the other view's encoded patch tokens (cls excluded); then
  ``PQ_decoder``: 4 pre-norm self-attention blocks without positions, drop path linspace(0, 0.1, 4), LayerNorm
  on every token; ``PQ_linear`` C -> 3*K points per patch in the patch's centred frame.
- Loss: the sum over the two directions (view 1 from view 2, view 2 from view 1) of the Chamfer (``cfg.loss``)
  between each predicted and true patch, the B*G patches as a batch of K-point clouds. ``cdl2`` =
  ``extensions.ops`` Chamfer-L2: mean of squared NN distances in both directions, summed (the reference's
  ``ChamferDistanceL2``); ``cdl1`` = ``ChamferDistanceL1``; ``cos`` = minus the cosine of the flattened patches.
- Init as the reference: the encoder's own (Linear/Conv1d trunc_normal(.02), LayerNorm 1/0, cls tokens
  trunc_normal(.02)), then ``Point_PQAE._init_weights`` over the whole model: EVERY Linear (encoder included)
  normal(mean 0.02, std 0.01) with zero bias, BatchNorm/LayerNorm 1/0; Conv1d keep trunc_normal(.02)
  (Point_PQAE.py L129, L139-150). It overwrites the reference ``PQ_decoder``'s own xavier init
  (``models/transformer.py`` L206-215) on every Linear, so the decoder's first init here (trunc_normal) only
  shifts the random stream, never the distribution of a weight.
- ``decoder_pos_embed`` exists in the reference (and its checkpoint) but is never used; it is kept for the
  layout and parameter count (29,597,024), frozen (``requires_grad=False``: it never gets a gradient in the
  reference either, and DDP without ``find_unused_parameters`` rejects trainable parameters that get none).
- Downstream backbone: the same encoder WITH ``cls_token``/``cls_pos``, which the pre-trained checkpoint holds.
State-dict names equal the official release (``PQAE_encoder.*``, ``decoder_pos_embed.*``, ``PQ_decoder.*``,
``PQattn_contrast.*``, ``PQ_linear.*``), so the authors' checkpoint loads as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import REPRESENTATION, Method, MethodConfig
from bench.errors import ConfigError
from bench.registry import METHODS
from extensions import ops
from methods.blocks.encoder import EncoderConfig, PointEncoder
from methods.blocks.positional import sinusoidal_embedding
from methods.blocks.transformer import CrossAttention, TransformerDecoder
from methods.blocks.views import View, decoupled_view

#: config name -> extensions.ops function name (looked up per call); "cos" is computed here
LOSSES = {"cdl2": "chamfer_l2", "cdl1": "chamfer_l1", "cos": None}


@dataclass
class PointPQAEConfig(MethodConfig):
    """Point-PQAE pre-training model (official ``cfgs/pretrain/base.yaml``)."""

    name: str = "point_pqae"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    num_group: int = 64
    group_size: int = 32
    min_crop_rate: float = 0.6
    rotate_views: bool = True
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    loss: str = "cdl2"
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = EncoderConfig.coerce(self.encoder)

    def validate(self) -> None:
        """Raise ConfigError on impossible settings."""
        self.encoder.validate()
        if self.loss not in LOSSES:
            raise ConfigError(f"method.loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if not 0.0 < self.min_crop_rate <= 1.0:
            raise ConfigError(f"method.min_crop_rate must be in (0, 1], got {self.min_crop_rate}")
        width = self.encoder.trans_dim
        if width % self.decoder_num_heads != 0:
            raise ConfigError(
                f"encoder.trans_dim={width} must be divisible by method.decoder_num_heads={self.decoder_num_heads}"
            )
        if width < 12:
            raise ConfigError(f"encoder.trans_dim={width} must be at least 12 (VRPE: 6 coordinates x sin/cos)")


def init_pqae_weights(module: nn.Module) -> None:
    """``Point_PQAE._init_weights``: Linear normal(mean .02, std .01), bias 0; BatchNorm1d / LayerNorm 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.02, 0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.LayerNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def view_relative_embedding(centers: Tensor, offset: Tensor, dim: int) -> Tensor:
    """VRPE: (B, G, 3) target-view patch centres, (B, 3) box-centre offset (other - target) -> (B, G, dim).

    The reference asserts ``dim % 12 == 0``; for other (tiny) widths the last ``dim % 12`` channels are zero."""
    relative = torch.cat([centers, offset.unsqueeze(1).expand(-1, centers.shape[1], -1)], dim=-1)
    pad = dim % 12
    return F.pad(sinusoidal_embedding(relative, dim - pad), (0, pad))


@METHODS.register("point_pqae")
class PointPQAE(Method):
    """Decoupled views, shared encoder, positional-query cross-reconstruction (see the module docstring)."""

    name = "point_pqae"
    display_name = "Point-PQAE"
    capabilities = frozenset({REPRESENTATION})
    checkpoint_prefix = "PQAE_encoder"
    config_class = PointPQAEConfig
    pretrain_dataset = "shapenet55"

    def __init__(self, cfg: PointPQAEConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        enc = cfg.encoder
        dim = enc.trans_dim
        self.PQAE_encoder = PointEncoder(enc, cfg.num_group, cfg.group_size, cfg.drop_path, cls_token=True)
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.PQ_decoder = TransformerDecoder(
            dim, cfg.decoder_depth, cfg.decoder_num_heads, enc.mlp_ratio, enc.qkv_bias, cfg.drop_path
        )
        self.PQattn_contrast = CrossAttention(dim, cfg.decoder_num_heads, qkv_bias=False)
        self.PQ_linear = nn.Linear(dim, 3 * cfg.group_size)
        self.apply(init_pqae_weights)
        self.decoder_pos_embed.requires_grad_(False)  # unused (see the module docstring); DDP needs no grad hook

    def make_views(self, xyz: Tensor) -> tuple[View, View]:
        """Two independent decoupled views of every cloud (``methods.blocks.views``)."""
        rate, rotate = self.cfg.min_crop_rate, self.cfg.rotate_views
        return decoupled_view(xyz, rate, rotate), decoupled_view(xyz, rate, rotate)

    def reconstruct(self, view1: View, view2: View) -> tuple[Tensor, Tensor]:
        """Cross-reconstruction -> (predicted, target) patches, each (2, B*G, K, 3): [view 1 from view 2,
        view 2 from view 1], in the patches' centred frames."""
        enc = self.PQAE_encoder
        neigh1, centers1 = enc.group_divider(view1.points)
        neigh2, centers2 = enc.group_divider(view2.points)
        tokens1 = enc.forward_tokens(neigh1, centers1).tokens  # (B, G, C), cls excluded
        tokens2 = enc.forward_tokens(neigh2, centers2).tokens
        dim = tokens1.shape[-1]
        offset = view2.box_center - view1.box_center
        queries = torch.cat(
            [view_relative_embedding(centers1, offset, dim), view_relative_embedding(centers2, -offset, dim)]
        )
        # both directions as one batch of 2B: the blocks below act per sample, so this equals two calls
        decoded = self.PQ_decoder(self.PQattn_contrast(queries, torch.cat([tokens2, tokens1])))
        b, g, k, _ = neigh1.shape
        predicted = self.PQ_linear(decoded).view(2, b * g, k, 3)
        target = torch.stack([neigh1, neigh2]).view(2, b * g, k, 3)
        return predicted, target

    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """batch["xyz"] (B, N, 3) -> {"loss": pq_loss1 + pq_loss2, "pq_loss1", "pq_loss2" (detached)}."""
        predicted, target = self.reconstruct(*self.make_views(batch["xyz"]))
        losses = self.direction_losses(predicted, target.detach())
        return {"loss": losses.sum(), "pq_loss1": losses[0].detach(), "pq_loss2": losses[1].detach()}

    def direction_losses(self, predicted: Tensor, target: Tensor) -> Tensor:
        """(2, P, K, 3) each -> (2,) the loss of each direction (``cfg.loss``; module docstring)."""
        if self.cfg.loss == "cos":
            flat_p, flat_t = predicted.flatten(2), target.flatten(2)
            return -(F.normalize(flat_p, dim=-1) * F.normalize(flat_t, dim=-1)).sum(-1).mean(-1)
        loss_fn = getattr(ops, LOSSES[self.cfg.loss])
        return torch.stack([loss_fn(predicted[i], target[i]) for i in range(2)])

    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> PointEncoder:
        """The fine-tuning encoder: the pre-trained ``PQAE_encoder`` layout, ``cls_token``/``cls_pos`` included."""
        encoder_cfg: Any = getattr(cfg, "encoder", EncoderConfig())
        return PointEncoder(EncoderConfig.coerce(encoder_cfg), num_group, group_size, drop_path, cls_token=True)

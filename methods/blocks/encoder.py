"""The shared ViT-S patch encoder of the Point-MAE family (Point-MAE ``MaskTransformer`` / ``PointTransformer``).

Official child names (so ``{prefix}.encoder.*``, ``pos_embed.*``, ``blocks.blocks.N.*``, ``norm.*`` and, with a cls
token, ``cls_token`` / ``cls_pos`` load from the authors' checkpoints). ``group_divider`` has no state.

Conventions:
- Tokens are (B, G, C); positional embedding MLP(3 -> 128 -> C, GELU) of the patch centre, added at every block.
- With a cls token, ``cls_token`` and ``cls_pos`` (1, 1, C) are prepended to the tokens and the positions.
- Patch tokens are embedded for ALL patches before a ``visible_mask`` selects some (as the reference does), so
  the patch embedding's BatchNorm statistics in training cover every patch, masked or not.
- Init (``init``): ``trunc_normal`` (default) = the reference pre-training encoders' ``_init_weights``
  (Point_MAE.py ``MaskTransformer`` L234-247): Linear/Conv1d trunc_normal(.02), LayerNorm 1/0, BatchNorm keeps
  PyTorch's default; ``torch_default`` = every layer keeps PyTorch's default, as the reference fine-tuning model
  ``PointTransformer`` (Point_MAE.py L421-474) trained without ``--ckpts`` (``load_model_from_ckpt`` and its
  ``_init_weights`` are never called). Either way the cls tokens are trunc_normal(.02) (Point_MAE.py L473-474).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from bench.api import Encoder, EncoderOutput
from bench.errors import ConfigError
from methods.blocks.grouping import PatchGrouper
from methods.blocks.patch_embed import PatchEmbed
from methods.blocks.transformer import Attention, AttnFactory, TransformerEncoder, apply_init


@dataclass
class EncoderConfig:
    """ViT-S of Point-MAE (protocols.md 3.1). ``encoder_dims`` is the patch-embedding width; Point-MAE feeds
    patch tokens straight into the transformer, so it must equal ``trans_dim``."""

    trans_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    encoder_dims: int = 384
    patch_hidden: int = 128  # mini-PointNet width h (official 128: 3->h->2h, 4h->4h->encoder_dims); tiny models only

    @classmethod
    def coerce(cls, value: EncoderConfig | Mapping[str, Any]) -> EncoderConfig:
        """Accept an EncoderConfig or a plain mapping of its fields (as a YAML loader may hand over)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {f.name for f in fields(cls)})
            if unknown:
                raise ConfigError(f"unknown encoder config key(s) {unknown}; known: {[f.name for f in fields(cls)]}")
            return cls(**value)
        raise ConfigError(f"encoder config must be a mapping of EncoderConfig fields, got {type(value).__name__}")

    def validate(self) -> None:
        """Raise ConfigError on impossible settings."""
        if self.trans_dim % self.num_heads != 0:
            raise ConfigError(
                f"encoder.trans_dim={self.trans_dim} must be divisible by encoder.num_heads={self.num_heads}"
            )
        if self.encoder_dims != self.trans_dim:
            raise ConfigError(
                f"encoder.encoder_dims={self.encoder_dims} must equal encoder.trans_dim={self.trans_dim}: the patch "
                "tokens enter the transformer without a projection (as in Point-MAE)"
            )
        if self.depth < 1:
            raise ConfigError(f"encoder.depth must be >= 1, got {self.depth}")


class PointEncoder(Encoder):
    """Grouping + patch embedding + pos-embed + transformer + final LayerNorm; forward(xyz) -> EncoderOutput."""

    def __init__(
        self,
        cfg: EncoderConfig,
        num_group: int,
        group_size: int,
        drop_path: float,
        cls_token: bool = True,
        attn_layer: AttnFactory = Attention,
        init: str = "trunc_normal",
    ) -> None:
        super().__init__()
        cfg.validate()
        dim = cfg.trans_dim
        self.out_dim = dim
        self.depth = cfg.depth
        if cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            self.register_parameter("cls_token", None)
            self.register_parameter("cls_pos", None)
        self.group_divider = PatchGrouper(num_group, group_size)
        self.encoder = PatchEmbed(cfg.encoder_dims, cfg.patch_hidden)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = TransformerEncoder(
            dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, drop_path, attn_layer=attn_layer
        )
        self.norm = nn.LayerNorm(dim)
        apply_init(self, init)
        if cls_token:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_pos, std=0.02)

    @property
    def num_group(self) -> int:
        return self.group_divider.num_group

    @property
    def group_size(self) -> int:
        return self.group_divider.group_size

    def drop_cls_token(self) -> None:
        """Remove ``cls_token`` / ``cls_pos`` (segmentation models have none)."""
        self.cls_token = None
        self.cls_pos = None

    def norm_hidden(self, hidden: Tensor) -> Tensor:
        """The final LayerNorm, as the reference segmentation model applies it to blocks 4, 8 and 12."""
        return self.norm(hidden)

    def forward(self, xyz: Tensor, hidden_blocks: Sequence[int] = ()) -> EncoderOutput:
        """(B, N, 3) -> EncoderOutput; ``hidden_blocks`` are 0-based block indices (negative counts from the end)."""
        neighborhood, centers = self.group_divider(xyz)
        return self.forward_tokens(neighborhood, centers, hidden_blocks=hidden_blocks)

    def forward_tokens(
        self,
        neighborhood: Tensor,
        centers: Tensor,
        visible_mask: Tensor | None = None,
        hidden_blocks: Sequence[int] = (),
        pos_order: Tensor | None = None,
    ) -> EncoderOutput:
        """Encode grouped patches. ``visible_mask`` (B, G) bool, True = keep (same count in every row): the
        output then holds only the visible tokens and their centres, in their original order. ``pos_order``
        (B, V) int64: token j gets the positional embedding of token ``pos_order[:, j]`` (content and position
        decoupled, MMPD's ``pos_swap``); the returned centres stay the tokens' own."""
        if visible_mask is not None:
            self._check_mask(visible_mask, centers)
            tokens = self.encoder(neighborhood, keep=visible_mask)  # masked patches' tokens are never computed
            centers = centers[visible_mask].view(centers.shape[0], -1, 3)
        else:
            tokens = self.encoder(neighborhood)
        pos = self.pos_embed(centers)
        if pos_order is not None:
            pos = pos.gather(1, pos_order.unsqueeze(-1).expand(-1, -1, pos.shape[-1]))
        b = tokens.shape[0]
        skip = 0
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), pos], dim=1)
            skip = 1
        x, hidden = self.blocks.forward_hidden(tokens, pos, self._block_indices(hidden_blocks))
        x = self.norm(x)
        return EncoderOutput(
            tokens=x[:, skip:],
            centers=centers,
            cls=x[:, 0] if skip else None,
            hidden=[h[:, skip:] for h in hidden],
        )

    @staticmethod
    def _check_mask(visible_mask: Tensor, centers: Tensor) -> None:
        counts = visible_mask.sum(dim=1)
        if visible_mask.shape != centers.shape[:2] or bool((counts != counts[0]).any()):
            raise ValueError(
                f"visible_mask must be (B, G) = {tuple(centers.shape[:2])} with the same number of visible patches "
                f"per sample; got shape {tuple(visible_mask.shape)} and counts {counts.tolist()}"
            )

    def _block_indices(self, hidden_blocks: Sequence[int]) -> list[int]:
        return block_indices(hidden_blocks, self.depth)


def block_indices(hidden_blocks: Sequence[int], depth: int) -> list[int]:
    """0-based block indices of ``hidden_blocks`` (negative counts from the end); ValueError when out of range."""
    out = []
    for i in hidden_blocks:
        if not -depth <= i < depth:
            raise ValueError(f"hidden_blocks index {i} is out of range for an encoder of depth {depth}")
        out.append(i % depth)
    return out

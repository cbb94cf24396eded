"""Point-MGE's encoder: a patch tokenizer (grouping, Morton serialisation, mini-PointNet, ViT, VQ) and the
extractor ViT that reads discrete tokens (``methods/point_mge.py`` explains the method).

State-dict names below the method's ``MGE_encoder.``: ``tokenizer.{encoder, pos_embed, blocks, norm, quantizer}``;
the extractor in Point-MAE's names, ``pos_embed`` (centre embedding), ``blocks.blocks.N``, ``norm``,
``cls_token`` / ``cls_pos``, plus ``token_embed`` (id -> vector) and ``slot_embed`` (slot index -> vector).
As a downstream backbone (``freeze_tokenizer``) the tokenizer stays in eval mode and receives no gradient: the
ids are discrete, as MAGE fine-tunes its encoder on top of a frozen VQGAN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.api import Encoder, EncoderOutput
from bench.errors import ConfigError
from methods.blocks.encoder import EncoderConfig, block_indices
from methods.blocks.grouping import PatchGrouper
from methods.blocks.patch_embed import PatchEmbed
from methods.blocks.quant import Quantized, VectorQuantizer
from methods.blocks.serialization import apply_order, morton_order
from methods.blocks.transformer import TransformerEncoder, init_vit_weights


@dataclass
class TokenizerConfig:
    """The patch VQ-VAE (wave2.md 1.3: D 384, depth 6, codebook 1024; code_dim 32 as the anti-collapse practice)."""

    trans_dim: int = 384
    depth: int = 6
    decoder_depth: int = 6
    num_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    patch_hidden: int = 128
    codebook_size: int = 1024
    code_dim: int = 32
    ema_decay: float = 0.99
    commitment: float = 0.25
    dead_threshold: float = 0.5  # EMA assignments per batch below which a code is restarted
    serialize: str = "morton"  # morton | none (FPS order)
    field_hidden: int = 128
    field_freqs: int = 6
    queries: int = 1024  # field queries per shape: half uniform in [-1, 1]^3, half near the surface
    near_std: float = 0.02
    udf_clamp: float = 0.1

    def validate(self) -> None:
        if self.trans_dim % self.num_heads:
            raise ConfigError(f"tokenizer.trans_dim={self.trans_dim} must be divisible by tokenizer.num_heads="
                              f"{self.num_heads}")
        if self.serialize not in ("morton", "none"):
            raise ConfigError(f"tokenizer.serialize must be morton or none, got {self.serialize!r}")
        if self.codebook_size < 2 or self.code_dim < 1 or self.queries < 2:
            raise ConfigError("tokenizer.codebook_size must be >= 2, code_dim >= 1 and queries >= 2")


@dataclass
class Tokens:
    """A tokenised cloud: slots in serial order. ids (B, G), centers (B, G, 3), neighborhood (B, G, K, 3)."""

    ids: Tensor
    centers: Tensor
    neighborhood: Tensor
    quantized: Quantized


class PatchTokenizer(nn.Module):
    """Grouping -> serialisation -> mini-PointNet -> ViT (centre pos-embed) -> norm -> VQ."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        dim = cfg.trans_dim
        self.serialize = cfg.serialize
        self.encoder = PatchEmbed(dim, cfg.patch_hidden)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = TransformerEncoder(dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias)
        self.norm = nn.LayerNorm(dim)
        self.apply(init_vit_weights)
        self.quantizer = VectorQuantizer(dim, cfg.codebook_size, cfg.code_dim, cfg.ema_decay, cfg.commitment,
                                         cfg.dead_threshold)

    def forward(self, neighborhood: Tensor, centers: Tensor) -> Tokens:
        if self.serialize == "morton":
            neighborhood, centers = apply_order(morton_order(centers), neighborhood, centers)
        features = self.norm(self.blocks(self.encoder(neighborhood), self.pos_embed(centers)))
        quantized = self.quantizer(features)
        return Tokens(quantized.ids, centers, neighborhood, quantized)


class MGEEncoder(Encoder):
    """Tokenizer + extractor; ``forward(xyz)`` is the downstream encoder (all slots visible)."""

    def __init__(self, tok: TokenizerConfig, extractor: EncoderConfig, num_group: int, group_size: int,
                 drop_path: float, freeze_tokenizer: bool = False) -> None:  # fmt: skip
        super().__init__()
        extractor.validate()
        dim = extractor.trans_dim
        self.out_dim, self.depth = dim, extractor.depth
        self.freeze_tokenizer = freeze_tokenizer
        self.group_divider = PatchGrouper(num_group, group_size)
        self.tokenizer = PatchTokenizer(tok)
        self.token_embed = nn.Embedding(tok.codebook_size, dim)
        self.slot_embed = SlotFeatures(dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = TransformerEncoder(dim, extractor.depth, extractor.num_heads, extractor.mlp_ratio,
                                         extractor.qkv_bias, drop_path)
        self.norm = nn.LayerNorm(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        for module in (self.pos_embed, self.blocks, self.norm):
            module.apply(init_vit_weights)
        nn.init.trunc_normal_(self.token_embed.weight, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)
        if freeze_tokenizer:
            self.tokenizer.requires_grad_(False)

    @property
    def num_group(self) -> int:
        return self.group_divider.num_group

    @property
    def group_size(self) -> int:
        return self.group_divider.group_size

    def train(self, mode: bool = True) -> MGEEncoder:
        super().train(mode)
        if self.freeze_tokenizer:
            self.tokenizer.eval()
        return self

    def drop_cls_token(self) -> None:
        self.cls_token = None
        self.cls_pos = None

    def norm_hidden(self, hidden: Tensor) -> Tensor:
        return self.norm(hidden)

    def tokenize(self, xyz: Tensor, num_group: int | None = None) -> Tokens:
        """(B, N, 3) -> :class:`Tokens` (gradients flow into the tokenizer unless it is frozen); ``num_group``
        overrides the grouping's patch count for this call (a partial crop's patches)."""
        neighborhood, centers = self.group_divider(xyz, num_group)
        if self.freeze_tokenizer:
            with torch.no_grad():
                return self.tokenizer(neighborhood, centers)
        return self.tokenizer(neighborhood, centers)

    def extract(self, ids: Tensor, centers: Tensor, known: Tensor, cls_extra: Tensor | None = None,
                hidden_blocks: Sequence[int] = ()) -> tuple[Tensor, Tensor]:  # fmt: skip
        """Encode the ``known`` slots (B, G) bool, same count per row; returns (visible tokens (B, V, C) in slot
        order, cls output (B, C)). ``cls_extra`` (B, C) is added to the cls slot (the class embedding)."""
        out, cls, _ = self._run(ids, centers, known, cls_extra, ())
        return out, cls

    def _run(self, ids: Tensor, centers: Tensor, known: Tensor, cls_extra: Tensor | None,
             hidden_blocks: Sequence[int]) -> tuple[Tensor, Tensor | None, list[Tensor]]:  # fmt: skip
        b, g = ids.shape
        counts = known.sum(1)
        if bool((counts != counts[0]).any()):
            raise ValueError(f"extract needs the same number of known slots per cloud, got {counts.tolist()}")
        v = int(counts[0])
        slots = torch.arange(g, device=ids.device).expand(b, g)[known].view(b, v)
        x = self.token_embed(ids[known].view(b, v)) + self.slot_embed(slots, g)
        pos = self.pos_embed(centers[known].view(b, v, 3))
        skip = 0
        if self.cls_token is not None:
            cls = self.cls_token.expand(b, -1, -1)
            cls = cls + cls_extra.unsqueeze(1) if cls_extra is not None else cls
            x, pos, skip = torch.cat([cls, x], 1), torch.cat([self.cls_pos.expand(b, -1, -1), pos], 1), 1
        x, hidden = self.blocks.forward_hidden(x, pos, block_indices(hidden_blocks, self.depth))
        x = self.norm(x)
        return x[:, skip:], (x[:, 0] if skip else None), [h[:, skip:] for h in hidden]

    def forward(self, xyz: Tensor, hidden_blocks: Sequence[int] = ()) -> EncoderOutput:
        block_indices(hidden_blocks, self.depth)  # a bad index fails before the tokenizer runs
        tokens = self.tokenize(xyz)
        known = torch.ones_like(tokens.ids, dtype=torch.bool)
        out, cls, hidden = self._run(tokens.ids, tokens.centers, known, None, hidden_blocks)
        return EncoderOutput(tokens=out, centers=tokens.centers, cls=cls, hidden=hidden)


class SlotFeatures(nn.Module):
    """Slot k of G -> a vector: an MLP of sin/cos features of k / G at 2^i pi (i < ``freqs``), so the embedding is
    defined for any G (suites may group a cloud into more patches than pre-training did)."""

    def __init__(self, dim: int, freqs: int = 16) -> None:
        super().__init__()
        self.freqs = freqs
        self.proj = nn.Sequential(nn.Linear(2 * freqs, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, slots: Tensor, total: int) -> Tensor:
        scale = (2.0 ** torch.arange(self.freqs, device=slots.device)) * math.pi
        angles = (slots.float() / total).unsqueeze(-1) * scale
        return self.proj(torch.cat([angles.sin(), angles.cos()], dim=-1))

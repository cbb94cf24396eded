"""Perceiver-style shape tokenizer blocks: learnable latent queries read a point cloud, and query points read the
latents back as one field value each (wave2.md 2.1 and 2.2.1, 2.2.3; Michelangelo ``sal_perceiver.py``
``CrossAttentionEncoder`` / ``CrossAttentionDecoder`` and 3DShape2VecSet ``decode``, MIT, read not copied).

Conventions:
- Points are (B, N, 3) xyz in the caller's normalisation (the harness: unit sphere). :class:`FourierEmbed` maps
  them to [xyz, sin(f x), cos(f x)] with f = 2^k (times pi when ``include_pi``), k < num_freqs, and the
  frequencies grouped per axis (x's num_freqs angles, then y's, then z's), as Michelangelo's ``FourierEmbedder``.
- :class:`CrossAttentionBlock` is Michelangelo's ``ResidualCrossAttentionBlock``: pre-norm on both the queries and
  the context (two LayerNorms), ``x + attn(ln(x), ln(ctx))``, then ``x + mlp(ln(x))``. The attention is
  :class:`~methods.blocks.transformer.CrossAttention` (``q`` + fused ``kv``).
- Self-attention stacks are :class:`~methods.blocks.transformer.Block` (pre-norm, fused ``qkv``), no positions:
  latents are a set, so the encoder is invariant to the order of the input points.
- Weights: :func:`~methods.blocks.transformer.init_vit_weights` (trunc_normal .02, zero bias); latent queries
  ``randn * 0.02`` (Michelangelo).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from methods.blocks.transformer import Block, CrossAttention, Mlp, init_vit_weights


class FourierEmbed(nn.Module):
    """(..., 3) -> (..., 3 + 6 num_freqs): xyz, sin and cos of 2^k [pi] xyz; ``out_dim`` is the last size."""

    def __init__(self, num_freqs: int, include_pi: bool = True) -> None:
        super().__init__()
        if num_freqs < 0:
            raise ValueError(f"num_freqs must be >= 0, got {num_freqs}")
        freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        self.register_buffer("freqs", freqs * math.pi if include_pi else freqs, persistent=False)
        self.out_dim = 3 + 6 * num_freqs

    def forward(self, xyz: Tensor) -> Tensor:
        angles = (xyz.unsqueeze(-1) * self.freqs.to(xyz.dtype)).flatten(-2)
        return torch.cat([xyz, angles.sin(), angles.cos()], dim=-1)


class CrossAttentionBlock(nn.Module):
    """Queries (B, Q, C) read a context (B, S, C): x + attn(norm_query(x), norm_context(ctx)); x + mlp(norm_mlp(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width)
        self.attn = CrossAttention(width, heads, qkv_bias=qkv_bias)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.attn(self.norm_query(x), self.norm_context(context))
        return x + self.mlp(self.norm_mlp(x))


def self_attention_stack(width: int, heads: int, depth: int, mlp_ratio: float, qkv_bias: bool) -> nn.ModuleList:
    """``depth`` pre-norm self-attention blocks without positions."""
    return nn.ModuleList(Block(width, heads, mlp_ratio, qkv_bias) for _ in range(depth))


class PerceiverEncoder(nn.Module):
    """(xyz (B, N, 3), features (B, N, in_features) | None) -> latents (B, num_latents, width).

    ``query`` (num_latents, width) cross-attends once to Linear([FourierEmbed(xyz), features]), then ``depth``
    self-attention blocks and a final LayerNorm (Michelangelo's ``ln_post``).
    """

    def __init__(self, width: int, num_latents: int, heads: int, depth: int, num_freqs: int = 8,
                 in_features: int = 0, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:  # fmt: skip
        super().__init__()
        if num_latents < 1 or in_features < 0:
            raise ValueError(f"num_latents must be >= 1 and in_features >= 0, got {num_latents}, {in_features}")
        self.in_features = in_features
        self.embed = FourierEmbed(num_freqs)
        self.input_proj = nn.Linear(self.embed.out_dim + in_features, width)
        self.cross = CrossAttentionBlock(width, heads, mlp_ratio, qkv_bias)
        self.blocks = self_attention_stack(width, heads, depth, mlp_ratio, qkv_bias)
        self.norm = nn.LayerNorm(width)
        self.apply(init_vit_weights)
        self.query = nn.Parameter(torch.randn(num_latents, width) * 0.02)

    def forward(self, xyz: Tensor, features: Tensor | None = None) -> Tensor:
        if (features is None) != (self.in_features == 0):
            got = None if features is None else tuple(features.shape)
            raise ValueError(f"PerceiverEncoder built with in_features={self.in_features} got features {got}")
        if features is not None and features.shape[-1] != self.in_features:
            raise ValueError(f"features must be (B, N, {self.in_features}), got {tuple(features.shape)}")
        data = self.embed(xyz) if features is None else torch.cat([self.embed(xyz), features], dim=-1)
        latents = self.cross(self.query.unsqueeze(0).expand(xyz.shape[0], -1, -1), self.input_proj(data))
        for block in self.blocks:
            latents = block(latents)
        return self.norm(latents)


class OccupancyDecoder(nn.Module):
    """Latents -> ``decode`` (self-attention + LayerNorm) -> ``query``: one scalar per query point (an occupancy
    logit or an unsigned distance; the caller chooses the target and any output activation).

    A query point's value depends only on that point and the decoded latents (queries never attend to each
    other), so evaluating the queries in chunks gives the same values with memory bounded by the chunk.
    """

    def __init__(self, width: int, heads: int, depth: int, num_freqs: int = 8, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True) -> None:  # fmt: skip
        super().__init__()
        self.blocks = self_attention_stack(width, heads, depth, mlp_ratio, qkv_bias)
        self.norm = nn.LayerNorm(width)
        self.embed = FourierEmbed(num_freqs)
        self.query_proj = nn.Linear(self.embed.out_dim, width)
        self.cross = CrossAttentionBlock(width, heads, mlp_ratio, qkv_bias)
        self.norm_out = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)
        self.apply(init_vit_weights)

    def decode(self, latents: Tensor) -> Tensor:
        """(B, L, C) -> (B, L, C): the self-attention stack, then LayerNorm."""
        for block in self.blocks:
            latents = block(latents)
        return self.norm(latents)

    def query_once(self, points: Tensor, decoded: Tensor) -> Tensor:
        """(B, Q, 3), (B, L, C) -> (B, Q) in one pass."""
        x = self.cross(self.query_proj(self.embed(points)), decoded)
        return self.head(self.norm_out(x)).squeeze(-1)

    def query(self, points: Tensor, decoded: Tensor, chunk: int = 0) -> Tensor:
        """(B, Q, 3), decoded (B, L, C) -> (B, Q); ``chunk`` > 0 evaluates that many points at a time."""
        if chunk < 0:
            raise ValueError(f"chunk must be >= 0 (0: all points at once), got {chunk}")
        if chunk == 0 or points.shape[1] <= chunk:
            return self.query_once(points, decoded)
        return torch.cat([self.query_once(part, decoded) for part in points.split(chunk, dim=1)], dim=1)

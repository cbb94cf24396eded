"""G3PT's cross-scale autoregressive transformer (CAR): next-scale prediction over the CVQ's token scales with a
block-causal mask, AdaLN conditioning, QK-norm and a KV cache (wave2.md 2.1 and 2.2.5-6; generation.md 3.2; VAR
``models/var.py`` and ``models/basic_var.py``, MIT, read not copied).

Conventions:
- Sequence: [P prefix tokens (optional, e.g. image tokens); T = sum(scales) scale slots]. Slot t belongs to scale
  ``level(t)``; prefix tokens have level -1. Attention is allowed from a query to a key iff level(key) <=
  level(query) (:func:`block_causal_mask`, VAR's ``where(d >= dT, 0, -inf)``), so prefix tokens see only the
  prefix and a scale sees the prefix, every earlier scale and itself, never a later scale.
- Slot inputs: the first ``scales[0]`` slots are start tokens, Linear(cond) + ``pos_start`` (VAR's SOS); the
  others are ``word_embed`` (Linear in_dim -> width) of the CVQ's teacher-forcing inputs
  (``CrossScaleQuantizer.next_inputs``). Every slot then gets ``pos_embed[t]`` + ``level_embed[level(t)]``.
  Prefix tokens are only projected (``prefix_proj``): the caller adds any position they need.
- Blocks: VAR's ``AdaLNSelfAttn`` with a per-block ``ada_lin`` (VAR's default ``shared_aln=False``):
  SiLU -> Linear(cond_dim -> 6 width) gives gamma1, gamma2, scale1, scale2, shift1, shift2;
  x += gamma1 * attn(LN(x) (1 + scale1) + shift1), x += gamma2 * mlp(LN(x) (1 + scale2) + shift2), LayerNorms
  without affine. Head: AdaLN (scale, shift from cond) on a non-affine LayerNorm, then Linear -> vocab.
- QK-norm: a LayerNorm over head_dim (with affine, shared by the heads) on q and k before the scaled dot product
  (timm's ``qk_norm``; VAR instead l2-normalises with a learnable temperature). Attention scale head_dim^-0.5;
  the fused ``qkv`` has a bias (VAR: q and v biases).
- Init: Linear trunc_normal(.02), zero bias (:func:`~methods.blocks.transformer.init_vit_weights`); positional,
  level and start embeddings trunc_normal(std sqrt(1 / (3 width))) (VAR's init_std); ``ada_lin`` weights are
  scaled by 0.5 for scale/shift and by ``init_gate`` (1e-5, VAR's ``init_adaln_gamma``) for the gates, so every
  block starts close to the identity.
- KV cache (:meth:`CARTransformer.start` / :meth:`CARTransformer.step`): the prefix's keys and values are computed
  once; each step runs only the new scale's tokens, which may attend to everything cached, so no mask is needed.
  In eval mode the concatenated step logits equal :meth:`CARTransformer.forward`'s (teacher forcing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.blocks.transformer import AttentionBase, DropPath, Mlp, drop_path_rates, init_vit_weights


def init_car_weights(module: nn.Module) -> None:
    """:func:`init_vit_weights`, skipping LayerNorms without affine parameters (the AdaLN norms)."""
    if not (isinstance(module, nn.LayerNorm) and not module.elementwise_affine):
        init_vit_weights(module)


def block_causal_mask(scales: Sequence[int], prefix: int = 0) -> Tensor:
    """(prefix + T, prefix + T) bool, True = the query (row) may attend to the key (column); see module doc."""
    sizes = torch.tensor([int(s) for s in scales], dtype=torch.long)
    levels = torch.cat([torch.full((prefix,), -1), torch.repeat_interleave(torch.arange(len(sizes)), sizes)])
    return levels.unsqueeze(0) <= levels.unsqueeze(1)


def cfg_logits(cond_logits: Tensor, uncond_logits: Tensor, s: int, num_scales: int, cfg: float) -> Tensor:
    """VAR's classifier-free guidance ramp: t = cfg s / (num_scales - 1) (t = cfg with a single scale);
    (1 + t) cond - t uncond."""
    t = cfg * s / (num_scales - 1) if num_scales > 1 else cfg
    return (1 + t) * cond_logits - t * uncond_logits


@dataclass
class LayerCache:
    """One block's cached keys and values, (B, H, tokens so far, head_dim) each; None before the first write."""

    k: Tensor | None = None
    v: Tensor | None = None

    def extend(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append new keys/values along the tokens; return everything cached."""
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


@dataclass
class CARState:
    """Incremental decoding state: ``cond`` (B, cond_dim), projected ``prefix`` (B, P, width) or None, per-block
    ``caches``, the embedded ``tokens`` of the scales stepped so far (for uncached recomputation), the index of
    the ``next_scale`` to step and how many scales the cache holds (``cached_scales``)."""

    cond: Tensor
    prefix: Tensor | None
    caches: list[LayerCache]
    tokens: list[Tensor] = field(default_factory=list)
    next_scale: int = 0
    cached_scales: int = 0


class QKNormAttention(AttentionBase):
    """Self-attention (fused ``qkv``) with LayerNorm on q and k per head, an optional boolean mask and KV cache."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_norm: bool = True) -> None:
        self.qk_norm = qk_norm
        super().__init__(dim, num_heads, qkv_bias=qkv_bias)

    def build_projections(self, dim: int, qkv_bias: bool) -> None:
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        head_dim = dim // self.num_heads
        self.q_norm = nn.LayerNorm(head_dim) if self.qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if self.qk_norm else nn.Identity()

    def project(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if context is not None:
            raise ValueError("QKNormAttention is self-attention only")
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.q_norm(q), self.k_norm(k), v

    def forward(self, x: Tensor, mask: Tensor | None = None, cache: LayerCache | None = None) -> Tensor:
        q, k, v = self.project(x, None)
        if cache is not None:
            k, v = cache.extend(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        b, _, n, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class AdaLNBlock(nn.Module):
    """VAR's ``AdaLNSelfAttn`` (see the module docstring); ``forward(x, cond, mask, cache)``."""

    def __init__(self, width: int, heads: int, cond_dim: int, mlp_ratio: float = 4.0, qk_norm: bool = True,
                 drop_path: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.width = width
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = QKNormAttention(width, heads, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * width))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor, mask: Tensor | None = None, cache: LayerCache | None = None) -> Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = self.ada_lin(cond).view(-1, 1, 6, self.width).unbind(2)
        x = x + self.drop_path(self.attn(self.norm1(x) * (1 + scale1) + shift1, mask, cache) * gamma1)
        return x + self.drop_path(self.mlp(self.norm2(x) * (1 + scale2) + shift2) * gamma2)


class CARTransformer(nn.Module):
    """Next-scale AR transformer over ``scales`` token slots with ``vocab`` ids each; see the module docstring."""

    def __init__(self, vocab: int, width: int, depth: int, heads: int, scales: Sequence[int], cond_dim: int,
                 in_dim: int, prefix_dim: int = 0, mlp_ratio: float = 4.0, qk_norm: bool = True,
                 drop_path: float = 0.0, init_gate: float = 1e-5) -> None:  # fmt: skip
        super().__init__()
        if not scales or any(int(s) != s or s < 1 for s in scales):
            raise ValueError(f"scales must be a non-empty list of positive token counts, got {list(scales)}")
        if vocab < 2 or depth < 1 or cond_dim < 1 or in_dim < 1 or prefix_dim < 0:
            raise ValueError(f"CAR needs vocab >= 2, depth >= 1, cond_dim >= 1, in_dim >= 1 and prefix_dim >= 0, "
                             f"got {vocab}, {depth}, {cond_dim}, {in_dim}, {prefix_dim}")
        self.scales = tuple(int(s) for s in scales)
        self.vocab, self.width, self.in_dim, self.prefix_dim = vocab, width, in_dim, prefix_dim
        self.total = sum(self.scales)
        self.begins = [sum(self.scales[:s]) for s in range(len(self.scales))]
        self.register_buffer("levels", torch.repeat_interleave(torch.arange(len(self.scales)),
                                                               torch.tensor(self.scales)), persistent=False)
        self.word_embed = nn.Linear(in_dim, width)
        self.sos = nn.Linear(cond_dim, width)
        self.prefix_proj = nn.Linear(prefix_dim, width) if prefix_dim > 0 else None
        rates = drop_path_rates(drop_path, depth)
        self.blocks = nn.ModuleList(AdaLNBlock(width, heads, cond_dim, mlp_ratio, qk_norm, rates[i])
                                    for i in range(depth))  # fmt: skip
        self.head_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.head_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * width))
        self.head = nn.Linear(width, vocab)
        self.apply(init_car_weights)
        std = (1 / width / 3) ** 0.5
        self.pos_start = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, self.scales[0], width), std=std))
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, self.total, width), std=std))
        self.level_embed = nn.Embedding(len(self.scales), width)
        nn.init.trunc_normal_(self.level_embed.weight, std=std)
        with torch.no_grad():
            for block in self.blocks:
                block.ada_lin[-1].weight[: 2 * width].mul_(init_gate)
                block.ada_lin[-1].weight[2 * width :].mul_(0.5)

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    def embed_scale(self, s: int, cond: Tensor, inputs: Tensor | None) -> Tensor:
        """Scale s's slot tokens (B, L_s, width): start tokens for s = 0, else word_embed(inputs); + slot embeddings."""
        if not 0 <= s < self.num_scales:
            raise ValueError(f"scale index {s} is out of range for {self.num_scales} scales")
        if (inputs is None) != (s == 0):
            need = "no inputs (its slots are the start tokens)" if s == 0 else "inputs (B, L_s, in_dim)"
            raise ValueError(f"scale {s} needs {need}")
        if s == 0:
            x = self.sos(cond).unsqueeze(1) + self.pos_start
        else:
            if inputs.shape[1:] != (self.scales[s], self.in_dim):
                raise ValueError(f"inputs of scale {s} must be (B, {self.scales[s]}, {self.in_dim}), "
                                 f"got {tuple(inputs.shape)}")
            x = self.word_embed(inputs)
        b, e = self.begins[s], self.begins[s] + self.scales[s]
        return x + self.pos_embed[:, b:e] + self.level_embed(self.levels[b:e])

    def embed_prefix(self, prefix: Tensor | None) -> Tensor | None:
        """(B, P, prefix_dim) -> (B, P, width); None stays None."""
        if prefix is None:
            return None
        if self.prefix_proj is None or prefix.dim() != 3 or prefix.shape[-1] != self.prefix_dim:
            raise ValueError(f"prefix must be (B, P, prefix_dim={self.prefix_dim}) with prefix_dim > 0, "
                             f"got {tuple(prefix.shape)}")
        return self.prefix_proj(prefix)

    def run_blocks(self, x: Tensor, cond: Tensor, mask: Tensor | None,
                   caches: Sequence[LayerCache] | None = None) -> Tensor:  # fmt: skip
        """All blocks on (B, n, width) tokens with an optional (n, n or cached + n) bool mask and caches."""
        for i, block in enumerate(self.blocks):
            x = block(x, cond, mask, None if caches is None else caches[i])
        return x

    def logits(self, x: Tensor, cond: Tensor) -> Tensor:
        """AdaLN head norm, then Linear: (B, n, width) -> (B, n, vocab)."""
        scale, shift = self.head_ada_lin(cond).view(-1, 1, 2, self.width).unbind(2)
        return self.head(self.head_norm(x) * (1 + scale) + shift)

    def forward(self, inputs: Tensor, cond: Tensor, prefix: Tensor | None = None) -> Tensor:
        """Teacher forcing: inputs (B, T - scales[0], in_dim), cond (B, cond_dim) -> logits (B, T, vocab)."""
        if inputs.dim() != 3 or inputs.shape[1] != self.total - self.scales[0]:
            raise ValueError(f"inputs must be (B, T - scales[0] = {self.total - self.scales[0]}, {self.in_dim}), "
                             f"got {tuple(inputs.shape)}")
        parts = [self.embed_scale(0, cond, None)]
        for s in range(1, self.num_scales):
            b = self.begins[s] - self.scales[0]
            parts.append(self.embed_scale(s, cond, inputs[:, b : b + self.scales[s]]))
        head = self.embed_prefix(prefix)
        if head is not None:
            parts.insert(0, head)
        p = 0 if head is None else head.shape[1]
        mask = block_causal_mask(self.scales, p).to(inputs.device)
        return self.logits(self.run_blocks(torch.cat(parts, dim=1), cond, mask)[:, p:], cond)

    def start(self, cond: Tensor, prefix: Tensor | None = None) -> CARState:
        """A fresh decoding state; the prefix runs once through the blocks and its keys/values are cached."""
        state = CARState(cond, self.embed_prefix(prefix), [LayerCache() for _ in self.blocks])
        if state.prefix is not None:
            self.run_blocks(state.prefix, cond, None, state.caches)  # prefix tokens attend to the prefix only
        return state

    def step(self, state: CARState, s: int, inputs: Tensor | None, use_cache: bool = True) -> Tensor:
        """Logits (B, L_s, vocab) of scale s (scales are stepped in order; ``inputs`` None for s = 0).

        ``use_cache`` runs only the new tokens against the cache; otherwise the whole sequence so far is
        recomputed with the block-causal mask (the same logits; the benchmark's baseline). A state stepped
        without the cache cannot go back to it.
        """
        if s != state.next_scale:
            raise ValueError(f"scales are decoded in order: expected scale {state.next_scale}, got {s}")
        if use_cache and state.cached_scales != s:
            raise ValueError(f"the KV cache holds {state.cached_scales} scales, not {s}: a state stepped without "
                             "the cache must keep use_cache=False")
        tokens = self.embed_scale(s, state.cond, inputs)
        state.tokens.append(tokens)
        state.next_scale += 1
        if use_cache:
            state.cached_scales += 1
            return self.logits(self.run_blocks(tokens, state.cond, None, state.caches), state.cond)
        parts = state.tokens if state.prefix is None else [state.prefix, *state.tokens]
        p = 0 if state.prefix is None else state.prefix.shape[1]
        mask = block_causal_mask(self.scales[: s + 1], p).to(tokens.device)
        hidden = self.run_blocks(torch.cat(parts, dim=1), state.cond, mask)
        return self.logits(hidden[:, -self.scales[s] :], state.cond)

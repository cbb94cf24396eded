"""Pre-norm ViT blocks of the Point-MAE family (official parameter names: norm1, attn.qkv, attn.proj, norm2,
mlp.fc1, mlp.fc2).

Conventions:
- Tokens are (B, T, C). Positional embeddings are added at the input of EVERY block: ``x = block(x + pos)``.
- Stochastic depth per block is ``linspace(0, drop_path, depth)``.
- Attention runs through ``F.scaled_dot_product_attention`` with scale ``head_dim ** -0.5``. The projection
  of queries/keys/values is separated from the attention itself (:class:`AttentionBase`), so a method swaps
  the projection (fused ``qkv``, separate ``q_linear``/``k_linear``/``v_linear``, cross-attention on a
  ``context``) by passing ``attn_layer`` to :class:`Block`, without copying the block.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: weight initialisations a model part can be configured with (its ``init`` option): ``torch_default`` = each
#: layer keeps PyTorch's own init (nothing is re-drawn), ``trunc_normal`` = :func:`init_vit_weights`,
#: ``xavier_uniform`` = :func:`init_xavier_weights`
INIT_SCHEMES = ("torch_default", "trunc_normal", "xavier_uniform")


def init_vit_weights(module: nn.Module) -> None:
    """Reference init (``_init_weights``): Linear/Conv1d trunc_normal(std .02, bounds +-2), bias 0; LayerNorm 1/0."""
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_xavier_weights(module: nn.Module) -> None:
    """Reference decoder init (Point-MAE ``models/Point_MAE.py`` ``TransformerDecoder._init_weights`` L184-191,
    the same in Point-MaDi and Point-PQAE): Linear xavier_uniform, bias 0; LayerNorm 1/0; Conv1d untouched."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def apply_init(module: nn.Module, scheme: str) -> None:
    """Re-initialise every submodule of ``module`` with ``scheme`` (:data:`INIT_SCHEMES`); ``torch_default``
    changes nothing and draws nothing from the random stream."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {INIT_SCHEMES}")
    if scheme == "trunc_normal":
        module.apply(init_vit_weights)
    elif scheme == "xavier_uniform":
        module.apply(init_xavier_weights)


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Per-block stochastic-depth probabilities: linspace(0, rate, depth)."""
    return torch.linspace(0, rate, depth).tolist() if depth > 0 else []


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``drop_prob``, else
    scale it by 1 / (1 - drop_prob). Identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = torch.floor(keep + torch.rand(shape, dtype=x.dtype, device=x.device))
        return x.div(keep) * mask

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class AttentionBase(nn.Module, abc.ABC):
    """Multi-head attention minus the input projection: subclasses implement ``project`` -> (q, k, v), each
    (B, H, T, D); this class does the scaled dot product, merges heads and applies ``proj``."""

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = False, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"attention width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.attn_drop = attn_drop
        self.build_projections(dim, qkv_bias)  # before ``proj``, so state dicts list keys in the reference order
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    @abc.abstractmethod
    def build_projections(self, dim: int, qkv_bias: bool) -> None:
        """Create the input projection(s) used by ``project``."""

    @abc.abstractmethod
    def project(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, C) [and context (B, S, C)] -> q (B, H, T, D), k and v (B, H, T or S, D)."""

    def split_heads(self, t: Tensor) -> Tensor:
        """(B, T, H*D) -> (B, H, T, D)."""
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        q, k, v = self.project(x, context)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        b, _, n, _ = out.shape
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, -1)))


class Attention(AttentionBase):
    """Self-attention with one fused ``qkv`` linear (Point-MAE; no bias by default)."""

    def build_projections(self, dim: int, qkv_bias: bool) -> None:
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)

    def project(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        if context is not None:
            raise ValueError("Attention (fused qkv) is self-attention only; use SplitQKVAttention for a context")
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]


class SplitQKVAttention(AttentionBase):
    """Attention with separate ``q_linear``/``k_linear``/``v_linear`` (Point-MaDi decoder names). Queries come
    from ``x``; keys and values from ``context`` when given (cross-attention), else from ``x``."""

    def build_projections(self, dim: int, qkv_bias: bool) -> None:
        self.q_linear = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_linear = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_linear = nn.Linear(dim, dim, bias=qkv_bias)

    def project(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        source = x if context is None else context
        return (
            self.split_heads(self.q_linear(x)),
            self.split_heads(self.k_linear(source)),
            self.split_heads(self.v_linear(source)),
        )


class CrossAttention(AttentionBase):
    """Cross-attention with a ``q`` linear on the queries and one fused ``kv`` linear on the ``context``
    (Point-PQAE ``PQattn_contrast`` names; no bias by default). Without a context it attends over ``x`` itself."""

    def build_projections(self, dim: int, qkv_bias: bool) -> None:
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)

    def project(self, x: Tensor, context: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        source = x if context is None else context
        b, s, _ = source.shape
        kv = self.kv(source).view(b, s, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.split_heads(self.q(x)), kv[0], kv[1]


#: builds the attention of a block: attn_layer(dim, num_heads, qkv_bias=..., attn_drop=..., proj_drop=...)
AttnFactory = Callable[..., nn.Module]


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(attn(norm1(x))), then x + DropPath(mlp(norm2(x))).

    Child order (norm1, drop_path, norm2, mlp, attn) follows the reference so state dicts list keys identically.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        attn_layer: AttnFactory = Attention,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.attn = attn_layer(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        x = x + self.drop_path(self.attn(h) if context is None else self.attn(h, context))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _make_blocks(
    dim: int, depth: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float, attn_layer: AttnFactory
) -> nn.ModuleList:
    rates = drop_path_rates(drop_path, depth)
    return nn.ModuleList(
        Block(dim, num_heads, mlp_ratio, qkv_bias, drop_path=rates[i], attn_layer=attn_layer) for i in range(depth)
    )


class TransformerEncoder(nn.Module):
    """``depth`` blocks with ``pos`` added at every block input. Holds no norm (the encoder owns it)."""

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path: float = 0.0,
        attn_layer: AttnFactory = Attention,
    ) -> None:
        super().__init__()
        self.blocks = _make_blocks(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path, attn_layer)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        return self.forward_hidden(x, pos, ())[0]

    def forward_hidden(self, x: Tensor, pos: Tensor, indices: Sequence[int]) -> tuple[Tensor, list[Tensor]]:
        """Run all blocks; also return the outputs of the blocks at ``indices`` (0-based), in that order."""
        wanted = {i: None for i in indices}
        for i, block in enumerate(self.blocks):
            x = block(x + pos)
            if i in wanted:
                wanted[i] = x
        return x, [wanted[i] for i in indices]


class TransformerDecoder(nn.Module):
    """Point-MAE decoder: ``depth`` blocks (pos at every input), then ``norm`` on the last ``n`` tokens only.
    Without ``pos`` no position is added; without ``n`` every token is normed (Point-PQAE ``PQ_decoder``).

    Initialises its own weights with ``init`` (:func:`apply_init`). The reference decoders of Point-MAE, PQAE and
    MaDi use ``xavier_uniform`` (Point_MAE.py L182-191); the default ``trunc_normal`` is kept for the callers that
    re-initialise afterwards (PQAE's whole-model init, MaDi's xavier pass) or chose it (MMPD), so that their random
    streams stay as they were.
    """

    def __init__(
        self,
        embed_dim: int = 384,
        depth: int = 4,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        drop_path: float = 0.0,
        attn_layer: AttnFactory = Attention,
        init: str = "trunc_normal",
    ) -> None:
        super().__init__()
        self.blocks = _make_blocks(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path, attn_layer)
        self.norm = nn.LayerNorm(embed_dim)
        apply_init(self, init)

    def forward(self, x: Tensor, pos: Tensor | None = None, n: int | None = None) -> Tensor:
        for block in self.blocks:
            x = block(x if pos is None else x + pos)
        return self.norm(x if n is None else x[:, -n:])


def decode_masked(decoder: TransformerDecoder, pos_embed: nn.Module, mask_token: Tensor, visible: Tensor,
                  visible_centers: Tensor, masked_centers: Tensor) -> Tensor:  # fmt: skip
    """Point-MAE's ``MAE_decoder`` pass: [visible tokens; ``mask_token`` x M] with ``pos_embed`` of all centres
    (visible first, then masked) added at every block; returns the normed outputs of the M masked tokens."""
    b, m = masked_centers.shape[:2]
    tokens = torch.cat([visible, mask_token.expand(b, m, -1)], dim=1)
    pos = pos_embed(torch.cat([visible_centers, masked_centers], dim=1))
    return decoder(tokens, pos, m)

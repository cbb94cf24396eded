"""Cross-scale residual quantisation (G3PT's CVQ, wave2.md 2.1 and 2.2.2; generation.md 3.2): VAR's multi-scale
residual quantiser (``models/quant.py`` ``VectorQuantizer2``, MIT, read not copied) with attention in place of
VAR's area down-sampling and bicubic up-sampling.

Conventions (z is (B, L, C): L latent tokens of width C, L = ``num_latents`` = the last scale):
- Scales are token counts L_0 < L_1 < ... < L_{S-1} = L. Scale s < S-1 has its own learnable down-sampling
  queries (L_s, C) and its own up-sampling queries (L, C), each reading through a
  :class:`~methods.blocks.perceiver.CrossAttentionBlock`; the last scale is the identity both ways.
- Up-sampling ends in VAR's Phi blend h <- (1 - r) h + r phi_s(h), r = ``quant_resi`` (0.5), phi_s a Linear per
  scale (VAR: a 3x3 conv), applied at every scale including the last, as VAR does.
- Residual loop (``forward(z, quantize=True)``): R = sg(z), f_hat = 0; for each scale r = down_s(R),
  q = quantise(r), h = up_s(q), f_hat += h, R -= h. Loss = mean over scales of beta |sg(f_hat) - z|^2 +
  |f_hat - sg(z)|^2 (VAR, beta 0.25, f_hat cumulative after that scale) plus the quantiser's own terms at that
  scale. The returned f_hat is straight-through: its value, with gradient identity to z (VAR).
- ``quantize=False`` is G3PT's phase-1 bottleneck: f_hat = LayerNorm(z), loss 0, no ids. With ``prenorm`` the
  quantised path also works on LayerNorm(z) (the same norm), so phase 2 starts from the decoder's phase-1 inputs.
- One codebook is shared by every scale (VAR). ``vq``: :class:`~methods.blocks.quant.VectorQuantizer` (cosine,
  EMA, dead-code restart; ``code_dim`` is its code space). ``lfq``: :class:`LookupFreeQuantizer` (``code_dim`` is
  ignored: the code has log2(codebook_size) bits). In training the vq EMA moves at every scale's call, so
  ``decode_ids`` reproduces the forward's f_hat exactly in eval mode only.
- Usage and perplexity are per scale (G3PT reports per-scale utilisation): usage = share of the codebook used by
  the batch's ids of that scale; perplexity = exp(entropy of their histogram).
- AR inputs (VAR ``idxBl_to_var_input`` generalised): the input of scale s >= 1 is down_s(f_hat after scales
  0..s-1), L_s vectors of width C; :meth:`CrossScaleQuantizer.next_inputs` concatenates them for s = 1..S-1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.blocks.perceiver import CrossAttentionBlock
from methods.blocks.quant import Quantized, VectorQuantizer
from methods.blocks.transformer import init_vit_weights

QUANTIZERS = ("vq", "lfq")


@dataclass
class CVQOutput:
    """``f_hat`` (B, L, C) straight-through; per scale ``ids`` (B, L_s) int64, ``usage`` and ``perplexity``
    (detached scalars), all empty when not quantising; ``loss`` a scalar tensor."""

    f_hat: Tensor
    ids: list[Tensor]
    loss: Tensor
    usage: list[Tensor]
    perplexity: list[Tensor]


def code_statistics(ids: Tensor, num_codes: int) -> tuple[Tensor, Tensor]:
    """(usage, perplexity) of a batch of ids: share of the codes used, exp(entropy of the id histogram)."""
    counts = torch.bincount(ids.reshape(-1), minlength=num_codes).float()
    probs = counts / counts.sum().clamp(min=1)
    used = probs[probs > 0]
    return (counts > 0).float().mean().detach(), (-(used * used.log()).sum()).exp().detach()


def binary_entropy(p: Tensor) -> Tensor:
    """Elementwise entropy (nats) of a Bernoulli(p)."""
    eps = 1e-8
    return -(p * (p + eps).log() + (1 - p) * (1 - p + eps).log())


class LookupFreeQuantizer(nn.Module):
    """LFQ (MAGVIT-v2, arXiv 2310.05737): ``proj_in`` (D -> bits, no bias: with a bias the commitment term is met
    most cheaply by the bias alone, and every token collapses onto one code), each bit sign -> {-1, 1} (0 -> +1),
    straight-through, id = the bits as an integer (dimension 0 the most significant bit), ``proj_out``
    (bits -> D) of the signs.

    Loss: ``commitment`` |z - sg(sign z)|^2 + ``entropy_weight`` (mean per-token entropy - codebook entropy). The
    soft assignment is q(c | z) = softmax_c(-|z - c|^2 / T) over the 2^bits codes c in {-1, 1}^bits (T =
    ``temperature``, MAGVIT-v2's 0.01). It factorises over bits (p_i(+1) = sigmoid(4 z_i / T)), so the per-token
    entropy is the exact sum of per-bit binary entropies over every token. The codebook entropy H(mean_z q(c|z))
    does not factorise: it is computed exactly over all 2^bits codes, but on at most ``entropy_tokens``
    evenly strided tokens, so it stays cheap (M x K x bits) at K = 1024..8192.

    Written here rather than taken from vector-quantize-pytorch: that package is not a dependency, and the
    cross-scale quantiser needs a shared codebook with per-scale statistics, which is a few lines here.
    """

    def __init__(self, dim: int, num_codes: int, commitment: float = 0.25, entropy_weight: float = 0.1,
                 temperature: float = 0.01, entropy_tokens: int = 512) -> None:  # fmt: skip
        super().__init__()
        bits = round(math.log2(num_codes)) if num_codes >= 2 else 0
        if num_codes < 2 or 2**bits != num_codes:
            raise ValueError(f"codebook_size must be a power of two >= 2 for lfq, got {num_codes}")
        if temperature <= 0 or entropy_tokens < 1:
            raise ValueError(f"lfq needs temperature > 0 and entropy_tokens >= 1, got {temperature}, {entropy_tokens}")
        self.num_codes, self.bits = num_codes, bits
        self.commitment, self.entropy_weight = commitment, entropy_weight
        self.temperature, self.entropy_tokens = temperature, entropy_tokens
        self.proj_in = nn.Linear(dim, bits, bias=False)
        self.proj_out = nn.Linear(bits, dim)
        self.register_buffer("bit_values", 2 ** torch.arange(bits - 1, -1, -1), persistent=False)
        self.register_buffer("codes", self.ids_to_signs(torch.arange(num_codes)), persistent=False)

    def ids_to_signs(self, ids: Tensor) -> Tensor:
        """(...) ids -> (..., bits) in {-1, 1}."""
        return ((ids.unsqueeze(-1) // self.bit_values) % 2).float() * 2 - 1

    def lookup(self, ids: Tensor) -> Tensor:
        """(...) ids -> (..., D) decoder-side vectors."""
        return self.proj_out(self.ids_to_signs(ids).to(self.proj_out.weight.dtype))

    def entropy_penalty(self, z: Tensor) -> Tensor:
        """Mean per-token entropy minus codebook entropy of the soft assignment of (M, bits) logits ``z``."""
        per_token = binary_entropy(torch.sigmoid(4 * z / self.temperature)).sum(-1).mean()
        stride = max(1, math.ceil(len(z) / self.entropy_tokens))
        logits = (z[::stride] @ self.codes.t().to(z.dtype)) * (2 / self.temperature)
        mean_probs = logits.softmax(-1).mean(0)
        codebook = -(mean_probs * (mean_probs + 1e-8).log()).sum()
        return per_token - codebook

    def forward(self, features: Tensor) -> Quantized:
        z = self.proj_in(features)
        signs = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
        ids = ((signs > 0).long() * self.bit_values).sum(-1)
        loss = self.commitment * F.mse_loss(z, signs)
        if self.entropy_weight:
            loss = loss + self.entropy_weight * self.entropy_penalty(z.reshape(-1, self.bits))
        usage, perplexity = code_statistics(ids, self.num_codes)
        return Quantized(self.proj_out(z + (signs - z).detach()), ids, loss, usage, perplexity)


def check_cvq_settings(num_latents: int, scales: Sequence[int], codebook_size: int, quantizer: str,
                       quant_resi: float) -> None:  # fmt: skip
    """ValueError (message starting with the argument's name) on impossible quantiser settings."""
    if quantizer not in QUANTIZERS:
        raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {quantizer!r}")
    if not scales or any(int(s) != s or s < 1 for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive token counts, got {list(scales)}")
    if any(b <= a for a, b in zip(scales, scales[1:], strict=False)):
        raise ValueError(f"scales must be strictly increasing, got {list(scales)}")
    if scales[-1] != num_latents:
        raise ValueError(f"scales must end at num_latents={num_latents} (the last scale is the identity), "
                         f"got {list(scales)}")
    if codebook_size < 2:
        raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
    if not 0.0 <= quant_resi <= 1.0:
        raise ValueError(f"quant_resi must lie in [0, 1], got {quant_resi}")


class CrossScaleQuantizer(nn.Module):
    """Multi-scale residual quantiser of (B, L, C) latents; see the module docstring."""

    def __init__(self, width: int, num_latents: int, scales: Sequence[int], codebook_size: int, code_dim: int,
                 quantizer: str = "vq", heads: int = 4, beta: float = 0.25, quant_resi: float = 0.5,
                 entropy_weight: float = 0.1, ema_decay: float = 0.99, dead_threshold: float = 1.0,
                 mlp_ratio: float = 4.0, prenorm: bool = False, entropy_temperature: float = 0.01) -> None:  # fmt: skip
        super().__init__()
        check_cvq_settings(num_latents, scales, codebook_size, quantizer, quant_resi)
        self.scales = tuple(int(s) for s in scales)
        self.num_latents, self.width, self.codebook_size = num_latents, width, codebook_size
        self.beta, self.quant_resi, self.prenorm = beta, quant_resi, prenorm
        inner = self.scales[:-1]
        self.down = nn.ModuleList(CrossAttentionBlock(width, heads, mlp_ratio) for _ in inner)
        self.up = nn.ModuleList(CrossAttentionBlock(width, heads, mlp_ratio) for _ in inner)
        self.phi = nn.ModuleList(nn.Linear(width, width) for _ in self.scales)
        self.norm = nn.LayerNorm(width)
        self.apply(init_vit_weights)
        self.down_queries = nn.ParameterList(nn.Parameter(torch.randn(n, width) * 0.02) for n in inner)
        self.up_queries = nn.ParameterList(nn.Parameter(torch.randn(num_latents, width) * 0.02) for _ in inner)
        if quantizer == "vq":
            self.codebook: nn.Module = VectorQuantizer(width, codebook_size, code_dim, decay=ema_decay,
                                                       commitment=beta, dead_threshold=dead_threshold)
        else:
            self.codebook = LookupFreeQuantizer(width, codebook_size, commitment=beta, entropy_weight=entropy_weight,
                                                temperature=entropy_temperature)

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    @property
    def total_tokens(self) -> int:
        """T = sum of the scales' token counts."""
        return sum(self.scales)

    def _check_scale(self, s: int) -> None:
        if not 0 <= s < self.num_scales:
            raise ValueError(f"scale index {s} is out of range for {self.num_scales} scales")

    def downsample(self, s: int, f: Tensor) -> Tensor:
        """(B, L, C) -> (B, L_s, C): scale s's queries read ``f`` (the identity at the last scale)."""
        self._check_scale(s)
        if s == self.num_scales - 1:
            return f
        return self.down[s](self.down_queries[s].unsqueeze(0).expand(f.shape[0], -1, -1), f)

    def upsample(self, s: int, t: Tensor) -> Tensor:
        """(B, L_s, C) -> (B, L, C): L queries read ``t`` (identity at the last scale), then the Phi blend."""
        self._check_scale(s)
        if s < self.num_scales - 1:
            t = self.up[s](self.up_queries[s].unsqueeze(0).expand(t.shape[0], -1, -1), t)
        return (1 - self.quant_resi) * t + self.quant_resi * self.phi[s](t)

    def quantize_scale(self, s: int, r: Tensor) -> Quantized:
        """Scale s's tokens (B, L_s, C) through the shared codebook, with that scale's statistics."""
        self._check_scale(s)
        return self.codebook(r)

    def quantize(self, s: int, r: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, L_s, C) -> (vectors (B, L_s, C) straight-through, ids (B, L_s) int64, quantiser loss)."""
        q = self.quantize_scale(s, r)
        return q.vectors, q.ids, q.loss

    def lookup(self, s: int, ids: Tensor) -> Tensor:
        """(B, L_s) ids -> (B, L_s, C): the vectors ``quantize`` returns for those ids (codebook shared by scales)."""
        self._check_scale(s)
        return self.codebook.lookup(ids)

    def forward(self, z: Tensor, quantize: bool = True) -> CVQOutput:
        if z.dim() != 3 or z.shape[1:] != (self.num_latents, self.width):
            raise ValueError(f"CVQ input must be (B, {self.num_latents}, {self.width}), got {tuple(z.shape)}")
        if not quantize:
            return CVQOutput(self.norm(z), [], z.new_zeros(()), [], [])
        target = self.norm(z) if self.prenorm else z
        residual, f_hat = target.detach(), torch.zeros_like(target)
        loss, per_scale = z.new_zeros(()), []
        for s in range(self.num_scales):
            q = self.quantize_scale(s, self.downsample(s, residual))
            h = self.upsample(s, q.vectors)
            f_hat = f_hat + h
            residual = residual - h
            loss = loss + self.beta * F.mse_loss(f_hat.detach(), target) + F.mse_loss(f_hat, target.detach()) + q.loss
            per_scale.append(q)
        return CVQOutput(target + (f_hat - target).detach(), [q.ids for q in per_scale], loss / self.num_scales,
                         [q.usage for q in per_scale], [q.perplexity for q in per_scale])

    def _check_ids(self, ids: Sequence[Tensor]) -> None:
        if not ids or len(ids) > self.num_scales:
            raise ValueError(f"ids must hold 1..{self.num_scales} scales (a prefix), got {len(ids)}")
        for s, t in enumerate(ids):
            if t.dim() != 2 or t.shape[1] != self.scales[s]:
                raise ValueError(f"ids of scale {s} must be (B, {self.scales[s]}), got {tuple(t.shape)}")

    def decode_ids(self, ids: Sequence[Tensor]) -> Tensor:
        """ids of scales 0..k-1 (any prefix) -> f_hat (B, L, C) = sum_s up_s(lookup(s, ids_s))."""
        self._check_ids(ids)
        f_hat = self.upsample(0, self.lookup(0, ids[0]))
        for s in range(1, len(ids)):
            f_hat = f_hat + self.upsample(s, self.lookup(s, ids[s]))
        return f_hat

    def next_input(self, s: int, f_hat_partial: Tensor) -> Tensor:
        """AR input of scale s >= 1: down_s(f_hat after scales 0..s-1), (B, L, C) -> (B, L_s, C)."""
        if s < 1:
            raise ValueError(f"scale 0 has no AR input (its slots are the start tokens), got s={s}")
        return self.downsample(s, f_hat_partial)

    def next_inputs(self, ids: Sequence[Tensor]) -> Tensor:
        """Teacher-forcing inputs: all S scales' ids -> (B, T - L_0, C), scales 1..S-1 concatenated along tokens."""
        self._check_ids(ids)
        if len(ids) != self.num_scales:
            raise ValueError(f"next_inputs needs the ids of all {self.num_scales} scales, got {len(ids)}")
        f_hat = torch.zeros(ids[0].shape[0], self.num_latents, self.width, device=ids[0].device,
                            dtype=self.phi[0].weight.dtype)
        inputs = []
        for s in range(self.num_scales - 1):
            f_hat = f_hat + self.upsample(s, self.lookup(s, ids[s]))
            inputs.append(self.next_input(s + 1, f_hat))
        if not inputs:
            return f_hat[:, :0]
        return torch.cat(inputs, dim=1)

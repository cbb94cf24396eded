"""Vector quantisation with the field's anti-collapse measures (wave2.md 1.3, "Anti-collapse"; 6, "Codebook
collapse").

:class:`VectorQuantizer` maps (..., D) features to the nearest of ``num_codes`` codes in a low-dimensional,
l2-normalised code space and back:

- ``proj_in`` (D -> code_dim), l2 normalisation, nearest code by cosine similarity (ties: the lowest index);
  ``proj_out`` (code_dim -> D) of the chosen code. Straight-through gradients (z + (q - z).detach()).
- Codes are not trained by gradient: an exponential moving average (``decay``) of the assigned features
  (van den Oord et al. 2017, appendix; the EMA of vector-quantize-pytorch), renormalised to the sphere.
- Data init: the first training batch seeds the codebook with random encodings (a k-means-style start).
- Dead-code restart: a code whose EMA cluster size falls below ``dead_threshold`` is moved onto a random encoding of
  the current batch (every training forward).
- Loss: ``commitment * |z - sg(q)|^2`` (beta = 0.25 as VQ-VAE / 3DILG); the codebook term is the EMA.
- Logged per forward: ``usage`` (share of codes used by the batch) and ``perplexity`` (exp of the entropy of the
  batch's code histogram; num_codes when uniform, 1 when collapsed).
Written here rather than taken from vector-quantize-pytorch: that package is not a dependency and the few lines
below are what the method needs (cosine codes, EMA, restart, statistics) with the repository's init conventions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Quantized:
    """What :meth:`VectorQuantizer.forward` returns: ``vectors`` (..., D) straight-through, ``ids`` (...) int64,
    ``loss`` (commitment), ``usage`` and ``perplexity`` (detached scalars)."""

    vectors: Tensor
    ids: Tensor
    loss: Tensor
    usage: Tensor
    perplexity: Tensor


class VectorQuantizer(nn.Module):
    """EMA cosine-codebook VQ; see the module docstring."""

    def __init__(self, dim: int, num_codes: int, code_dim: int, decay: float = 0.99, commitment: float = 0.25,
                 dead_threshold: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        if num_codes < 2 or code_dim < 1:
            raise ValueError(f"a codebook needs num_codes >= 2 and code_dim >= 1, got {num_codes}, {code_dim}")
        self.num_codes, self.code_dim = num_codes, code_dim
        self.decay, self.commitment, self.dead_threshold = decay, commitment, dead_threshold
        self.proj_in = nn.Linear(dim, code_dim)
        self.proj_out = nn.Linear(code_dim, dim)
        self.register_buffer("codebook", F.normalize(torch.randn(num_codes, code_dim), dim=-1))
        self.register_buffer("cluster_size", torch.ones(num_codes))
        self.register_buffer("embed_sum", self.codebook.clone())
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def encode(self, features: Tensor) -> Tensor:
        """(..., D) -> (..., code_dim) unit vectors."""
        return F.normalize(self.proj_in(features), dim=-1)

    def nearest(self, codes: Tensor) -> Tensor:
        """(..., code_dim) unit vectors -> (...) ids of the most similar code (ties: lowest index)."""
        return (codes @ self.codebook.t()).argmax(dim=-1)

    def lookup(self, ids: Tensor) -> Tensor:
        """(...) ids -> (..., D) decoder-side vectors (``proj_out`` of the codes)."""
        return self.proj_out(self.codebook[ids])

    def forward(self, features: Tensor) -> Quantized:
        z = self.encode(features)
        flat = z.reshape(-1, self.code_dim)
        if self.training:
            self._update(flat.detach())
        ids = self.nearest(z)
        q = self.codebook[ids]
        loss = self.commitment * F.mse_loss(z, q.detach())
        straight = z + (q - z).detach()
        counts = torch.bincount(ids.reshape(-1), minlength=self.num_codes).float()
        probs = counts / counts.sum().clamp(min=1)
        entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
        return Quantized(self.proj_out(straight), ids, loss, (counts > 0).float().mean().detach(),
                         entropy.exp().detach())

    @torch.no_grad()
    def _update(self, flat: Tensor) -> None:
        """EMA step on the batch's encodings ``flat`` (M, code_dim), data init and dead-code restart."""
        if not bool(self.initialised):
            picks = flat[torch.randint(len(flat), (self.num_codes,), device=flat.device)]
            self.codebook.copy_(picks)
            self.embed_sum.copy_(picks)
            self.cluster_size.fill_(1.0)
            self.initialised.fill_(True)
        ids = self.nearest(flat)
        onehot = F.one_hot(ids, self.num_codes).type(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        self.codebook.copy_(F.normalize(self.embed_sum, dim=-1))
        dead = self.cluster_size < self.dead_threshold
        if bool(dead.any()):
            fresh = flat[torch.randint(len(flat), (int(dead.sum()),), device=flat.device)]
            self.codebook[dead] = fresh
            self.embed_sum[dead] = fresh
            self.cluster_size[dead] = 1.0

"""Mini-PointNet patch embedding (Point-MAE ``Encoder``): one token per patch of K points.

Official layout (kept so checkpoints load), with ``hidden`` = h = 128: ``first_conv`` = Conv1d 3->h, BN, ReLU,
Conv1d h->2h; max-pool over the patch; concat(global, local) = 4h per point; ``second_conv`` = Conv1d 4h->4h, BN,
ReLU, Conv1d 4h->out_dim; max-pool. Conv1d weights keep their (out, in, 1) shape. A smaller ``hidden`` is only for
tiny (demo / test) models: the mini-PointNet's cost does not shrink with ``trans_dim``.

Computation (same numbers, less work): every kernel-1 Conv1d is a channels-last ``F.linear`` on
``weight.squeeze(-1)`` over the flattened (B*G*K, C) points, and BatchNorm runs on that flat view (its statistics
are the same set of values as the (B*G, C, K) Conv1d layout). The 512-wide concat is never built:
``W [g; l] = W_g g + W_l l``, with the global half ``W_g g`` computed once per patch instead of once per point.
With ``keep`` (masked pre-training), the last Conv1d and max-pool run only for the kept patches: every BatchNorm
still sees all patches (as in the reference), and the kept tokens are bit-identical to the full computation.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """(B, G, K, 3) centred patches -> (B, G, out_dim) tokens."""

    def __init__(self, out_dim: int = 384, hidden: int = 128) -> None:
        super().__init__()
        self.out_dim = out_dim
        h = hidden
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, h, 1), nn.BatchNorm1d(h), nn.ReLU(inplace=True), nn.Conv1d(h, 2 * h, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(4 * h, 4 * h, 1), nn.BatchNorm1d(4 * h), nn.ReLU(inplace=True), nn.Conv1d(4 * h, out_dim, 1)
        )

    def forward(self, patches: Tensor, keep: Tensor | None = None) -> Tensor:
        """(B, G, K, 3) -> (B, G, C); with ``keep`` (B, G) bool (same count per row) -> (B, G_kept, C)."""
        b, g, k, _ = patches.shape
        conv_a, bn_a, _, conv_b = self.first_conv
        points = patches.reshape(b * g * k, 3)
        hidden = F.relu(bn_a(F.linear(points, conv_a.weight.squeeze(-1), conv_a.bias)))
        local = F.linear(hidden, conv_b.weight.squeeze(-1), conv_b.bias)  # (BGK, 256)
        width = local.shape[-1]
        pooled = local.view(b * g, k, width).max(dim=1).values  # (BG, 256): the "global" feature

        conv_c, bn_c, _, conv_d = self.second_conv
        weight_c = conv_c.weight.squeeze(-1)  # (4h, 4h): columns [:2h] act on global, [2h:] on local
        per_patch = F.linear(pooled, weight_c[:, :width], conv_c.bias)  # (BG, 512), once per patch
        per_point = F.linear(local, weight_c[:, width:]).view(b * g, k, -1)  # (BG, K, 512)
        hidden = (per_point + per_patch.unsqueeze(1)).view(b * g * k, -1)
        hidden = F.relu(bn_c(hidden)).view(b, g, k, -1)
        if keep is not None:
            hidden = hidden[keep].view(b, -1, k, hidden.shape[-1])
        out = F.linear(hidden, conv_d.weight.squeeze(-1), conv_d.bias)  # (B, G', K, C)
        return out.max(dim=2).values

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

BatchNorm precision (issue 14 item 15): on the CPU, torch runs BatchNorm on a (rows, C) tensor with its
channels-last kernel, which sums every thread's rows one after another in float32 (ATen
native/cpu/batch_norm_kernel.cpp, ``batch_norm_cpu_collect_stats_channels_last_impl`` and the channels-last backward);
the reference's (B*G, C, K) layout takes the contiguous kernel, which sums in double. With thousands of rows the
batch mean, sum(dy) and sum(dy * (x - mean)) lose digits: float32 gradients of this embedding were ~3e-3 (relative
norm) from float64 at 2 x 64 patches of 32 points, the reference layout's ~1e-6. So CPU float32 training uses
:func:`batch_norm_rows`, the same BatchNorm with its sums through ``Tensor.sum`` (pairwise): ~1e-6 again, for ~15%
more time than torch's kernel (still ~1.6x faster than the Conv1d layout). Eval mode, float64 and the GPU keep
torch's BatchNorm (the CUDA kernels reduce in parallel trees; their precision was not measured here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function
from torch.autograd.function import FunctionCtx, once_differentiable


class _RowBatchNorm(Function):
    """Training-mode affine BatchNorm over the rows of (R, C), biased batch variance (as torch normalises with):
    y = (x - mean) * weight / sqrt(var + eps) + bias. Returns (y, mean, var); mean and var only feed the running
    statistics (no gradient flows through them)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, ...]:
        rows = x.shape[0]
        mean = x.sum(0) / rows
        centred = x - mean
        var = centred.square().sum(0) / rows
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(centred, invstd, weight)
        ctx.mark_non_differentiable(mean, var)
        return torch.addcmul(bias, centred, weight * invstd), mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _mean: Tensor, _var: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        """dx = weight * invstd * (dy - mean(dy) - (x - mean) * invstd^2 * mean(dy * (x - mean)))."""
        centred, invstd, weight = ctx.saved_tensors
        rows = centred.shape[0]
        sum_dy = grad.sum(0)
        sum_dy_xmu = (grad * centred).sum(0)
        scale = weight * invstd
        grad_x = torch.addcmul(-scale * sum_dy / rows, grad, scale)
        grad_x.addcmul_(centred, -scale * invstd.square() * sum_dy_xmu / rows)
        return grad_x, sum_dy_xmu * invstd, sum_dy, None


def batch_norm_rows(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """``bn(x)`` for (R, C) rows, with the running statistics updated as ``nn.BatchNorm1d`` does (momentum, or the
    cumulative average when it is None; unbiased variance); CPU float32 training sums pairwise (module docstring)."""
    batch_stats = bn.training or bn.running_mean is None
    if not (batch_stats and bn.affine and x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[0] > 1):
        return bn(x)
    y, mean, var = _RowBatchNorm.apply(x, bn.weight, bn.bias, bn.eps)
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
            rows = x.shape[0]
            bn.running_mean.lerp_(mean, factor)
            bn.running_var.lerp_(var * (rows / (rows - 1)), factor)
    return y


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
        hidden = F.relu(batch_norm_rows(bn_a, F.linear(points, conv_a.weight.squeeze(-1), conv_a.bias)))
        local = F.linear(hidden, conv_b.weight.squeeze(-1), conv_b.bias)  # (BGK, 256)
        width = local.shape[-1]
        pooled = local.view(b * g, k, width).max(dim=1).values  # (BG, 256): the "global" feature

        conv_c, bn_c, _, conv_d = self.second_conv
        weight_c = conv_c.weight.squeeze(-1)  # (4h, 4h): columns [:2h] act on global, [2h:] on local
        per_patch = F.linear(pooled, weight_c[:, :width], conv_c.bias)  # (BG, 512), once per patch
        per_point = F.linear(local, weight_c[:, width:]).view(b * g, k, -1)  # (BG, K, 512)
        hidden = (per_point + per_patch.unsqueeze(1)).view(b * g * k, -1)
        hidden = F.relu(batch_norm_rows(bn_c, hidden)).view(b, g, k, -1)
        if keep is not None:
            hidden = hidden[keep].view(b, -1, k, hidden.shape[-1])
        out = F.linear(hidden, conv_d.weight.squeeze(-1), conv_d.bias)  # (B, G', K, C)
        return out.max(dim=2).values

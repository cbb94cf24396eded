"""autograd.Function wrappers that give the compiled kernels their backward passes.

``lib`` is the ``torch.ops`` namespace of a compiled backend (``pointbench_cpu`` or ``pointbench_cuda``); both
expose the same operator names, so one Function serves both devices. Gradients are first order (double backward
is not supported), checked against finite differences with ``torch.autograd.gradcheck`` in float64.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd import Function
from torch.autograd.function import FunctionCtx, once_differentiable


class Chamfer(Function):
    """(a, b) -> (d_ab, d_ba); gradients flow to each point and to its saved nearest neighbour."""

    @staticmethod
    def forward(ctx: FunctionCtx, lib: Any, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        d_ab, d_ba, i_ab, i_ba = lib.chamfer_forward(a, b)
        ctx.save_for_backward(a, b, i_ab, i_ba)
        ctx.lib = lib
        return d_ab, d_ba

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g_ab: Tensor, g_ba: Tensor) -> tuple[None, Tensor, Tensor]:
        a, b, i_ab, i_ba = ctx.saved_tensors
        g_ab = torch.zeros_like(i_ab, dtype=a.dtype) if g_ab is None else g_ab
        g_ba = torch.zeros_like(i_ba, dtype=a.dtype) if g_ba is None else g_ba
        grad_a, grad_b = ctx.lib.chamfer_backward(a, b, g_ab, i_ab, g_ba, i_ba)
        return None, grad_a, grad_b


class Gather(Function):
    """(features (B, N, C), idx (B, M)) -> (B, M, C); backward scatter-adds into the N source rows."""

    @staticmethod
    def forward(ctx: FunctionCtx, lib: Any, features: Tensor, idx: Tensor) -> Tensor:
        ctx.save_for_backward(idx)
        ctx.lib = lib
        ctx.n = features.shape[1]
        return lib.gather_forward(features, idx)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        (idx,) = ctx.saved_tensors
        return None, ctx.lib.gather_backward(grad, idx, ctx.n), None


class Interpolate(Function):
    """(features (B, N, C), idx (B, M, 3), weight (B, M, 3)) -> (B, M, C); differentiable in features and weight."""

    @staticmethod
    def forward(ctx: FunctionCtx, lib: Any, features: Tensor, idx: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(features, idx, weight)
        ctx.lib = lib
        return lib.interpolate_forward(features, idx, weight)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor | None, None, Tensor | None]:
        features, idx, weight = ctx.saved_tensors
        grad_features, grad_weight = ctx.lib.interpolate_backward(grad, features, idx, weight)
        needs = ctx.needs_input_grad
        return None, grad_features if needs[1] else None, None, grad_weight if needs[3] else None

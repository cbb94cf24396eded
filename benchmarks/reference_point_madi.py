"""A deliberately literal re-implementation of the reference Point-MaDi numerics (``models/Point_MaDi.py``), used
ONLY as the side-by-side baseline of ``test_point_madi_step.py`` (never imported by the package).

What it does the reference way (and pointbench does not):
- grouping, patch embedding: as ``reference_point_mae`` (pure-torch FPS loop, dense kNN + ``topk``, Conv1d);
- masks: per-sample Python loops (numpy shuffle for ``rand``; ``random.randint`` + norm + argsort for ``block``);
- the two masks run one after the other through encoder and decoder (two passes each);
- attention: explicit ``softmax(q @ k^T * scale) @ v``; the encoder ``Block(x, y)`` concatenates, projects and
  attends twice (masked rows over all keys, visible rows over visible keys);
- Chamfer-L2 by a dense distance matrix (the CUDA kernel's value).
Parameter names equal pointbench's (and the authors'), so one state dict drives both implementations.
``forward_groups`` accepts the step's draws (masks, timesteps, noises) so the two can be compared exactly.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from reference_point_mae import (
    RefDropPath,
    RefEncoder,
    RefGroup,
    RefMlp,
    _pos_mlp,
    chamfer_l2_literal,
    random_mask_literal,
)
from torch import Tensor, nn


class RefAttention(nn.Module):
    """Reference ``Attention``: self-attention, or (with ``y``) masked rows over [x; y] and visible rows over x."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        b, n, c = x.shape
        m = y.shape[1]
        qkv = self.qkv(torch.cat([x, y], dim=1)).reshape(b, n + m, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q[:, :, n:] @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        y = self.proj((attn @ v).transpose(1, 2).reshape(b, m, c))
        attn = ((q[:, :, :n] @ k[:, :, :n].transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = self.proj((attn @ v[:, :, :n]).transpose(1, 2).reshape(b, n, c))
        return x, y


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = RefDropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, dim * 4)
        self.attn = RefAttention(dim, heads)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        new_x, new_y = self.attn(self.norm1(x), self.norm1(y))
        new_x, new_y = x + self.drop_path(new_x), y + self.drop_path(new_y)
        new_x = new_x + self.drop_path(self.mlp(self.norm2(new_x)))
        new_y = new_y + self.drop_path(self.mlp(self.norm2(new_y)))
        return new_x, new_y


class RefCrossAttention(nn.Module):
    """Reference ``CrossAttention`` in its self-attention use (``cond=None``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q_linear = nn.Linear(dim, dim, bias=False)
        self.k_linear = nn.Linear(dim, dim, bias=False)
        self.v_linear = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q = self.q_linear(x).reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
        k = self.k_linear(x).reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
        v = self.v_linear(x).reshape(b, n, self.heads, -1).permute(0, 2, 1, 3)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class RefDecoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop_path = RefDropPath(drop_path)
        self.attn = RefCrossAttention(dim, heads)
        self.mlp = RefMlp(dim, dim * 4)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _rates(drop_path: float, depth: int) -> list[float]:
    return [r.item() for r in torch.linspace(0, drop_path, depth)]


class RefBlocks(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([RefBlock(dim, heads, r) for r in _rates(drop_path, depth)])

    def forward(self, x: Tensor, pos: Tensor, y: Tensor, pos_y: Tensor) -> tuple[Tensor, Tensor]:
        for block in self.blocks:
            x, y = block(x + pos, y + pos_y)
        return x, y


class RefDecoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([RefDecoderBlock(dim, heads, r) for r in _rates(drop_path, depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor, n: int) -> Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return self.norm(x[:, -n:])


def q_sample(abar: Tensor, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    a = abar[t]
    return torch.sqrt(a).view(-1, 1, 1) * x0 + torch.sqrt(1 - a).view(-1, 1, 1) * noise


class RefMaskEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, drop_path: float, ratio: float, steps: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.abar = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, steps), dim=0)
        self.encoder = RefEncoder(dim)
        self.pos_embed = _pos_mlp(dim)
        self.blocks = RefBlocks(dim, depth, heads, drop_path)
        self.norm = nn.LayerNorm(dim)

    def mask_block(self, center: Tensor) -> Tensor:
        masks = []
        for points in center:
            points = points.unsqueeze(0)
            index = random.randint(0, points.size(1) - 1)
            distance = torch.norm(points[:, index].reshape(1, 1, 3) - points, p=2, dim=-1)
            idx = torch.argsort(distance, dim=-1, descending=False)[0]
            mask = torch.zeros(len(idx))
            mask[idx[: int(self.ratio * len(idx))]] = 1
            masks.append(mask.bool())
        return torch.stack(masks)

    def mask_rand(self, center: Tensor) -> Tensor:
        return random_mask_literal(center, self.ratio)

    def forward(self, neighborhood: Tensor, center: Tensor, draws: dict[str, Any]) -> list[tuple[Tensor, ...]]:
        tokens = self.encoder(neighborhood)
        b, g, c = tokens.shape
        out = []
        for i, mask in enumerate(draws["masks"]):
            noise = draws["noise_center"][i]
            x_vis, x_mask = tokens[~mask].reshape(b, -1, c), tokens[mask].reshape(b, -1, c)
            vis_center = q_sample(
                self.abar, center[~mask].reshape(b, -1, 3), draws["t_center"], noise[~mask].reshape(b, -1, 3)
            )
            mask_center = q_sample(
                self.abar, center[mask].reshape(b, -1, 3), draws["t_center"], noise[mask].reshape(b, -1, 3)
            )
            x_vis, x_mask = self.blocks(x_vis, self.pos_embed(vis_center), x_mask, self.pos_embed(mask_center))
            out.append((self.norm(x_vis), self.norm(x_mask), mask))
        return out


class RefPointMaDi(nn.Module):
    """Pre-training model (state-dict names as the authors' ``Point_MaDi``); forward(xyz) -> total loss."""

    def __init__(self, num_group: int = 64, group_size: int = 32, dim: int = 384, drop_path: float = 0.1) -> None:
        super().__init__()
        self.group_size, self.steps = group_size, 2000
        self.abar = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, self.steps), dim=0)
        self.MAE_encoder = RefMaskEncoder(dim, 12, 6, drop_path, 0.6, self.steps)
        self.mask_token = nn.Conv1d(3 * group_size, dim, 1)
        self.MAE_decoder = RefDecoder(dim, 4, 6, drop_path)
        self.group_divider = RefGroup(num_group, group_size)
        self.increase_dim = nn.Sequential(nn.Conv1d(dim, 3 * group_size, 1))
        self.pred_pos_vis = nn.Sequential(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, 3))
        self.pred_pos_msk = nn.Sequential(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, 3))

    def draw(self, center: Tensor) -> dict[str, Any]:
        b, g, _ = center.shape
        m = int(0.6 * g)
        return {
            "masks": [self.MAE_encoder.mask_rand(center), self.MAE_encoder.mask_block(center)],
            "t_center": torch.randint(0, self.steps, (b,)),
            "t_patch": torch.randint(0, self.steps, (b,)),
            "noise_center": torch.randn(2, b, g, 3),
            "noise_patch": torch.randn(2, b, m, 3 * self.group_size),
        }

    def forward(self, xyz: Tensor) -> Tensor:
        neighborhood, center = self.group_divider(xyz)
        center_loss, patch_loss = self.forward_groups(neighborhood, center, self.draw(center))
        return center_loss + patch_loss

    def forward_groups(self, neighborhood: Tensor, center: Tensor, draws: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """(gamma * centre MSE, patch Chamfer-L2), each averaged over the two masks, as the reference returns."""
        b = neighborhood.shape[0]
        centre_losses, patch_losses = [], []
        for i, (x_vis, x_mask, mask) in enumerate(self.MAE_encoder(neighborhood, center, draws)):
            pos_vis, pos_msk = self.pred_pos_vis(x_vis), self.pred_pos_msk(x_mask)
            centre_losses += [F.mse_loss(pos_vis, center[~mask].reshape(b, -1, 3)),
                              F.mse_loss(pos_msk, center[mask].reshape(b, -1, 3))]  # fmt: skip
            pos_full = torch.cat(
                [self.MAE_encoder.pos_embed(pos_vis.detach()), self.MAE_encoder.pos_embed(pos_msk.detach())], 1
            )
            m = pos_msk.shape[1]
            x_t = q_sample(self.abar, neighborhood[mask].reshape(b, m, -1), draws["t_patch"], draws["noise_patch"][i])
            tokens = self.mask_token(x_t.transpose(1, 2)).transpose(1, 2)
            x_rec = self.MAE_decoder(torch.cat([x_vis, tokens], dim=1), pos_full, m)
            x_rec = self.increase_dim(x_rec.transpose(1, 2)).transpose(1, 2).reshape(b * m, -1, 3)
            patch_losses.append(chamfer_l2_literal(x_rec, neighborhood[mask].reshape(b * m, -1, 3)))
        center_loss = sum(centre_losses) * 0.25
        return center_loss * 0.1, sum(patch_losses) * 0.5

"""A deliberately literal re-implementation of the reference Point-MAE numerics, used ONLY as the side-by-side
baseline of ``test_point_mae_step.py`` (never imported by the package).

What it does the reference way (and pointbench does not):
- grouping: a pure-torch FPS loop, kNN by ``square_distance`` (|a|^2 + |b|^2 - 2ab) + ``topk``, flat-index gather;
- patch embedding: Conv1d on (B*G, C, K) with the 512-wide concat(global, local) built for every point;
- attention: explicit ``softmax(q @ k^T * scale) @ v``;
- masks: a per-sample Python loop (numpy shuffle), as ``_mask_center_rand``.
Parameter names equal pointbench's (and the authors'), so one state dict drives both implementations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

# --- grouping -------------------------------------------------------------------------------------------------


def fps_loop(xyz: Tensor, m: int) -> Tensor:
    """Greedy farthest point sampling starting at index 0: (B, N, 3) -> (B, m) indices."""
    b, n, _ = xyz.shape
    chosen = torch.zeros(b, m, dtype=torch.long)
    nearest = torch.full((b, n), 1e10)
    farthest = torch.zeros(b, dtype=torch.long)
    rows = torch.arange(b)
    for i in range(m):
        chosen[:, i] = farthest
        picked = xyz[rows, farthest, :].view(b, 1, 3)
        dist = torch.sum((xyz - picked) ** 2, -1)
        closer = dist < nearest
        nearest[closer] = dist[closer]
        farthest = torch.max(nearest, -1)[1]
    return chosen


def square_distance(src: Tensor, dst: Tensor) -> Tensor:
    """(B, M, 3), (B, N, 3) -> (B, M, N) squared distances by the expansion |a|^2 + |b|^2 - 2ab."""
    dist = -2 * torch.matmul(src, dst.permute(0, 2, 1))
    dist += torch.sum(src**2, -1).unsqueeze(-1)
    dist += torch.sum(dst**2, -1).unsqueeze(1)
    return dist


def knn_point(k: int, xyz: Tensor, query: Tensor) -> Tensor:
    """Indices (B, M, k) of the k nearest ``xyz`` points of every query point (unsorted, as the reference)."""
    return torch.topk(square_distance(query, xyz), k, dim=-1, largest=False, sorted=False)[1]


class RefGroup(nn.Module):
    def __init__(self, num_group: int, group_size: int) -> None:
        super().__init__()
        self.num_group, self.group_size = num_group, group_size

    def forward(self, xyz: Tensor) -> tuple[Tensor, Tensor]:
        b, n, _ = xyz.shape
        center_idx = fps_loop(xyz, self.num_group)
        center = torch.stack([xyz[i, center_idx[i]] for i in range(b)])
        idx = knn_point(self.group_size, xyz, center)
        idx = (idx + torch.arange(b).view(-1, 1, 1) * n).view(-1)
        neighborhood = xyz.reshape(b * n, -1)[idx, :].view(b, self.num_group, self.group_size, 3)
        return neighborhood - center.unsqueeze(2), center


# --- patch embedding and transformer ----------------------------------------------------------------------------


class RefEncoder(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, channels, 1)
        )

    def forward(self, groups: Tensor) -> Tensor:
        b, g, k, _ = groups.shape
        feature = self.first_conv(groups.reshape(b * g, k, 3).transpose(2, 1))
        pooled = torch.max(feature, dim=2, keepdim=True)[0]
        feature = torch.cat([pooled.expand(-1, -1, k), feature], dim=1)
        feature = self.second_conv(feature)
        return torch.max(feature, dim=2, keepdim=False)[0].reshape(b, g, self.channels)


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RefAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class RefDropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1 - self.p
        mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype))
        return x.div(keep) * mask


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = RefDropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, dim * 4)
        self.attn = RefAttention(dim, heads)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class RefBlocks(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, drop_path: float) -> None:
        super().__init__()
        rates = [r.item() for r in torch.linspace(0, drop_path, depth)]
        self.blocks = nn.ModuleList([RefBlock(dim, heads, rates[i]) for i in range(depth)])

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return x


class RefDecoder(RefBlocks):
    def __init__(self, dim: int, depth: int, heads: int, drop_path: float) -> None:
        super().__init__(dim, depth, heads, drop_path)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor, n: int) -> Tensor:  # type: ignore[override]
        return self.norm(super().forward(x, pos)[:, -n:])


def _pos_mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))


# --- the two models ---------------------------------------------------------------------------------------------


class RefMaskEncoder(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, drop_path: float, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.encoder = RefEncoder(dim)
        self.pos_embed = _pos_mlp(dim)
        self.blocks = RefBlocks(dim, depth, heads, drop_path)
        self.norm = nn.LayerNorm(dim)

    def random_mask(self, center: Tensor) -> Tensor:
        return random_mask_literal(center, self.ratio)

    def forward(self, neighborhood: Tensor, center: Tensor) -> tuple[Tensor, Tensor]:
        mask = self.random_mask(center)
        tokens = self.encoder(neighborhood)
        b, _, c = tokens.shape
        x_vis = tokens[~mask].reshape(b, -1, c)
        pos = self.pos_embed(center[~mask].reshape(b, -1, 3))
        return self.norm(self.blocks(x_vis, pos)), mask


class RefPointMAE(nn.Module):
    """Pre-training model (state-dict names as the authors' ``Point_MAE``); forward(xyz) -> Chamfer-L2 loss."""

    def __init__(self, num_group: int = 64, group_size: int = 32, dim: int = 384, drop_path: float = 0.1) -> None:
        super().__init__()
        self.MAE_encoder = RefMaskEncoder(dim, 12, 6, drop_path, 0.6)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = _pos_mlp(dim)
        self.MAE_decoder = RefDecoder(dim, 4, 6, drop_path)
        self.group_divider = RefGroup(num_group, group_size)
        self.increase_dim = nn.Sequential(nn.Conv1d(dim, 3 * group_size, 1))

    def forward(self, xyz: Tensor) -> Tensor:
        neighborhood, center = self.group_divider(xyz)
        x_vis, mask = self.MAE_encoder(neighborhood, center)
        b, _, c = x_vis.shape
        pos_vis = self.decoder_pos_embed(center[~mask]).reshape(b, -1, c)
        pos_mask = self.decoder_pos_embed(center[mask]).reshape(b, -1, c)
        m = pos_mask.shape[1]
        x_full = torch.cat([x_vis, self.mask_token.expand(b, m, -1)], dim=1)
        x_rec = self.MAE_decoder(x_full, torch.cat([pos_vis, pos_mask], dim=1), m)
        rebuilt = self.increase_dim(x_rec.transpose(1, 2)).transpose(1, 2).reshape(b * m, -1, 3)
        target = neighborhood[mask].reshape(b * m, -1, 3)
        return chamfer_l2_literal(rebuilt, target)


def chamfer_l2_literal(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared NN distance both ways, summed (the CUDA ChamferDistanceL2's value), by a dense matrix."""
    dist = square_distance(a, b)
    return dist.min(dim=2)[0].mean() + dist.min(dim=1)[0].mean()


class RefPointTransformer(nn.Module):
    """Fine-tuning model; state-dict names as pointbench's PointClassifier (``backbone.*``, ``head.*``)."""

    def __init__(self, num_classes: int, num_group: int = 128, group_size: int = 32, dim: int = 384) -> None:
        super().__init__()
        self.group_divider = RefGroup(num_group, group_size)
        self.backbone = nn.Module()
        self.backbone.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.backbone.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.backbone.encoder = RefEncoder(dim)
        self.backbone.pos_embed = _pos_mlp(dim)
        self.backbone.blocks = RefBlocks(dim, 12, 6, 0.1)
        self.backbone.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(
            nn.Linear(dim * 2, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(256, num_classes),
        )  # fmt: skip

    def forward(self, xyz: Tensor) -> Tensor:
        neighborhood, center = self.group_divider(xyz)
        net = self.backbone
        tokens = net.encoder(neighborhood)
        b = tokens.shape[0]
        x = torch.cat([net.cls_token.expand(b, -1, -1), tokens], dim=1)
        pos = torch.cat([net.cls_pos.expand(b, -1, -1), net.pos_embed(center)], dim=1)
        x = net.norm(net.blocks(x, pos))
        return self.head(torch.cat([x[:, 0], x[:, 1:].max(1)[0]], dim=-1))


def random_mask_literal(center: Tensor, ratio: float) -> Tensor:
    """The reference ``_mask_center_rand``: per sample, int(ratio * G) patches masked by a shuffled np row."""
    b, g, _ = center.shape
    count = int(ratio * g)
    mask = np.zeros([b, g])
    for i in range(b):
        row = np.hstack([np.zeros(g - count), np.ones(count)])
        np.random.shuffle(row)
        mask[i, :] = row
    return torch.from_numpy(mask).to(torch.bool)

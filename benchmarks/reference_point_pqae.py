"""A deliberately literal re-implementation of the reference Point-PQAE numerics (aHapBean/Point-PQAE
``models/Point_PQAE.py``, ``models/RandomCrop.py``, ``models/pos.py``), used ONLY as the side-by-side baseline of
``test_point_pqae_step.py`` (never imported by the package).

What it does the reference way (and pointbench does not):
- views: a per-sample Python loop (``np.random`` seed point, ``torch.norm`` distances + ``topk``, min-max scaling),
  then a per-sample rotation loop (``PointcloudRotate`` with ``np.random`` angles);
- grouping, patch embedding, ViT blocks and the dense Chamfer-L2 stand-in: those of ``reference_point_mae``
  (pure-torch FPS loop, ``square_distance`` kNN, explicit softmax attention, full distance matrices);
- VRPE: ``get_pos_embed``'s per-coordinate einsum loop; cross-attention by explicit softmax;
- the two directions run one after the other (two encoder passes, two decoder passes, two losses).
Parameter names equal pointbench's (and the authors'), so one state dict drives both implementations.
"""

from __future__ import annotations

import numpy as np
import torch
from reference_point_mae import RefBlock, RefBlocks, RefEncoder, RefGroup, _pos_mlp, chamfer_l2_literal
from torch import Tensor, nn

# --- decoupled views (models/RandomCrop.py, datasets/data_transforms.py) ---------------------------------------


def crop(pts: Tensor, crop_rate_min: float) -> tuple[Tensor, Tensor]:
    """One view of every cloud: nearest int(N * r) points of a random seed, min-max scaled to [-1, 1]."""
    crop_rate = 1.0 if crop_rate_min == 1.0 else np.random.uniform(crop_rate_min, 1.0)
    batch_size, n, _ = pts.shape
    centers = torch.zeros((batch_size, 3))
    ret_pts = []
    for i in range(batch_size):
        center_point = pts[i, np.random.choice(n), :]
        distances = torch.norm(pts[i, :, :] - center_point, dim=1)
        _, indices = torch.topk(-distances, int(n * crop_rate))
        selected = pts[i, indices, :].clone()
        low, high = selected.min(dim=0).values, selected.max(dim=0).values
        if crop_rate_min == 1.0:
            scaled = selected - (low + high) / 2
        else:
            scaled = (selected - low) / (high - low + 1e-6) * 2 - 1
        centers[i] = (low + high) / 2
        ret_pts.append(scaled)
    return torch.stack(ret_pts), centers


def rotate(pc: Tensor) -> tuple[list[float], Tensor]:
    """``PointcloudRotate(angles_ret_needed=True)``: per cloud a Y rotation by U[0, 2 pi), ``pc[i] @ R``."""
    angles = []
    for i in range(pc.shape[0]):
        angle = np.random.uniform() * 2 * np.pi
        c, s = np.cos(angle), np.sin(angle)
        rot = torch.from_numpy(np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).astype(np.float32))
        pc[i, :, :] = torch.matmul(pc[i], rot)
        angles.append(angle)
    return angles, pc


def point_random_crop(pts: Tensor, crop_rate_min: float) -> tuple[Tensor, Tensor, Tensor]:
    """``pointRandomCrop``: (center2 - center1, pts1, pts2), both views rotated."""
    pts1, center1 = crop(pts, crop_rate_min)
    pts2, center2 = crop(pts, crop_rate_min)
    _, pts1 = rotate(pts1)
    _, pts2 = rotate(pts2)
    return center2 - center1, pts1, pts2


def get_pos_embed(embed_dim: int, ipt_pos: Tensor) -> Tensor:
    """``models/pos.py``: (B, G, 6) -> (B, G, embed_dim), per coordinate [sin, cos] of D/12 frequencies."""
    omega = torch.arange(embed_dim // 12).float()
    omega /= embed_dim / 12.0
    omega = 1.0 / 10000**omega
    rpe = []
    for i in range(ipt_pos.shape[-1]):
        out = torch.einsum("bg, d->bgd", ipt_pos[:, :, i], omega)
        rpe.append(torch.sin(out))
        rpe.append(torch.cos(out))
    return torch.cat(rpe, dim=-1)


# --- modules -------------------------------------------------------------------------------------------------


class RefCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, kvx: Tensor) -> Tensor:
        b, n, c = x.shape
        kv = self.kv(kvx).reshape(b, kvx.shape[1], 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q = self.q(x).reshape(b, n, 1, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)[0]
        attn = ((q @ kv[0].transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ kv[1]).transpose(1, 2).reshape(b, n, c))


class RefPQDecoder(nn.Module):
    """``TransformerDecoder(x)`` without positions: blocks, then LayerNorm on every token."""

    def __init__(self, dim: int, depth: int, heads: int, drop_path: float) -> None:
        super().__init__()
        rates = [r.item() for r in torch.linspace(0, drop_path, depth)]
        self.blocks = nn.ModuleList([RefBlock(dim, heads, rates[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class RefEncoderBlocks(nn.Module):
    """``Encoder_Blocks``: patch embedding, cls token, pos-MLP at every block, final norm -> (cls, tokens)."""

    def __init__(self, dim: int, depth: int, heads: int, drop_path: float) -> None:
        super().__init__()
        self.encoder = RefEncoder(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = _pos_mlp(dim)
        self.blocks = RefBlocks(dim, depth, heads, drop_path)
        self.norm = nn.LayerNorm(dim)

    def forward(self, neighborhood: Tensor, center: Tensor) -> tuple[Tensor, Tensor]:
        tokens = self.encoder(neighborhood)
        b = tokens.shape[0]
        x = torch.cat((self.cls_token.expand(b, -1, -1), tokens), dim=1)
        pos = torch.cat((self.cls_pos.expand(b, -1, -1), self.pos_embed(center)), dim=1)
        x = self.norm(self.blocks(x, pos))
        return x[:, :1], x[:, 1:]


class RefPointPQAE(nn.Module):
    """Pre-training model (state-dict names as the authors' ``Point_PQAE``); forward(pts) -> loss dict."""

    def __init__(self, num_group: int = 64, group_size: int = 32, dim: int = 384, drop_path: float = 0.1) -> None:
        super().__init__()
        self.dim, self.crop_rate_min = dim, 0.6
        self.PQAE_encoder = RefEncoderBlocks(dim, 12, 6, drop_path)
        self.decoder_pos_embed = _pos_mlp(dim)
        self.group_divider = RefGroup(num_group, group_size)
        self.PQ_decoder = RefPQDecoder(dim, 4, 6, drop_path)
        self.PQattn_contrast = RefCrossAttention(dim, 6)
        self.PQ_linear = nn.Linear(dim, 3 * group_size)

    def forward(self, pts: Tensor) -> dict[str, Tensor]:
        return self.forward_views(*point_random_crop(pts, self.crop_rate_min))

    def forward_views(self, pts2_minus_pts1: Tensor, pts1: Tensor, pts2: Tensor) -> dict[str, Tensor]:
        neighborhood1, center1 = self.group_divider(pts1)
        neighborhood2, center2 = self.group_divider(pts2)
        _, encoded_pts1 = self.PQAE_encoder(neighborhood1, center1)
        _, encoded_pts2 = self.PQAE_encoder(neighborhood2, center2)
        b, g, _ = encoded_pts2.shape
        delta = pts2_minus_pts1.unsqueeze(1).expand(-1, g, -1)
        pos_embed1 = get_pos_embed(self.dim, torch.cat([center1, delta], dim=-1))
        pos_embed2 = get_pos_embed(self.dim, torch.cat([center2, -delta], dim=-1))
        predict1 = self.PQ_linear(self.PQ_decoder(self.PQattn_contrast(pos_embed1, encoded_pts2)))
        predict2 = self.PQ_linear(self.PQ_decoder(self.PQattn_contrast(pos_embed2, encoded_pts1)))
        loss1 = chamfer_l2_literal(predict1.reshape(b * g, -1, 3), neighborhood1.reshape(b * g, -1, 3).detach())
        loss2 = chamfer_l2_literal(predict2.reshape(b * g, -1, 3), neighborhood2.reshape(b * g, -1, 3).detach())
        return {"pq_loss1": loss1, "pq_loss2": loss2}

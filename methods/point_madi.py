"""Point-MaDi (NeurIPS 2025): masked autoencoding with two DDPM diffusions, one on patch centres, one on patches.

Faithful to the authors' ``models/Point_MaDi.py`` and ``cfgs/pretrain/pretrain.yaml`` (generation.md 3.4):
- Grouping, patch embedding, ViT-S and decoder as Point-MAE (64 FPS centres x 32 kNN points, patches centred;
  neighbours nearest first, where the reference's unsorted ``topk`` leaves the order unspecified).
- Two masks per sample, ``rand`` (random subset) and ``block`` (patches nearest a random centre), each masking
  round(0.6 * 64) = 38 patches (the reference's int() gives 38 too); every loss is the mean over the two masks.
  Both masks run as one batch of 2B samples, so they must mask the same number of patches (validated).
- Encoder ``MAE_encoder``: the patch embedding sees all patches. ALL centres (visible and masked) are noised,
  c_t = sqrt(abar_t) c + sqrt(1 - abar_t) eps, t ~ U{0..num_steps2-1} per sample (one t for both masks, fresh
  eps for each group), before the positional embedding. Each block runs two streams with shared weights: the
  visible tokens attend to the visible tokens, the masked tokens (embeddings of the masked patches) to all tokens
  (the reference ``Block(x, y)``; here one masked attention over [visible; masked]); stochastic depth is drawn
  per stream. ``pred_pos_vis`` / ``pred_pos_msk`` (MLP C -> 128 -> 3) regress the CLEAN centres from the normed
  visible / masked tokens: MSE.
- Decoder ``MAE_decoder``: the masked patches x0 (K*3 flattened) are noised with t ~ U{0..num_steps-1}
  (T = 2000, linear beta 1e-4 -> 0.02); mask tokens are ``mask_token`` = Conv1d(3K -> C) of the NOISY patch;
  input [visible encoder tokens; mask tokens], positions ``MAE_encoder.pos_embed`` of the DETACHED predicted
  centres (visible, then masked). Depth 4, separate ``q_linear``/``k_linear``/``v_linear``, xavier-uniform init,
  LayerNorm on the mask tokens; ``increase_dim`` Conv1d(C -> 3K) predicts x0. No timestep embedding
  (``use_time: False``).
- Loss = gamma * centre MSE + patch Chamfer, gamma = 0.1. ``cdl2`` = ``extensions.ops.chamfer_l2`` (the CUDA
  ``ChamferDistanceL2``: mean squared NN distance both ways, summed, over all masked patches); ``cdl1`` =
  ``ops.chamfer_l1``.
- ``num_steps2``: the reference ``Mask_Encoder`` reads ``diffusion_config.num_steps2``, which the released
  config lacks; here it is an explicit option, default 2000 (the value under which the released state-dict
  layout counts 29,092,582 parameters; the schedules hold no parameters).
- Sampling (visualisation only): :meth:`PointMaDi.reconstruct` runs ancestral DDPM sampling
  (:class:`~methods.blocks.diffusion.DDPMSchedule`) of all centres, re-encoding at every step with the current
  noisy centres (the reference ``p_sample_center`` keeps one encoder output for the whole chain), then of the
  masked patches with the decoder, positioned at the sampled centres. Figure:
  ``python -m methods.blocks.recon_figure --ckpt CKPT --out fig.png [--profile demo] [--steps 50]``.
- Downstream backbone: the shared encoder WITH ``cls_token``/``cls_pos``; weights import from ``MAE_encoder.``.
  MaDi's fine-tuning model pools concat(mean, max) over all tokens, cls included (Point_MaDi.py L922): the
  finetune protocol's ``suite.head.pooling: mean_max``, which ``point_madi.yaml``'s recipes set; its segmentation
  heads are trunc_normal(.02)-initialised (``suite.head.init: trunc_normal`` in the shapenetpart / s3dis recipes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import REPRESENTATION, Method, MethodConfig
from bench.errors import ConfigError
from bench.registry import METHODS
from extensions import ops
from methods.blocks.diffusion import DDPMSchedule
from methods.blocks.encoder import EncoderConfig, PointEncoder
from methods.blocks.masking import block_mask, num_masked, random_mask
from methods.blocks.transformer import Block, SplitQKVAttention, TransformerDecoder, init_xavier_weights

LOSSES = {"cdl2": "chamfer_l2", "cdl1": "chamfer_l1"}


@dataclass
class PointMaDiConfig(MethodConfig):
    """Point-MaDi pre-training model (official ``cfgs/pretrain/pretrain.yaml`` plus ``num_steps2``)."""

    name: str = "point_madi"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    num_group: int = 64
    group_size: int = 32
    mask_ratio_rand: float = 0.6
    mask_ratio_block: float = 0.6
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    loss: str = "cdl2"
    drop_path: float = 0.1
    gamma: float = 0.1
    num_steps: int = 2000
    num_steps2: int = 2000
    beta_start: float = 1.0e-4
    beta_end: float = 0.02

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = EncoderConfig.coerce(self.encoder)

    def validate(self) -> None:
        """Raise ConfigError on impossible settings."""
        self.encoder.validate()
        if self.loss not in LOSSES:
            raise ConfigError(f"method.loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        counts = {}
        for key in ("mask_ratio_rand", "mask_ratio_block"):
            ratio = getattr(self, key)
            counts[key] = num_masked(ratio, self.num_group) if 0.0 <= ratio <= 1.0 else -1
            if not 1 <= counts[key] <= self.num_group - 1:
                raise ConfigError(
                    f"method.{key}={ratio} masks {counts[key]} of num_group={self.num_group} patches; at least one "
                    "patch must be masked and one visible"
                )
        if counts["mask_ratio_rand"] != counts["mask_ratio_block"]:
            raise ConfigError(
                f"method.mask_ratio_rand and method.mask_ratio_block mask {counts['mask_ratio_rand']} and "
                f"{counts['mask_ratio_block']} patches: both masks run as one batch and must mask the same number"
            )
        if self.encoder.trans_dim % self.decoder_num_heads != 0:
            raise ConfigError(
                f"encoder.trans_dim={self.encoder.trans_dim} must be divisible by "
                f"method.decoder_num_heads={self.decoder_num_heads}"
            )
        if min(self.num_steps, self.num_steps2) < 1 or not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ConfigError(
                f"method.num_steps/num_steps2 must be >= 1 and 0 < beta_start <= beta_end < 1; got {self.num_steps}, "
                f"{self.num_steps2}, {self.beta_start}, {self.beta_end}"
            )


@dataclass
class MaDiDraws:
    """The random draws of one pre-training step (so that a step can be replayed exactly).

    masks (2, B, G) bool, True = masked ([rand, block]); t_center / t_patch (B,) timesteps (shared by both
    masks); noise_center (2, B, G, 3); noise_patch (2, B, M, 3K) in the order of the masked patches.
    """

    masks: Tensor
    t_center: Tensor
    t_patch: Tensor
    noise_center: Tensor
    noise_patch: Tensor


def stream_drop_path(drop: nn.Module, h: Tensor, n: int) -> Tensor:
    """Stochastic depth of a residual branch ``h`` (B, T, C), drawn separately per sample for the first ``n``
    tokens and for the rest (the reference applies ``DropPath`` to each stream on its own)."""
    prob = float(getattr(drop, "drop_prob", 0.0))
    if prob == 0.0 or not drop.training:
        return h
    keep = 1.0 - prob
    b, t, _ = h.shape
    draws = torch.floor(keep + torch.rand(b, 2, 1, dtype=h.dtype, device=h.device))
    mask = torch.cat([draws[:, :1].expand(b, n, 1), draws[:, 1:].expand(b, t - n, 1)], dim=1)
    return h * (mask / keep)


def visible_first_mask(n: int, t: int, device: torch.device | str | None = None) -> Tensor:
    """(T, T) attention mask, True = may attend: the first ``n`` tokens see only each other, the rest see all."""
    mask = torch.ones(t, t, dtype=torch.bool, device=device)
    mask[:n, n:] = False
    return mask


def two_stream_block(block: Block, z: Tensor, n: int, attn_mask: Tensor) -> Tensor:
    """Reference ``Block(x, y)`` on z = [x; y] (B, V + M, C), V = ``n``: x (visible) attends to x, y (masked) to
    [x; y] (``attn_mask`` = :func:`visible_first_mask`); shared weights, stochastic depth drawn per stream."""
    attn = block.attn
    q, k, v = attn.project(block.norm1(z), None)
    drop = attn.attn_drop if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop, scale=attn.scale)
    b, _, t, _ = out.shape
    out = attn.proj_drop(attn.proj(out.transpose(1, 2).reshape(b, t, -1)))
    z = z + stream_drop_path(block.drop_path, out, n)
    return z + stream_drop_path(block.drop_path, block.mlp(block.norm2(z)), n)


def _pos_head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, 3))


def _conv_as_linear(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A kernel-1 Conv1d applied to channel-last ``x`` (..., C_in) -> (..., C_out)."""
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


@METHODS.register("point_madi")
class PointMaDi(Method):
    """Masked point modelling with diffusion on centres and masked patches (see the module docstring)."""

    name = "point_madi"
    display_name = "Point-MaDi"
    capabilities = frozenset({REPRESENTATION})
    checkpoint_prefix = "MAE_encoder"
    config_class = PointMaDiConfig
    pretrain_dataset = "shapenet55"

    def __init__(self, cfg: PointMaDiConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        enc = cfg.encoder
        dim = enc.trans_dim
        self.MAE_encoder = PointEncoder(enc, cfg.num_group, cfg.group_size, cfg.drop_path, cls_token=False)
        self.mask_token = nn.Conv1d(3 * cfg.group_size, dim, 1)
        self.MAE_decoder = TransformerDecoder(
            dim, cfg.decoder_depth, cfg.decoder_num_heads, enc.mlp_ratio, enc.qkv_bias, cfg.drop_path,
            attn_layer=SplitQKVAttention,
        )  # fmt: skip
        # the reference decoder's xavier init (Point_MaDi.py L338-347), drawn after the default trunc_normal one so
        # that the random stream stays as it was before ``init`` existed
        self.MAE_decoder.apply(init_xavier_weights)
        self.increase_dim = nn.Sequential(nn.Conv1d(dim, 3 * cfg.group_size, 1))
        self.pred_pos_vis = _pos_head(dim)
        self.pred_pos_msk = _pos_head(dim)
        self.center_diffusion = DDPMSchedule(cfg.num_steps2, cfg.beta_start, cfg.beta_end)
        self.patch_diffusion = DDPMSchedule(cfg.num_steps, cfg.beta_start, cfg.beta_end)

    # --- pre-training -----------------------------------------------------------------------------------------
    def draw(self, centers: Tensor) -> MaDiDraws:
        """Sample the step's masks, timesteps and noises (global RNG) for centres (B, G, 3)."""
        b, g, _ = centers.shape
        device = centers.device
        masks = torch.stack(
            [random_mask(b, g, self.cfg.mask_ratio_rand, device=device), block_mask(centers, self.cfg.mask_ratio_block)]
        )
        m = num_masked(self.cfg.mask_ratio_rand, g)
        return MaDiDraws(
            masks=masks,
            t_center=self.center_diffusion.sample_timesteps(b, device),
            t_patch=self.patch_diffusion.sample_timesteps(b, device),
            noise_center=torch.randn(2, b, g, 3, device=device),
            noise_patch=torch.randn(2, b, m, 3 * self.cfg.group_size, device=device),
        )

    def encode(self, tokens: Tensor, noisy_centers: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
        """Two-stream encoder on patch tokens (B', G, C), noisy centres (B', G, 3) and masks (B', G) ->
        normed (visible (B', V, C), masked (B', M, C)) tokens, each in the patches' original order."""
        b, g, c = tokens.shape
        n = g - int(masks[0].sum())
        order = masks.to(torch.uint8).argsort(dim=1, stable=True).unsqueeze(-1).expand(-1, -1, c)  # visible first
        z = tokens.gather(1, order)
        pos = self.MAE_encoder.pos_embed(noisy_centers).gather(1, order)
        attn_mask = visible_first_mask(n, g, tokens.device)
        for block in self.MAE_encoder.blocks.blocks:
            z = two_stream_block(block, z + pos, n, attn_mask)
        z = self.MAE_encoder.norm(z)
        return z[:, :n], z[:, n:]

    def decode(self, visible: Tensor, noisy_patches: Tensor, centers: Tensor) -> Tensor:
        """Visible tokens (B', V, C), noisy masked patches (B', M, 3K), positions (B', V + M, 3) (visible first)
        -> predicted clean patches (B', M, K, 3) in their centred frames."""
        b, m, _ = noisy_patches.shape
        tokens = torch.cat([visible, _conv_as_linear(self.mask_token, noisy_patches)], dim=1)
        decoded = self.MAE_decoder(tokens, self.MAE_encoder.pos_embed(centers), m)
        return _conv_as_linear(self.increase_dim[0], decoded).view(b, m, -1, 3)

    def losses(self, neighborhood: Tensor, centers: Tensor, draws: MaDiDraws) -> dict[str, Tensor]:
        """Centre MSE and patch Chamfer, each averaged over the two masks, for grouped patches and given draws."""
        b, g, k, _ = neighborhood.shape
        masks = draws.masks.reshape(2 * b, g)
        tokens = self.MAE_encoder.encoder(neighborhood).repeat(2, 1, 1)  # one patch embedding for both masks
        clean = centers.repeat(2, 1, 1)
        noisy = self.center_diffusion.q_sample(clean, draws.t_center.repeat(2), draws.noise_center.flatten(0, 1))
        visible, masked = self.encode(tokens, noisy, masks)
        pred_vis, pred_msk = self.pred_pos_vis(visible), self.pred_pos_msk(masked)
        center_mse = 0.5 * (
            F.mse_loss(pred_vis, clean[~masks].view(2 * b, -1, 3))
            + F.mse_loss(pred_msk, clean[masks].view(2 * b, -1, 3))
        )
        x0 = neighborhood.repeat(2, 1, 1, 1)[masks].view(2 * b, -1, 3 * k)
        x_t = self.patch_diffusion.q_sample(x0, draws.t_patch.repeat(2), draws.noise_patch.flatten(0, 1))
        positions = torch.cat([pred_vis, pred_msk], dim=1).detach()
        predicted = self.decode(visible, x_t, positions)
        patch_cd = getattr(ops, LOSSES[self.cfg.loss])(predicted.view(-1, k, 3), x0.view(-1, k, 3))
        loss = self.cfg.gamma * center_mse + patch_cd
        return {"loss": loss, "center_mse": center_mse.detach(), "patch_cd": patch_cd.detach()}

    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """batch["xyz"] (B, N, 3) -> {"loss": gamma * centre MSE + patch Chamfer, "center_mse", "patch_cd"}."""
        neighborhood, centers = self.MAE_encoder.group_divider(batch["xyz"])
        return self.losses(neighborhood, centers, self.draw(centers))

    # --- sampling (visualisation) -----------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, xyz: Tensor, steps: int | None = 50, generator: torch.Generator | None = None) -> dict:
        """Ancestral DDPM sampling of centres and masked patches under a ``rand`` mask (see the module docstring).

        Returns clean (B, N, 3) input, mask (B, G), masked (B, V*K, 3) visible points, centers (B, G, 3) sampled
        centres, patches (B, M, K, 3) sampled masked patches (centred frames), reconstruction (B, M*K, 3) =
        sampled patches placed at their sampled centres. ``steps`` None = every timestep (2000).
        """
        neighborhood, centers = self.MAE_encoder.group_divider(xyz)
        b, g, k, _ = neighborhood.shape
        mask = random_mask(b, g, self.cfg.mask_ratio_rand, device=xyz.device)
        tokens = self.MAE_encoder.encoder(neighborhood)
        state: dict[str, Tensor] = {}

        def predict_centers(noisy: Tensor, t: int) -> Tensor:
            state["visible"], masked = self.encode(tokens, noisy, mask)
            out = torch.empty_like(noisy)
            out[~mask], out[mask] = (
                self.pred_pos_vis(state["visible"]).flatten(0, 1),
                self.pred_pos_msk(masked).flatten(0, 1),
            )
            return out

        sampled = self.center_diffusion.sample((b, g, 3), predict_centers, steps, generator, xyz.device)
        positions = torch.cat([sampled[~mask].view(b, -1, 3), sampled[mask].view(b, -1, 3)], dim=1)
        m = int(mask[0].sum())

        def predict_patches(noisy: Tensor, t: int) -> Tensor:
            return self.decode(state["visible"], noisy, positions).flatten(2)

        patches = self.patch_diffusion.sample((b, m, 3 * k), predict_patches, steps, generator, xyz.device)
        patches = patches.view(b, m, k, 3)
        visible_points = (neighborhood + centers.unsqueeze(2))[~mask].view(b, -1, 3)
        placed = (patches + sampled[mask].view(b, m, 1, 3)).view(b, -1, 3)
        return {"clean": xyz, "mask": mask, "masked": visible_points, "centers": sampled, "patches": patches,
                "reconstruction": placed}  # fmt: skip

    # --- downstream -------------------------------------------------------------------------------------------
    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> PointEncoder:
        """The fine-tuning encoder: the pre-trained ``MAE_encoder`` layout plus ``cls_token``/``cls_pos``."""
        encoder_cfg: Any = getattr(cfg, "encoder", EncoderConfig())
        return PointEncoder(EncoderConfig.coerce(encoder_cfg), num_group, group_size, drop_path, cls_token=True)

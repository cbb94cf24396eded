"""Multimodal masked point distillation (MMPD; TMLR submission 6767, no public code; wave2.md 3): align a point
encoder with several frozen foundation models, then masked point modelling with global-local distillation of that
encoder, plus token shuffling. Model-agnostic: the encoder is any registered representation method's backbone
that encodes visible patches (``method.backbone``, default the Point-MAE ViT). Every reading is a config key.

Stage ``align`` (trains ``align_encoder`` and its readout): the targets are precomputed frozen-teacher embeddings
joined by sample id (side data ``teachers``: ``teachers.text`` (B, 384) = the category's caption embedding,
``teachers.image`` (B, 1280) = the shape's depth-projection embedding; ``bench data prepare teachers``). Readout
``cls_heads`` (ULIP style): one linear head per teacher on the cls output; ``tokens`` (ReCon style, our
model-agnostic reading): one learnable query per teacher cross-attending to the encoder's output tokens, then its
head (ReCon puts the tokens inside the encoder's sequence, which a backbone behind ``bench.api.Encoder`` does not
expose). Losses per teacher (``text_loss`` / ``image_loss``): ``smoothl1`` regression of the l2-normalised
prediction (ReCon; the default for text: category captions make many same-caption pairs, false negatives for a
contrastive loss) or ``infonce`` (ULIP symmetric InfoNCE, one learnable logit scale initialised at ln(1/0.07);
the default for images, which are per shape).

Stage ``distill`` (``align_encoder`` frozen, the teacher): a student backbone ``MAE_encoder`` (fresh, as ACT; or
``student_init: teacher``) with Point-MAE's decoder and mask ratio 0.6. Losses: Chamfer-L2 of the masked patches;
local = distance(``local_proj``(decoder output at the masked slots), the teacher's patch tokens there); global =
distance(``global_proj``(student cls over the visible tokens), the teacher's cls over the full cloud); distance
``cosine`` (1 - cos, ACT's default) or ``smoothl1``; weights ``recon_weight``, ``local_weight``,
``global_weight`` [unverified, 1]. Token shuffling ``shuffle``: ``none``; ``order`` permutes the visible tokens
with their positions (a no-op for a ViT, whose self-attention is permutation-equivariant: it warns; kept for
order-sensitive backbones); ``pos_swap`` permutes the positional embeddings among ``shuffle_fraction`` of the
visible tokens, decoupling content and position (our reading, labelled so).

Downstream: ``MAE_encoder`` (the student). Pre-training uses category names (the captions): records say so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import REPRESENTATION, Encoder, Method, MethodConfig
from bench.errors import ConfigError
from bench.registry import METHODS
from extensions import ops
from methods.blocks.encoder import EncoderConfig
from methods.blocks.masking import num_masked, random_mask
from methods.blocks.transformer import CrossAttention, TransformerDecoder, decode_masked, init_vit_weights

READOUTS = ("cls_heads", "tokens")
ALIGN_LOSSES = ("smoothl1", "infonce")
DISTANCES = ("cosine", "smoothl1")
SHUFFLES = ("none", "order", "pos_swap")


@dataclass
class MMPDConfig(MethodConfig):
    """MMPD (wave2.md 3.3 "recommended harness spec")."""

    name: str = "mmpd"
    backbone: str = "point_mae"  # a registered representation method whose backbone encodes visible patches
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    num_group: int = 64
    group_size: int = 32
    text_dim: int = 384  # all-MiniLM-L6-v2
    image_dim: int = 1280  # EfficientNet-Lite0 pooled features
    readout: str = "cls_heads"
    text_loss: str = "smoothl1"
    image_loss: str = "infonce"
    text_weight: float = 1.0
    image_weight: float = 1.0
    temperature: float = 0.07  # initial InfoNCE temperature (learnable logit scale)
    mask_ratio: float = 0.6
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    distance: str = "cosine"
    recon_weight: float = 1.0
    local_weight: float = 1.0
    global_weight: float = 1.0
    shuffle: str = "none"
    shuffle_fraction: float = 0.5
    student_init: str = "fresh"  # fresh (ACT) | teacher (start the student from the stage-1 encoder)
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = EncoderConfig.coerce(self.encoder)

    def validate(self) -> None:
        self.encoder.validate()
        for key, allowed in (("readout", READOUTS), ("text_loss", ALIGN_LOSSES), ("image_loss", ALIGN_LOSSES),
                             ("distance", DISTANCES), ("shuffle", SHUFFLES), ("student_init", ("fresh", "teacher"))):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"method.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        if not 1 <= num_masked(self.mask_ratio, self.num_group) <= self.num_group - 1:
            raise ConfigError(f"method.mask_ratio={self.mask_ratio} must mask at least one and keep one patch")
        if not 0.0 <= self.shuffle_fraction <= 1.0:
            raise ConfigError(f"method.shuffle_fraction must lie in [0, 1], got {self.shuffle_fraction}")
        if self.encoder.trans_dim % self.decoder_num_heads:
            raise ConfigError(f"encoder.trans_dim={self.encoder.trans_dim} must be divisible by "
                              f"method.decoder_num_heads={self.decoder_num_heads}")
        if self.shuffle == "order":
            warnings.warn("method.shuffle=order permutes visible tokens with their positions: a no-op for a ViT "
                          "backbone (self-attention is permutation-equivariant)", stacklevel=2)


def backbone_encoder(cfg: MMPDConfig, num_group: int, group_size: int, drop_path: float) -> Encoder:
    """``cfg.backbone``'s downstream encoder (with its cls token), built with MMPD's ``encoder`` settings."""
    if cfg.backbone == "mmpd" or cfg.backbone not in METHODS:
        raise ConfigError(f"method.backbone={cfg.backbone!r} must name another registered representation method "
                          f"(e.g. point_mae); registered: {', '.join(m for m in METHODS.names() if m != 'mmpd')}")
    owner = METHODS.get(cfg.backbone)
    if REPRESENTATION not in owner.capabilities:
        raise ConfigError(f"method.backbone={cfg.backbone}: it has no downstream encoder to distil into")
    inner = owner.config_class()
    if hasattr(inner, "encoder"):
        inner.encoder = cfg.encoder
    encoder = owner.build_backbone(inner, num_group=num_group, group_size=group_size, drop_path=drop_path)
    if not (hasattr(encoder, "forward_tokens") and hasattr(encoder, "group_divider")) or encoder.cls_token is None:
        raise ConfigError(f"method.backbone={cfg.backbone}: its encoder must encode visible patches "
                          "(group_divider + forward_tokens with a cls token), as the Point-MAE ViT does")
    return encoder


class TokenReadout(nn.Module):
    """One learnable query per teacher cross-attending to the encoder's tokens (cls included), then a norm."""

    def __init__(self, dim: int, heads: int, count: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.zeros(1, count, dim))
        self.attn = CrossAttention(dim, heads)
        self.norm = nn.LayerNorm(dim)
        nn.init.trunc_normal_(self.queries, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        q = self.queries.expand(tokens.shape[0], -1, -1)
        return self.norm(q + self.attn(q, tokens))


@METHODS.register("mmpd")
class MMPD(Method):
    """Multi-teacher alignment, then masked point modelling with global-local distillation (module docstring)."""

    name = "mmpd"
    display_name = "MMPD"
    capabilities = frozenset({REPRESENTATION})
    checkpoint_prefix = "MAE_encoder"
    config_class = MMPDConfig
    pretrain_dataset = "shapenet55"

    def __init__(self, cfg: MMPDConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        dim = cfg.encoder.trans_dim
        self.align_encoder = backbone_encoder(cfg, cfg.num_group, cfg.group_size, cfg.drop_path)
        self.readout = TokenReadout(dim, cfg.encoder.num_heads, 2) if cfg.readout == "tokens" else None
        self.text_head = nn.Linear(dim, cfg.text_dim)
        self.image_head = nn.Linear(dim, cfg.image_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))
        self.MAE_encoder = backbone_encoder(cfg, cfg.num_group, cfg.group_size, cfg.drop_path)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.MAE_decoder = TransformerDecoder(dim, cfg.decoder_depth, cfg.decoder_num_heads, cfg.encoder.mlp_ratio,
                                              cfg.encoder.qkv_bias, cfg.drop_path)
        self.increase_dim = nn.Linear(dim, 3 * cfg.group_size)
        self.local_proj = nn.Linear(dim, dim)
        self.global_proj = nn.Linear(dim, dim)
        for module in (self.text_head, self.image_head, self.local_proj, self.global_proj):
            module.apply(init_vit_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.stage = "align"  # the first stage, until on_stage_start names one

    @classmethod
    def example_side_inputs(cls, cfg: MethodConfig, batch_size: int) -> dict[str, Tensor]:
        return {"teachers.text": torch.randn(batch_size, cfg.text_dim),
                "teachers.image": torch.randn(batch_size, cfg.image_dim)}

    def on_stage_start(self, stage) -> None:
        super().on_stage_start(stage)
        if self.stage not in ("align", "distill"):
            raise ConfigError(f"mmpd pre-trains in two stages named align and distill (pretrain.stages); got "
                              f"a stage named {self.stage!r}")
        if self.stage == "distill" and self.cfg.student_init == "teacher":
            self.MAE_encoder.load_state_dict(self.align_encoder.state_dict())
        self.train(self.training)

    def train(self, mode: bool = True) -> MMPD:
        super().train(mode)
        if self.stage == "distill":  # the frozen teacher keeps its BatchNorm statistics and drop path off
            self.align_encoder.eval()
        return self

    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.stage == "align":
            return self.align_step(batch)
        return self.distill_step(batch)

    # --- stage 1 -------------------------------------------------------------------------------------------
    def align_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        for key in ("teachers.text", "teachers.image"):
            if key not in batch:
                raise ConfigError(f"mmpd's align stage needs the side data 'teachers' in its batches (key {key!r}): "
                                  "list it in the stage's side_data; make it with: bench data prepare teachers")
        out = self.align_encoder(batch["xyz"])
        if self.readout is None:
            text_in = image_in = out.cls
        else:
            read = self.readout(torch.cat([out.cls.unsqueeze(1), out.tokens], dim=1))
            text_in, image_in = read[:, 0], read[:, 1]
        text = self.alignment(self.text_head(text_in), batch["teachers.text"].float(), self.cfg.text_loss)
        image = self.alignment(self.image_head(image_in), batch["teachers.image"].float(), self.cfg.image_loss)
        loss = self.cfg.text_weight * text + self.cfg.image_weight * image
        return {"loss": loss, "text_loss": text.detach(), "image_loss": image.detach(),
                "logit_scale": self.logit_scale.detach().exp()}

    def alignment(self, predicted: Tensor, target: Tensor, kind: str) -> Tensor:
        """SmoothL1 between l2-normalised vectors, or ULIP's symmetric InfoNCE over the batch."""
        predicted, target = F.normalize(predicted, dim=-1), F.normalize(target, dim=-1)
        if kind == "smoothl1":
            return F.smooth_l1_loss(predicted, target)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * predicted @ target.t()
        labels = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2

    # --- stage 2 -------------------------------------------------------------------------------------------
    def distill_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        neighborhood, centers = self.MAE_encoder.group_divider(batch["xyz"])
        with torch.no_grad():
            teacher = self.align_encoder.forward_tokens(neighborhood, centers)
        b, g = centers.shape[:2]
        mask = random_mask(b, g, cfg.mask_ratio, device=centers.device)
        neighborhood, centers, mask, teacher_tokens = self.shuffled(neighborhood, centers, mask, teacher.tokens)
        visible = self.MAE_encoder.forward_tokens(neighborhood, centers, visible_mask=~mask,
                                                  pos_order=self.position_order(b, g - int(mask[0].sum())))
        decoded = decode_masked(self.MAE_decoder, self.decoder_pos_embed, self.mask_token, visible.tokens,
                                visible.centers, centers[mask].view(b, -1, 3))
        recon = ops.chamfer_l2(self.increase_dim(decoded).reshape(-1, cfg.group_size, 3),
                               neighborhood[mask].reshape(-1, cfg.group_size, 3))
        local = self.distance(self.local_proj(decoded), teacher_tokens[mask].view(b, -1, decoded.shape[-1]))
        global_ = self.distance(self.global_proj(visible.cls), teacher.cls)
        loss = cfg.recon_weight * recon + cfg.local_weight * local + cfg.global_weight * global_
        return {"loss": loss, "recon_loss": recon.detach(), "local_loss": local.detach(),
                "global_loss": global_.detach()}

    def distance(self, predicted: Tensor, target: Tensor) -> Tensor:
        if self.cfg.distance == "cosine":
            return (1 - F.cosine_similarity(predicted, target.detach(), dim=-1)).mean()
        return F.smooth_l1_loss(predicted, target.detach())

    def shuffled(self, neighborhood: Tensor, centers: Tensor, mask: Tensor, teacher_tokens: Tensor,
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        """``order``: one random permutation of the patches per cloud (content, position, mask and teacher target
        move together, so only the sequence order changes); otherwise unchanged."""
        if self.cfg.shuffle != "order":
            return neighborhood, centers, mask, teacher_tokens
        perm = torch.rand(mask.shape, device=mask.device).argsort(dim=1)

        def take(t: Tensor) -> Tensor:
            return t.gather(1, perm.view(*perm.shape, *([1] * (t.dim() - 2))).expand(*perm.shape, *t.shape[2:]))

        return take(neighborhood), take(centers), take(mask), take(teacher_tokens)

    def position_order(self, b: int, visible: int) -> Tensor | None:
        """``pos_swap``: per cloud, a random ``shuffle_fraction`` of the visible tokens exchange positions."""
        if self.cfg.shuffle != "pos_swap" or visible < 2:
            return None
        device = self.mask_token.device
        order = torch.arange(visible, device=device).repeat(b, 1)
        count = max(2, int(round(self.cfg.shuffle_fraction * visible)))
        for row in range(b):
            chosen = torch.randperm(visible, device=device)[:count]
            order[row, chosen] = chosen[torch.randperm(count, device=device)]
        return order

    # --- downstream ----------------------------------------------------------------------------------------
    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> Encoder:
        """The stage-2 student: ``cfg.backbone``'s encoder with MMPD's encoder settings."""
        return backbone_encoder(cfg, num_group, group_size, drop_path)

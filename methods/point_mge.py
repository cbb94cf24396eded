"""Point-MGE (arXiv 2406.17342): a patch VQ-VAE with a neural-field decoder, then masked generative token modelling
with a sliding mask ratio; it learns representations and generates shapes. No official code exists; this follows
wave2.md 1.2-1.5 (MAGE's layout, MIT; 3DILG's field idea, read only). Every open reading is a config key.

Stage ``tokenizer`` (trains ``MGE_encoder.tokenizer`` and ``field_decoder``):
- FPS + kNN patches (``num_group`` x ``group_size``), slots serialised in Morton order of the centres
  (``tokenizer.serialize``), so slot k has a fixed index; the mini-PointNet patch embedding, a ViT with centre
  position embedding, then :class:`~methods.blocks.quant.VectorQuantizer` (cosine codes of ``code_dim``, EMA,
  dead-code restart; per-step ``usage`` and ``perplexity`` logged).
- The decoder (ViT on the code vectors + centre embedding) feeds a local neural field
  (:mod:`methods.blocks.field`). ``field_target``: ``udf`` (default; L1 to the unsigned distance to the dense input
  points, clamped), ``occupancy`` (BCE; needs ``query`` / ``occupancy`` in the batch, which ShapeNet point clouds
  lack), ``points`` (patch Chamfer-L2: a cheaper ablation, not a field). Loss = field loss + VQ commitment.
Stage ``generator`` (tokenizer frozen, in eval mode):
- The extractor (``MGE_encoder``; Point-MAE-size ViT, Point-MAE names ``pos_embed`` / ``blocks`` / ``norm`` /
  ``cls_token``) sees only the visible slots: ``token_embed(id) + slot_embed(slot)`` with ``pos_embed(centre)``
  added at every block, after a cls slot that also carries the class embedding (the null class when unconditional,
  and with probability ``class_dropout``).
- The generator sees the extractor outputs (plus their slot and centre embeddings) and, for every masked slot,
  ``mask_token`` + its slot embedding only: never that slot's true centre (the unofficial code leaks it).
- Per masked slot: id logits (cross-entropy, label smoothing) and the centre (``center_head``: ``regress`` =
  smooth-L1; ``bins`` (default) = 3 x ``center_bins``-way CE over [-1, 1], as 3DILG, sampled at generation:
  regression averages the modes at high mask ratios, and a deterministic centre makes every sample alike).
  Loss = CE_ids + ``center_weight`` x L_centre. One mask ratio per batch from
  :class:`~methods.blocks.maskgit.MaskSchedule` (MAGE draws one per iteration), logged as ``mask_ratio``.
Downstream: ``MGE_encoder`` (frozen tokenizer + extractor) is the backbone of every representation suite.
Generation: MaskGIT decoding fills ids and centres; the decoder turns them into a field and
:func:`~methods.blocks.field.extract_surface` into N points. Conditions: ``class`` (the cls slot's class
embedding) and ``partial`` (the crop's own patches are the visible slots; see :meth:`PointMGE.partial_slots`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.api import CONDITIONAL_GENERATION, GENERATION, REPRESENTATION, Condition, Method, MethodConfig
from bench.errors import ConfigError
from bench.registry import METHODS
from bench.schema import coerce_section
from extensions import ops
from methods.blocks.encoder import EncoderConfig
from methods.blocks.field import KernelFieldHead, extract_surface, sample_queries, udf_target
from methods.blocks.maskgit import MaskSchedule, SamplerConfig, maskgit_decode, sample_ids
from methods.blocks.mge_encoder import MGEEncoder, SlotFeatures, TokenizerConfig
from methods.blocks.serialization import morton_codes
from methods.blocks.transformer import TransformerEncoder, init_vit_weights

FIELD_TARGETS = ("udf", "occupancy", "points")
CENTER_HEADS = ("regress", "bins")
SURFACE_MODES = ("centres", "grid")


@dataclass
class SurfaceConfig:
    """Field -> points (:func:`methods.blocks.field.extract_surface`)."""

    mode: str = "centres"  # centres: Gaussian seeds around each generated centre | grid: a resolution^3 grid
    seeds: int = 128  # per patch: 64 x 128 = 8192 candidates, half kept, FPS to 2048
    seed_std: float = 0.08
    resolution: int = 32
    project_steps: int = 2
    keep: float = 0.5


@dataclass
class PointMGEConfig(MethodConfig):
    """Point-MGE (wave2.md 1.3 "recommended scaled-down architecture"; paper-scale values in the yaml)."""

    sampling_fields: ClassVar[tuple[str, ...]] = ("sampler", "surface")
    name: str = "point_mge"
    num_group: int = 64
    group_size: int = 32
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    field_target: str = "udf"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # the extractor (Point-MAE ViT-S)
    generator_depth: int = 4
    generator_num_heads: int = 6
    center_head: str = "bins"
    center_bins: int = 256
    center_weight: float = 1.0
    label_smoothing: float = 0.1
    num_classes: int = 55  # ShapeNet-55 synsets; id num_classes is the null (unconditional) class
    class_dropout: float = 0.1
    mask: MaskSchedule = field(default_factory=MaskSchedule)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    surface: SurfaceConfig = field(default_factory=SurfaceConfig)
    drop_path: float = 0.1
    cloud_points: int = 1024  # points per complete cloud (pretrain.npoints): a partial crop's patch count scales by it

    def __post_init__(self) -> None:
        self.encoder = EncoderConfig.coerce(self.encoder)
        for name, cls in (("tokenizer", TokenizerConfig), ("mask", MaskSchedule), ("sampler", SamplerConfig),
                          ("surface", SurfaceConfig)):  # fmt: skip
            setattr(self, name, coerce_section(cls, getattr(self, name), name))

    def validate(self) -> None:
        self.encoder.validate()
        self.tokenizer.validate()
        choices = (("field_target", FIELD_TARGETS), ("center_head", CENTER_HEADS))
        for key, allowed in choices:
            if getattr(self, key) not in allowed:
                raise ConfigError(f"method.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.surface.mode not in SURFACE_MODES:
            raise ConfigError(f"method.surface.mode must be one of {', '.join(SURFACE_MODES)}, "
                              f"got {self.surface.mode!r}")
        if self.encoder.trans_dim % self.generator_num_heads:
            raise ConfigError(f"encoder.trans_dim={self.encoder.trans_dim} must be divisible by "
                              f"method.generator_num_heads={self.generator_num_heads}")
        for sub in (self.mask, self.sampler):
            try:
                sub.check()
            except ValueError as err:
                raise ConfigError(f"method.{err}") from None


class FieldDecoder(nn.Module):
    """Code vectors + centres -> decoded tokens (ViT) -> a field at query points, or K points per patch."""

    def __init__(self, cfg: PointMGEConfig) -> None:
        super().__init__()
        tok = cfg.tokenizer
        dim = tok.trans_dim
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = TransformerEncoder(dim, tok.decoder_depth, tok.num_heads, tok.mlp_ratio, tok.qkv_bias)
        self.norm = nn.LayerNorm(dim)
        self.target = cfg.field_target
        if cfg.field_target == "points":
            self.head: nn.Module = nn.Linear(dim, 3 * cfg.group_size)
        else:
            self.head = KernelFieldHead(dim, tok.field_hidden, tok.field_freqs,
                                        output="udf" if cfg.field_target == "udf" else "occupancy")
        self.apply(init_vit_weights)

    def decode(self, vectors: Tensor, centers: Tensor) -> Tensor:
        return self.norm(self.blocks(vectors, self.pos_embed(centers)))

    def field(self, queries: Tensor, decoded: Tensor, centers: Tensor) -> Tensor:
        return self.head(queries, decoded, centers)

    def patches(self, decoded: Tensor) -> Tensor:
        """(B, G, C) -> (B, G, K, 3) points in each patch's centred frame (``points`` target)."""
        return self.head(decoded).view(*decoded.shape[:2], -1, 3)


@METHODS.register("point_mge")
class PointMGE(Method):
    """Patch VQ-VAE + masked generative extractor/generator (see the module docstring)."""

    name = "point_mge"
    display_name = "Point-MGE"
    capabilities = frozenset({REPRESENTATION, GENERATION, CONDITIONAL_GENERATION})
    condition_kinds = frozenset({"class", "partial"})
    checkpoint_prefix = "MGE_encoder"
    config_class = PointMGEConfig
    pretrain_dataset = "shapenet55"
    generation_stage = "generator"

    def __init__(self, cfg: PointMGEConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        dim = cfg.encoder.trans_dim
        self.MGE_encoder = MGEEncoder(cfg.tokenizer, cfg.encoder, cfg.num_group, cfg.group_size, cfg.drop_path)
        self.field_decoder = FieldDecoder(cfg)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.gen_slot_embed = SlotFeatures(dim)
        self.gen_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.generator = TransformerEncoder(dim, cfg.generator_depth, cfg.generator_num_heads, cfg.encoder.mlp_ratio,
                                            cfg.encoder.qkv_bias, cfg.drop_path)
        self.generator_norm = nn.LayerNorm(dim)
        self.id_head = nn.Linear(dim, cfg.tokenizer.codebook_size)
        self.center_head = nn.Linear(dim, 3 * (cfg.center_bins if cfg.center_head == "bins" else 1))
        for module in (self.generator, self.generator_norm, self.id_head, self.center_head):
            module.apply(init_vit_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.class_embed.weight, std=0.02)
        self.register_buffer("slot_code_mean", torch.linspace(0, 1, cfg.num_group))
        self.epoch, self.epochs = 0, 1
        self.stage = "tokenizer"  # the first stage, until on_stage_start names one

    # --- stages and schedules ------------------------------------------------------------------------------
    def on_stage_start(self, stage) -> None:
        super().on_stage_start(stage)
        if self.stage not in ("tokenizer", "generator"):
            raise ConfigError(f"point_mge pre-trains in two stages named tokenizer and generator (pretrain.stages); "
                              f"got a stage named {self.stage!r}")
        self.MGE_encoder.freeze_tokenizer = self.stage == "generator"
        self.train(self.training)

    def train(self, mode: bool = True) -> PointMGE:
        super().train(mode)
        if self.stage == "generator":  # the frozen tokenizer keeps its BatchNorm statistics
            self.field_decoder.eval()
        return self

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs

    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.stage == "tokenizer":
            return self.tokenizer_step(batch)
        if self.stage == "generator":
            return self.generator_step(batch)
        raise ConfigError(f"point_mge has no pretext for a stage named {self.stage!r} (tokenizer | generator)")

    # --- stage A ---------------------------------------------------------------------------------------------
    def tokenizer_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Field (or patch) reconstruction from the quantised patch codes."""
        xyz = batch["xyz"]
        tokens = self.MGE_encoder.tokenize(xyz)
        decoded = self.field_decoder.decode(tokens.quantized.vectors, tokens.centers)
        field_loss = self.field_loss(batch, xyz, tokens, decoded)
        q = tokens.quantized
        return {"loss": field_loss + q.loss, "field_loss": field_loss.detach(), "vq_loss": q.loss.detach(),
                "usage": q.usage, "perplexity": q.perplexity}

    def field_loss(self, batch: dict[str, Tensor], xyz: Tensor, tokens, decoded: Tensor) -> Tensor:
        cfg = self.cfg
        if cfg.field_target == "points":
            predicted = self.field_decoder.patches(decoded)
            b, g, k, _ = predicted.shape
            return ops.chamfer_l2(predicted.reshape(b * g, k, 3), tokens.neighborhood.reshape(b * g, -1, 3))
        if cfg.field_target == "occupancy":
            if "query" not in batch or "occupancy" not in batch:
                raise ConfigError("method.field_target=occupancy needs batch keys 'query' and 'occupancy' "
                                  "(watertight occupancies); this data set has point clouds only: use udf")
            logits = self.field_decoder.field(batch["query"], decoded, tokens.centers)
            return F.binary_cross_entropy_with_logits(logits, batch["occupancy"].float())
        tok = cfg.tokenizer
        queries = sample_queries(xyz, tok.queries, tok.near_std)
        target = udf_target(queries, xyz, tok.udf_clamp)
        return F.l1_loss(self.field_decoder.field(queries, decoded, tokens.centers), target)

    # --- stage B ---------------------------------------------------------------------------------------------
    def generator_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Masked token + centre prediction with one sampled mask ratio for the batch."""
        cfg = self.cfg
        with torch.no_grad():
            tokens = self.MGE_encoder.tokenize(batch["xyz"])
        ids, centers = tokens.ids, tokens.centers
        b, g = ids.shape
        ratio = float(cfg.mask.sample(self.epoch, self.epochs, 1)[0])
        count = min(g, max(1, math.ceil(ratio * g)))
        masked = torch.zeros(b, g, dtype=torch.bool, device=ids.device)
        masked.scatter_(1, torch.rand(b, g, device=ids.device).argsort(1)[:, :count], True)
        classes = self.class_ids(batch.get("label"), b, ids.device, drop=cfg.class_dropout)
        logits, center_out = self.predict(ids, centers, ~masked, classes)
        id_loss = F.cross_entropy(logits[masked], ids[masked], label_smoothing=cfg.label_smoothing)
        center_loss = self.center_loss(center_out[masked], centers[masked])
        self.track_slot_codes(centers)
        accuracy = (logits[masked].argmax(-1) == ids[masked]).float().mean()
        return {"loss": id_loss + cfg.center_weight * center_loss, "id_loss": id_loss.detach(),
                "center_loss": center_loss.detach(), "mask_ratio": torch.tensor(count / g),
                "id_acc": accuracy.detach()}

    def class_ids(self, labels: Tensor | None, n: int, device, drop: float = 0.0) -> Tensor:
        """Class embedding ids: the labels (with probability ``drop`` the null class), or all null."""
        null = torch.full((n,), self.cfg.num_classes, dtype=torch.long, device=device)
        if labels is None:
            return null
        labels = labels.long().to(device)
        if drop > 0:
            labels = torch.where(torch.rand(n, device=device) < drop, null, labels)
        return labels

    def center_loss(self, predicted: Tensor, target: Tensor) -> Tensor:
        if self.cfg.center_head == "regress":
            return F.smooth_l1_loss(predicted, target)
        bins = self.cfg.center_bins
        labels = ((target.clamp(-1, 1) + 1) / 2 * (bins - 1)).round().long()
        return F.cross_entropy(predicted.reshape(-1, bins), labels.reshape(-1))

    def predict(self, ids: Tensor, centers: Tensor, known: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
        """(id logits (B, G, K), centre outputs (B, G, 3 or 3 x bins)) for every slot. Only the ``known`` slots'
        ids and centres are read (same count per row); an unknown slot enters as mask token + slot embedding."""
        b, g = ids.shape
        slots = torch.arange(g, device=ids.device).expand(b, g)
        visible, cls_out = self.MGE_encoder.extract(ids, centers, known, self.class_embed(classes))
        v = visible.shape[1]
        seen = slots[known].view(b, v)
        unseen = slots[~known].view(b, g - v)
        seen_pos = self.gen_slot_embed(seen, g) + self.gen_pos_embed(centers[known].view(b, v, 3))
        x = torch.cat([cls_out.unsqueeze(1), visible, self.mask_token.expand(b, g - v, -1)], dim=1)
        pos = torch.cat([torch.zeros_like(cls_out).unsqueeze(1), seen_pos, self.gen_slot_embed(unseen, g)], dim=1)
        out = self.generator_norm(self.generator(x, pos))[:, 1:]
        order = torch.cat([seen, unseen], dim=1).argsort(dim=1)  # back to slot order
        out = out.gather(1, order.unsqueeze(-1).expand(-1, -1, out.shape[-1]))
        return self.id_head(out), self.center_head(out)

    @torch.no_grad()
    def track_slot_codes(self, centers: Tensor) -> None:
        """EMA of each slot's mean Morton position in [0, 1] (used to place a crop's patches, partial_slots)."""
        position = morton_codes(centers).float() / float(2**30 - 1)
        self.slot_code_mean.mul_(0.99).add_(position.mean(0), alpha=0.01)

    # --- generation ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, points: int, condition: Condition | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """MaskGIT decoding of ids and centres (``sampler``), then the field decoder and surface extraction."""
        cfg = self.cfg
        g = cfg.num_group
        was_training = self.training
        self.eval()
        device = self.mask_token.device
        ids = torch.zeros(n, g, dtype=torch.long, device=device)
        centers = torch.zeros(n, g, 3, device=device)
        known = torch.zeros(n, g, dtype=torch.bool, device=device)
        labels = condition.labels if condition is not None and condition.kind == "class" else None
        if condition is not None and condition.kind == "partial":
            ids, centers, known = self.partial_slots(condition.points.to(device))
        classes = self.class_ids(labels, n, device)

        def predict(ids_: Tensor, centers_: Tensor, known_: Tensor) -> tuple[Tensor, Tensor]:
            logits, center_out = self.predict(ids_, centers_, known_, classes)
            return logits, self.decode_centers(center_out, generator)

        ids, centers = maskgit_decode(predict, ids, centers, known, cfg.sampler, generator)
        clouds = self.decode_points(ids, centers, points, generator)
        self.train(was_training)
        return clouds

    def decode_centers(self, center_out: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Centre-head outputs -> centres: the regression, or per axis a bin sampled with the sampler's temperature
        and top-k / top-p (the bin's centre in [-1, 1]). Sampling, not the argmax: a deterministic centre would
        give every sample the same first slots, and MaskGIT would then decode one shape for all."""
        if self.cfg.center_head == "regress":
            return center_out
        bins, sampler = self.cfg.center_bins, self.cfg.sampler
        logits = center_out.view(*center_out.shape[:-1], 3, bins)
        index, _ = sample_ids(logits, sampler.temperature, sampler.top_k, sampler.top_p, generator)
        return index.float() / (bins - 1) * 2 - 1

    def decode_points(self, ids: Tensor, centers: Tensor, points: int, generator: torch.Generator | None) -> Tensor:
        """Ids + centres -> decoded tokens -> (n, points, 3) via the field (or the patches' points)."""
        vectors = self.MGE_encoder.tokenizer.quantizer.lookup(ids)
        decoded = self.field_decoder.decode(vectors, centers)
        if self.cfg.field_target == "points":
            cloud = (self.field_decoder.patches(decoded) + centers.unsqueeze(2)).flatten(1, 2).contiguous()
            return ops.gather_points(cloud, ops.furthest_point_sample(cloud, min(points, cloud.shape[1])))
        s = self.cfg.surface
        field_fn = (lambda q: self.field_decoder.field(q, decoded, centers)) if self.cfg.field_target == "udf" else \
            (lambda q: self.field_decoder.field(q, decoded, centers).sigmoid() - 0.5)
        return extract_surface(field_fn, centers, points, s.mode, s.seeds, s.seed_std, s.resolution,
                               s.project_steps, s.keep, generator)

    def partial_slots(self, crop: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A crop (n, P, 3) -> (ids, centres, known) over the G slots: the crop is grouped into
        V = round(G P / N) patches (N = ``cloud_points``, the pre-training point count, so patches keep their scale;
        at least 1, at most G - 1), tokenised, and each patch is placed in the slot whose mean Morton position
        (tracked in training, ``slot_code_mean``) is nearest, keeping the Morton order and distinct slots."""
        n, p, _ = crop.shape
        g = self.cfg.num_group
        v = min(g - 1, max(1, round(g * p / self.cfg.cloud_points)))
        tokens = self.MGE_encoder.tokenize(crop, num_group=v)
        position = morton_codes(tokens.centers).float() / float(2**30 - 1)  # sorted along dim 1 (Morton order)
        target = torch.searchsorted(self.slot_code_mean.contiguous(), position.contiguous()).clamp(max=g - 1)
        slots = torch.zeros(n, v, dtype=torch.long, device=crop.device)
        for k in range(v):  # strictly increasing, leaving room for the patches after k
            low = slots[:, k - 1] + 1 if k else torch.zeros(n, dtype=torch.long, device=crop.device)
            slots[:, k] = torch.maximum(target[:, k], low).clamp(max=g - v + k)
        ids = torch.zeros(n, g, dtype=torch.long, device=crop.device).scatter(1, slots, tokens.ids)
        centers = torch.zeros(n, g, 3, device=crop.device).scatter(1, slots.unsqueeze(-1).expand(-1, -1, 3),
                                                                   tokens.centers)
        known = torch.zeros(n, g, dtype=torch.bool, device=crop.device).scatter(1, slots, True)
        return ids, centers, known

    def sampler_settings(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"decoder": "maskgit", **asdict(self.cfg.sampler), "surface": asdict(self.cfg.surface),
                "field_target": self.cfg.field_target, "center_head": self.cfg.center_head, "guidance": None}

    # --- downstream ------------------------------------------------------------------------------------------
    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> MGEEncoder:
        """The frozen tokenizer + the extractor with its cls token, on the suite's grouping."""
        return MGEEncoder(cfg.tokenizer, cfg.encoder, num_group, group_size, drop_path, freeze_tokenizer=True)

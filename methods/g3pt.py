"""G3PT (arXiv 2409.06322): a cross-scale VQ tokenizer of implicit shapes, then next-scale autoregressive generation
(CAR) with class, image and text conditions. No code exists; this follows wave2.md 2.1-2.2 (Michelangelo's
perceiver, VAR's multi-scale quantiser and block-causal transformer, 3DShape2VecSet's decoder: all MIT, read only)
and generation.md 3.2. Every open reading of the paper is a config key.

Stage ``autoencoder`` (phase 1: trains ``encoder``, ``cvq``, ``decoder``; no quantisation, a LayerNorm bottleneck),
stage ``tokenizer`` (phase 2: the same modules with the cross-scale quantiser on), both on one loss:
- :class:`~methods.blocks.perceiver.PerceiverEncoder`: ``num_latents`` learnable queries cross-attend to the
  Fourier-embedded surface points (normals appended when ``use_normals``; ShapeNet point clouds have none, so the
  default is off and it is recorded), then ``encoder_depth`` self-attention blocks.
- :class:`~methods.blocks.cvq.CrossScaleQuantizer`: per scale, down-sampling queries cross-attend to the residual,
  the scale's tokens are quantised (``cvq.quantizer``: ``vq`` or ``lfq``), up-sampling queries bring them back, and
  the residual is updated as in VAR. Per-scale codebook ``usage_s<k>`` and ``perplexity_s<k>`` are logged.
- :class:`~methods.blocks.perceiver.OccupancyDecoder`: self-attention on the summed latents, then query points
  cross-attend. ``field_target`` ``occupancy`` (default: BCE on the data set's volume + near-surface labels, which
  the ShapeNet occupancy layout and its stand-in have) or ``udf`` (L1 to the clamped unsigned distance to the
  surface points, for point-cloud-only data). Loss = field loss + quantiser loss.
Stage ``car`` (tokenizer frozen, in eval mode: its EMA codebook does not move):
- teacher forcing: ids of every scale; the input of scale s >= 1 is the cumulative reconstruction of the scales
  before it, down-sampled by scale s's queries (:meth:`CrossScaleQuantizer.next_inputs`); scale 0 starts from the
  condition (SOS). :class:`~methods.blocks.car.CARTransformer`: block-causal over scales, QK-norm, AdaLN.
- one condition kind per batch, drawn uniformly from ``conditions`` in training (the first in eval), each sample
  replaced by the null condition with probability ``cond_drop`` (classifier-free guidance); see
  :mod:`methods.blocks.conditioning`.
- loss: token cross-entropy averaged over all tokens (VAR's 1/L weight); ``car.progressive`` > 0 trains only the
  first half of the scales for that share of the stage's epochs (G3PT's progressive schedule, VAR's ``pg``).
Sampling: scale by scale with a KV cache, top-k / top-p / temperature, and CFG ramping with the scale
(VAR: t = cfg x s / (S - 1)). ``generate_fields`` returns occupancy logits (or a UDF); ``generate`` turns them into
points: marching cubes on a ``mesh.resolution``^3 grid, then uniform samples on the mesh.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.api import CONDITIONAL_GENERATION, GENERATION, SHAPE_FIELDS, Condition, Method, MethodConfig, ShapeFields
from bench.data.render import depth_images
from bench.data.shapenet55 import ShapeNet55
from bench.errors import ConfigError
from bench.registry import METHODS, TEACHERS
from bench.schema import coerce_section
from bench.shape_fields import MeshConfig, fields_to_points
from methods.blocks.car import CARTransformer, cfg_logits
from methods.blocks.conditioning import (
    CONDITIONS,
    ConditionEncoder,
    ImageEncoderConfig,
    TextEncoderConfig,
    condition_inputs,
    training_captions,
)
from methods.blocks.cvq import CrossScaleQuantizer
from methods.blocks.field import sample_queries, udf_target
from methods.blocks.maskgit import sample_ids
from methods.blocks.perceiver import OccupancyDecoder, PerceiverEncoder

STAGES = ("autoencoder", "tokenizer", "car")
FIELD_TARGETS = ("occupancy", "udf")


@dataclass
class CVQConfig:
    """The cross-scale quantiser (wave2.md 2.2 item 2); ``scales`` ends at ``num_latents``."""

    scales: list[int] = field(default_factory=lambda: [1, 4, 16, 64, 256])
    quantizer: str = "vq"  # vq (cosine EMA codebook shared by the scales, as VAR) | lfq (lookup-free)
    codebook_size: int = 1024  # G3PT: LFQ with 8192 codes
    code_dim: int = 32
    beta: float = 0.25
    quant_resi: float = 0.5
    entropy_weight: float = 0.1
    ema_decay: float = 0.99
    dead_threshold: float = 0.5
    prenorm: bool = True  # quantise LayerNorm(z): phase 2 starts from the inputs the phase-1 decoder learnt on


@dataclass
class CARConfig:
    """The next-scale transformer (G3PT: GPT-2 style, 0.1B-1.5B; here a few layers)."""

    width: int = 384
    depth: int = 8
    heads: int = 6
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    drop_path: float = 0.0
    label_smoothing: float = 0.0  # VAR's default
    progressive: float = 0.0  # share of the car stage's epochs on the first half of the scales (0: off)


@dataclass
class CARSamplerConfig:
    """Sampling settings (VAR ``autoregressive_infer_cfg``); ``cfg`` 0 turns guidance off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    cfg: float = 1.5  # guidance at the last scale; t = cfg x s / (S - 1) at scale s
    kv_cache: bool = True


@dataclass
class G3PTConfig(MethodConfig):
    """G3PT scaled down (wave2.md 2.2; paper values in the yaml comments)."""

    sampling_fields: ClassVar[tuple[str, ...]] = ("sampler", "mesh")
    name: str = "g3pt"
    width: int = 256
    num_latents: int = 256  # G3PT: 2304
    heads: int = 4
    num_freqs: int = 8
    encoder_depth: int = 4  # G3PT: 12
    decoder_depth: int = 4  # G3PT: 16
    use_normals: bool = False
    field_target: str = "occupancy"
    udf_queries: int = 2048
    udf_near_std: float = 0.02
    udf_clamp: float = 0.1
    udf_level: float = 0.02  # the surface of a UDF model (marching cubes level)
    cvq: CVQConfig = field(default_factory=CVQConfig)
    car: CARConfig = field(default_factory=CARConfig)
    conditions: list[str] = field(default_factory=lambda: ["class", "image", "text"])
    cond_drop: float = 0.1
    num_classes: int = 55  # ShapeNet-55 synsets; id 55 is the null condition
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    sampler: CARSamplerConfig = field(default_factory=CARSamplerConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)

    def __post_init__(self) -> None:
        for key, cls in (("cvq", CVQConfig), ("car", CARConfig), ("text_encoder", TextEncoderConfig),
                         ("image_encoder", ImageEncoderConfig), ("sampler", CARSamplerConfig), ("mesh", MeshConfig)):
            setattr(self, key, coerce_section(cls, getattr(self, key), key))
        self.conditions = list(self.conditions)
        self.cvq.scales = [int(s) for s in self.cvq.scales]

    def validate(self) -> None:
        if self.field_target not in FIELD_TARGETS:
            raise ConfigError(f"method.field_target must be one of {', '.join(FIELD_TARGETS)}, "
                              f"got {self.field_target!r}")
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad or len(set(self.conditions)) != len(self.conditions):
            raise ConfigError(f"method.conditions={self.conditions}: distinct entries of {', '.join(CONDITIONS)}")
        if not self.cvq.scales or self.cvq.scales[-1] != self.num_latents:
            raise ConfigError(f"method.cvq.scales={self.cvq.scales} must end at method.num_latents={self.num_latents}")
        for key, value, div in (("width", self.width, self.heads), ("car.width", self.car.width, self.car.heads)):
            if value % div:
                raise ConfigError(f"method.{key}={value} must be divisible by its number of heads ({div})")
        if not 0.0 <= self.cond_drop < 1.0 or not 0.0 <= self.car.progressive < 1.0:
            raise ConfigError("method.cond_drop and method.car.progressive must lie in [0, 1)")
        self.mesh.check("method.mesh")


def _teacher_dim(name: str) -> int:
    return TEACHERS.get(name).dim


@METHODS.register("g3pt")
class G3PT(Method):
    """CVQ tokenizer + cross-scale autoregressive transformer (see the module docstring)."""

    name = "g3pt"
    display_name = "G3PT"
    capabilities = frozenset({GENERATION, CONDITIONAL_GENERATION, SHAPE_FIELDS})
    condition_kinds = frozenset(CONDITIONS)
    checkpoint_prefix = "encoder"  # the tokenizer's point encoder (no downstream backbone: generation only)
    config_class = G3PTConfig
    pretrain_dataset = "shapenet_occ"
    generation_stage = "car"

    def __init__(self, cfg: G3PTConfig) -> None:
        super().__init__(cfg)
        cfg.validate()
        q, c = cfg.cvq, cfg.car
        self.encoder = PerceiverEncoder(cfg.width, cfg.num_latents, cfg.heads, cfg.encoder_depth, cfg.num_freqs,
                                        in_features=3 if cfg.use_normals else 0)
        try:
            self.cvq = CrossScaleQuantizer(cfg.width, cfg.num_latents, q.scales, q.codebook_size, q.code_dim,
                                           q.quantizer, cfg.heads, q.beta, q.quant_resi, q.entropy_weight,
                                           q.ema_decay, q.dead_threshold, prenorm=q.prenorm)
        except ValueError as err:
            raise ConfigError(f"method.cvq: {err}") from None
        self.decoder = OccupancyDecoder(cfg.width, cfg.heads, cfg.decoder_depth, cfg.num_freqs)
        image_dim = _teacher_dim(cfg.image_encoder.name) if "image" in cfg.conditions else 0
        text_dim = _teacher_dim(cfg.text_encoder.name) if "text" in cfg.conditions else 0
        self.conditioner = ConditionEncoder(c.width, cfg.num_classes, cfg.conditions, cfg.text_encoder,
                                            cfg.image_encoder, text_dim, image_dim, null_tokens=16)
        self.car = CARTransformer(q.codebook_size, c.width, c.depth, c.heads, q.scales, c.width, cfg.width,
                                  prefix_dim=image_dim, mlp_ratio=c.mlp_ratio, qk_norm=c.qk_norm,
                                  drop_path=c.drop_path)
        self.epoch, self.epochs = 0, 1
        self.stage = STAGES[0]

    # --- stages ---------------------------------------------------------------------------------------------
    def on_stage_start(self, stage) -> None:
        super().on_stage_start(stage)
        if self.stage not in STAGES:
            raise ConfigError(f"g3pt pre-trains in stages named {', '.join(STAGES)} (pretrain.stages); "
                              f"got a stage named {self.stage!r}")
        self.train(self.training)

    def train(self, mode: bool = True) -> G3PT:
        super().train(mode)
        if self.stage == "car":  # the frozen tokenizer: no EMA codebook updates, no dead-code restarts
            for module in (self.encoder, self.cvq, self.decoder):
                module.eval()
        return self

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.epoch, self.epochs = epoch, epochs

    @classmethod
    def example_side_inputs(cls, cfg: G3PTConfig, batch_size: int) -> dict[str, Tensor]:
        """The occupancy labels of the ShapeNet occupancy layout (``query`` / ``occupancy``) and the class."""
        return {"query": torch.rand(batch_size, 64, 3) * 2 - 1, "occupancy": (torch.rand(batch_size, 64) > 0.5).float(),
                "label": torch.randint(cfg.num_classes, (batch_size,))}

    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.stage == "car":
            return self.car_step(batch)
        if self.stage in ("autoencoder", "tokenizer"):
            return self.tokenizer_step(batch, quantize=self.stage == "tokenizer")
        raise ConfigError(f"g3pt has no pretext for a stage named {self.stage!r} ({', '.join(STAGES)})")

    # --- tokenizer --------------------------------------------------------------------------------------------
    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        features = None
        if self.cfg.use_normals:
            if "normal" not in batch:
                raise ConfigError("method.use_normals=true, but the batches have no 'normal' (the data set has none)")
            features = batch["normal"].float()
        return self.encoder(batch["xyz"].float(), features)

    def tokenizer_step(self, batch: dict[str, Tensor], quantize: bool) -> dict[str, Tensor]:
        out = self.cvq(self.encode(batch), quantize=quantize)
        decoded = self.decoder.decode(out.f_hat)
        field_loss = self.field_loss(batch, decoded)
        logs = {"loss": field_loss + out.loss, "field_loss": field_loss.detach(), "vq_loss": out.loss.detach()}
        for k, (usage, perplexity) in enumerate(zip(out.usage, out.perplexity, strict=True)):
            logs[f"usage_s{k}"], logs[f"perplexity_s{k}"] = usage.detach(), perplexity.detach()
        return logs

    def field_loss(self, batch: dict[str, Tensor], decoded: Tensor) -> Tensor:
        cfg = self.cfg
        if cfg.field_target == "udf":
            xyz = batch["xyz"].float()
            queries = sample_queries(xyz, cfg.udf_queries, cfg.udf_near_std)
            return F.l1_loss(self.decoder.query(queries, decoded), udf_target(queries, xyz, cfg.udf_clamp))
        if "query" not in batch or "occupancy" not in batch:
            raise ConfigError("method.field_target=occupancy needs batch keys 'query' and 'occupancy' (the ShapeNet "
                              "occupancy layout, data set shapenet_occ); for point clouds alone use field_target=udf")
        queries, labels = batch["query"].float(), batch["occupancy"].float()
        if "near_query" in batch and "near_occupancy" in batch:
            queries = torch.cat([queries, batch["near_query"].float()], dim=1)
            labels = torch.cat([labels, batch["near_occupancy"].float()], dim=1)
        return F.binary_cross_entropy_with_logits(self.decoder.query(queries, decoded), labels)

    @torch.no_grad()
    def token_ids(self, batch: dict[str, Tensor]) -> list[Tensor]:
        return self.cvq(self.encode(batch), quantize=True).ids

    # --- CAR ------------------------------------------------------------------------------------------------
    def car_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ids = self.token_ids(batch)
        with torch.no_grad():
            inputs = self.cvq.next_inputs(ids)
        b, device = ids[0].shape[0], ids[0].device
        kind = self.cfg.conditions[int(torch.randint(len(self.cfg.conditions), ()))] if self.training else \
            self.cfg.conditions[0]
        drop = torch.rand(b, device=device) < self.cfg.cond_drop if self.training else None
        cond, prefix = self.conditioner(kind, b, device, drop=drop, **self.batch_condition(kind, batch))
        logits = self.car(inputs, cond, prefix)
        target = torch.cat(ids, dim=1)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="none",
                             label_smoothing=self.cfg.car.label_smoothing).view_as(target)
        weights = self.scale_weights(device)
        loss = (ce * weights).sum(1).mean() / weights.sum()
        accuracy = ((logits.argmax(-1) == target).float() * weights).sum(1).mean() / weights.sum()
        return {"loss": loss, "ce": (ce.mean()).detach(), "token_acc": accuracy.detach()}

    def batch_condition(self, kind: str, batch: dict[str, Tensor]) -> dict[str, Any]:
        """The training batch's condition inputs: labels, template captions, or depth renders (the data set's
        ``view`` when it has the model's number of views, else rendered from the batch's points)."""
        if kind == "class":
            return {"labels": batch["label"]}
        if kind == "text":
            return {"captions": training_captions(batch["label"], ShapeNet55.class_names)}
        image = self.cfg.image_encoder
        view = batch.get("view")
        if view is not None and view.dim() == 4 and view.shape[1] == image.views:
            return {"depth": view.float()}
        return {"depth": depth_images(batch["xyz"].float(), image.views, image.render)}

    def scale_weights(self, device) -> Tensor:
        """Per-token loss weights: 1, or 0 beyond the first half of the scales while the progressive share lasts."""
        scales = self.cfg.cvq.scales
        weights = torch.ones(sum(scales), device=device)
        if self.epoch < self.cfg.car.progressive * self.epochs:
            weights[sum(scales[: (len(scales) + 1) // 2]):] = 0
        return weights

    # --- sampling -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_token_ids(self, n: int, condition: Condition | None, generator: torch.Generator | None) -> list[Tensor]:
        """Scale by scale: CAR logits (with guidance when conditioned and ``sampler.cfg`` > 0), sampled ids, the
        cumulative reconstruction, and the next scale's input from it."""
        s_cfg, scales = self.cfg.sampler, self.cfg.cvq.scales
        device = next(self.parameters()).device
        kind = None if condition is None else condition.kind
        inputs = {} if condition is None else condition_inputs(condition, self.cfg.image_encoder.views,
                                                               self.cfg.image_encoder.render)
        cond, prefix = self.conditioner(kind, n, device, **inputs)
        guided = kind is not None and s_cfg.cfg > 0
        if guided:
            null_cond, _ = self.conditioner(kind, n, device, drop=torch.ones(n, dtype=torch.bool), **inputs)
            cond = torch.cat([cond, null_cond])
            prefix = None if prefix is None else torch.cat([prefix, self.conditioner.null_prefix_like(prefix)])
        state = self.car.start(cond, prefix)
        f_hat = torch.zeros(n, self.cfg.num_latents, self.cfg.width, device=device)
        ids: list[Tensor] = []
        for s in range(len(scales)):
            step_in = None if s == 0 else self.cvq.next_input(s, f_hat)
            if guided and step_in is not None:
                step_in = torch.cat([step_in, step_in])
            logits = self.car.step(state, s, step_in, use_cache=s_cfg.kv_cache)
            if guided:
                logits = cfg_logits(logits[:n], logits[n:], s, len(scales), s_cfg.cfg)
            chosen, _ = sample_ids(logits, s_cfg.temperature, s_cfg.top_k, s_cfg.top_p, generator)
            ids.append(chosen)
            f_hat = f_hat + self.cvq.upsample(s, self.cvq.lookup(s, chosen))
        return ids

    @torch.no_grad()
    def generate_fields(self, n: int, condition: Condition | None = None,
                        generator: torch.Generator | None = None) -> ShapeFields:
        was_training = self.training
        self.eval()
        ids = self.sample_token_ids(n, condition, generator)
        decoded = self.decoder.decode(self.cvq.decode_ids(ids))
        self.train(was_training)
        chunk = self.cfg.mesh.chunk

        def query(points: Tensor) -> Tensor:
            with torch.no_grad():
                return self.decoder.query(points.to(decoded.device).float(), decoded, chunk=chunk)

        if self.cfg.field_target == "udf":
            return ShapeFields("udf", query, n, level=self.cfg.udf_level)
        return ShapeFields("occupancy", query, n, level=0.0)

    @torch.no_grad()
    def generate(self, n: int, points: int, condition: Condition | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Implicit shapes -> marching cubes -> ``points`` uniform samples per mesh (:func:`fields_to_points`)."""
        fields_ = self.generate_fields(n, condition, generator)
        seed = int(torch.randint(2**31 - 1, (), generator=generator))
        return torch.from_numpy(fields_to_points(fields_, points, self.cfg.mesh, seed).points)

    def sampler_settings(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"decoder": "next-scale (VAR)", **asdict(cfg.sampler), "guidance_ramp": "t = cfg * s / (S - 1)",
                "scales": list(cfg.cvq.scales), "mesh": asdict(cfg.mesh), "field_target": cfg.field_target,
                "use_normals": cfg.use_normals, **self.conditioner.frozen.describe()}

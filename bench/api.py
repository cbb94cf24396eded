"""The contracts between the harness and what plugs into it: methods, encoders, protocols.

A *method* (``methods/<name>.py``, registered under the file stem) owns its pretext task(s) and architecture. The
harness never looks inside it; it only calls what is declared here:

- ``pretrain_step(batch)`` for pre-training (the one Trainer calls it; no method has its own loop), in each of the
  stages of ``pretrain.stages`` (one implicit stage when there are none); ``on_stage_start`` tells it which;
- ``param_groups`` (optimizer groups: per-module ``lr_scale`` and no-decay sets; AdamW stays the optimizer),
  ``on_epoch_start`` and ``on_step`` (schedules, codebook EMA, dead-code restart);
- ``build_backbone(cfg, ...)`` for the :class:`Encoder` that downstream protocols fine-tune, probe or freeze;
- ``checkpoint_prefix``: where that encoder lives in the method's (and the authors' official) state dict; a
  pre-training checkpoint holds the whole method;
- ``generate_fields(n, condition, generator)`` for methods that generate implicit shapes (capability
  ``shape_fields``): a :class:`ShapeFields` to query occupancy logits (or an unsigned distance) anywhere, which the
  conditional-generation protocol scores with IoU, marching cubes, Chamfer and F-score;
- ``generate(n, points, condition, generator)`` for generative methods (``generation_stage`` names the stage
  whose pretext trains the generator: the generation protocol continues it on a suite's own training split), and
  ``sampler_settings()``, which every generation record stores.

A *protocol* (``suites/protocols/``) declares what it needs from a method (:class:`Requirements`) and its typed
settings (``suite_class``, a :class:`bench.schema.SuiteConfig` subclass: the keys a suite yaml may set under
``suite``); the planner refuses an incompatible method before any work starts.

Shapes: a batch is a dict with canonical keys ``xyz (B,N,3) float32``, ``label (B,) int64``, ``id`` (list of str,
the stable sample ids) and, where a data set has them, ``normal (B,N,3)``, ``seg (B,N)``, side data
(``<side data>.<key>``), ``occupancy``/``query`` (generation), ``view`` (images), ``text``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.errors import BenchError
from bench.results import JobResult
from bench.schema import StageConfig, SuiteConfig

#: capability names a method may declare
REPRESENTATION = "representation"
GENERATION = "generation"
CONDITIONAL_GENERATION = "conditional_generation"
SHAPE_FIELDS = "shape_fields"  # generate_fields: implicit shapes (occupancy logits or unsigned distances)
CAPABILITIES = frozenset({REPRESENTATION, GENERATION, CONDITIONAL_GENERATION, SHAPE_FIELDS})
FIELD_KINDS = ("occupancy", "udf")

CONDITION_KINDS = ("class", "partial", "image", "text")

__all__ = ["CAPABILITIES", "CONDITIONAL_GENERATION", "CONDITION_KINDS", "FIELD_KINDS", "GENERATION", "REPRESENTATION",
           "SHAPE_FIELDS", "Condition", "Encoder", "EncoderOutput", "ShapeFields",
           "JobContext", "JobResult", "Method", "MethodConfig", "Protocol", "Requirements", "incompatibility"]


@dataclass
class EncoderOutput:
    """What a point encoder returns.

    tokens:  (B, G, C) patch tokens after the final LayerNorm (cls token excluded).
    centers: (B, G, 3) patch centres (FPS points) in the input's coordinates.
    cls:     (B, C) the cls-token output, or None for encoders without one.
    hidden:  per-block outputs (B, G, C) (cls excluded, before the final norm) for the blocks asked for
             with ``hidden_blocks``; empty otherwise. Used by segmentation heads (blocks 4, 8, 12).
    """

    tokens: Tensor
    centers: Tensor
    cls: Tensor | None = None
    hidden: list[Tensor] = field(default_factory=list)


class Encoder(nn.Module, abc.ABC):
    """The downstream encoder interface that heads and protocols rely on (``build_backbone`` returns one).

    ``out_dim``: token width C; ``depth``: number of transformer blocks (hidden_blocks index them);
    ``num_group`` / ``group_size``: patches per cloud and points per patch (a cloud needs at least that many).
    """

    out_dim: int
    depth: int

    @property
    @abc.abstractmethod
    def num_group(self) -> int: ...

    @property
    @abc.abstractmethod
    def group_size(self) -> int: ...

    @abc.abstractmethod
    def forward(self, xyz: Tensor, hidden_blocks: Sequence[int] = ()) -> EncoderOutput:
        """(B, N, 3) -> EncoderOutput; ``hidden_blocks``: 0-based block indices whose outputs to return."""

    @abc.abstractmethod
    def drop_cls_token(self) -> None:
        """Remove the cls token (segmentation heads have none, as the references)."""

    def norm_hidden(self, hidden: Tensor) -> Tensor:
        """The final normalisation applied to a hidden block output (identity unless the encoder has one)."""
        return hidden


@dataclass(frozen=True)
class Condition:
    """What conditional samples are conditioned on, one entry per sample.

    kind ``class``: ``labels`` (n,) int64, ShapeNet-55 synset indices (:data:`bench.data.shapenet55.SYNSETS`);
    ``partial``: ``points`` (n, P, 3), a cropped input in the method's frame whose shape the samples complete;
    ``image``: ``images`` (n, V, C, H, W); ``text``: ``texts``, one caption per sample.
    """

    kind: str
    labels: Tensor | None = None
    points: Tensor | None = None
    images: Tensor | None = None
    texts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        needed = {"class": self.labels, "partial": self.points, "image": self.images, "text": self.texts}
        if self.kind not in needed:
            raise BenchError(f"condition kind {self.kind!r} is not one of {', '.join(CONDITION_KINDS)}")
        if needed[self.kind] is None:
            field_name = {"class": "labels", "partial": "points", "image": "images", "text": "texts"}[self.kind]
            raise BenchError(f"a {self.kind!r} condition needs its {field_name}")

    def __len__(self) -> int:
        value = {"class": self.labels, "partial": self.points, "image": self.images, "text": self.texts}[self.kind]
        return len(value)


@dataclass(frozen=True)
class ShapeFields:
    """``n`` generated implicit shapes in the method's frame.

    ``query(points)``: (n, Q, 3) -> (n, Q) float, evaluated without gradients; the caller chunks Q (bounded memory).
    ``kind`` ``occupancy``: logits, inside iff >= ``level`` (0: p = 0.5, 3DShape2VecSet); ``udf``: an unsigned
    distance, whose surface is the level set at ``level`` > 0 (no inside: occupancy metrics do not apply).
    """

    kind: str
    query: Any
    n: int
    level: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise BenchError(f"ShapeFields.kind must be one of {', '.join(FIELD_KINDS)}, got {self.kind!r}")


@dataclass
class MethodConfig:
    """Fields every method config has; a method subclasses this with its own hyper-parameters.

    ckpt: a pre-training checkpoint to import instead of pre-training (ours or the authors' official release).
    ``sampling_fields``: the fields only ``generate`` reads; changing them re-scores, it never re-trains.
    """

    name: str = ""
    ckpt: str | None = None
    #: fields that only ``generate`` reads (sampler settings): left out of the pre-training hashes
    sampling_fields: ClassVar[tuple[str, ...]] = ()


class Method(nn.Module):
    """Base class of every self-supervised or generative method. Subclasses set the class variables and implement
    the hooks they need.

    Conventions:
    - No ``.cuda()`` / device logic inside a method: the Trainer moves the module and the batch.
    - ``pretrain_step`` returns a dict whose ``"loss"`` is the scalar to back-propagate; every other entry is a
      detached scalar to log. ``self.stage`` names the pre-training stage being run.
    - ``state_dict()`` keeps the authors' key names, so ``{checkpoint_prefix}.`` selects the encoder.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""  # how reports write the method (Point-MAE); "" = ``name``
    capabilities: ClassVar[frozenset[str]] = frozenset({REPRESENTATION})
    #: condition kinds ``generate`` accepts (``class``, ``image``, ``text``) with conditional_generation
    condition_kinds: ClassVar[frozenset[str]] = frozenset()
    checkpoint_prefix: ClassVar[str | None] = None
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: registered dataset that pre-training reads (e.g. "shapenet55"); None: the method does not pre-train
    pretrain_dataset: ClassVar[str | None] = "shapenet55"
    #: the pre-training stage whose pretext trains the generator (None: the implicit stage); the generation protocol
    #: continues it, with that stage's ``train`` / ``freeze``, on the suite's training split
    generation_stage: ClassVar[str | None] = None

    def __init__(self, cfg: MethodConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stage = "pretrain"

    # --- pre-training -------------------------------------------------------------------------------------
    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One pretext forward pass; returns {"loss": scalar tensor, other scalars...}."""
        raise BenchError(f'method "{self.name}" has no pretext task to pre-train (its pretrain_dataset is None).')

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Calling the module runs the pretext (so DDP's forward hooks see it)."""
        return self.pretrain_step(batch)

    @classmethod
    def example_side_inputs(cls, cfg: MethodConfig, batch_size: int) -> dict[str, Tensor]:
        """Random stand-ins for the side-data arrays (``"<side data>.<key>"``) its stages read, with their
        shapes: what a contract test or a dry run adds to a batch of clouds. Default: none."""
        return {}

    def on_stage_start(self, stage: StageConfig) -> None:
        """Called before a pre-training stage trains (after the stage's ``train`` / ``freeze`` are applied)."""
        self.stage = stage.name

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Hook for schedules that live inside the method (mask-ratio ramps, EMA momentum). Default: nothing."""

    def on_step(self, step: int, epoch: int) -> dict[str, float]:
        """Called after every optimizer step (``step`` counts from 0 over the stage); returns scalars to log
        with the epoch's means (codebook usage, perplexity). Default: nothing."""
        return {}

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW parameter groups; a group may carry ``lr_scale`` (its lr = the schedule's lr x lr_scale).
        Default: the reference builder's two groups (:func:`default_param_groups`)."""
        return default_param_groups(self, weight_decay)

    # --- downstream ---------------------------------------------------------------------------------------
    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> Encoder:
        """The encoder that downstream protocols train."""
        raise BenchError(f'method "{cls.name}" has no downstream encoder: it is not a representation method.')

    # --- generation ---------------------------------------------------------------------------------------
    def generate(self, n: int, points: int, condition: Condition | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Sample ``n`` clouds of ``points`` points, (n, points, 3), in the frame the method was trained in; all
        randomness from ``generator``. ``condition``: one of :attr:`condition_kinds` (None: unconditional)."""
        raise BenchError(f'method "{self.name}" cannot generate: it lacks the generation capability.')

    def generate_fields(self, n: int, condition: Condition | None = None,
                        generator: torch.Generator | None = None) -> ShapeFields:
        """Sample ``n`` implicit shapes (capability ``shape_fields``); randomness from ``generator`` as in
        :meth:`generate`."""
        raise BenchError(f'method "{self.name}" cannot generate implicit shapes: it lacks the shape_fields capability.')

    def sampler_settings(self) -> dict[str, Any]:
        """Every setting ``generate`` samples with (steps, schedule, temperature, top-k / top-p, guidance), stored
        in each generation record (sampler settings change the numbers as much as weights do)."""
        return {}

    @classmethod
    def pretrains(cls) -> bool:
        return cls.pretrain_dataset is not None


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed weights, and (no decay) 1-D params, biases and ``*token*`` parameters."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim <= 1 or name.endswith(".bias") or "token" in name
        (no_decay if skip else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


@dataclass(frozen=True)
class Requirements:
    """What a protocol needs from a method: capabilities, and the condition kinds ``generate`` must accept."""

    capabilities: frozenset[str] = frozenset({REPRESENTATION})
    conditions: frozenset[str] = frozenset()


def incompatibility(method_cls: type[Method], requirements: Requirements, suite: str) -> str | None:
    """Why ``method_cls`` cannot run ``suite`` (one sentence), or None when it can."""
    lacking = sorted(requirements.capabilities - method_cls.capabilities)
    if lacking:
        noun = "capabilities" if len(lacking) > 1 else "capability"
        return f"{method_cls.name} cannot run suite={suite}: it lacks the {' and '.join(lacking)} {noun}"
    conditions = sorted(requirements.conditions - method_cls.condition_kinds)
    if conditions:
        return (f"{method_cls.name} cannot run suite={suite}: it does not accept the {', '.join(conditions)} "
                f"condition(s) (it accepts {', '.join(sorted(method_cls.condition_kinds)) or 'none'})")
    return None


@dataclass
class JobContext:
    """Everything a protocol needs to run one job (one method x variant x seed); built by the runner.

    cfg: the resolved, variant-specific config (read-only; ``cfg.suite`` is the protocol's ``suite_class``).
    data_root: the folder holding the suite's data set in its official layout (real data or the stand-in).
    encoder_ckpt: the pre-training checkpoint to start from (None: random init); :meth:`pretrained_method` loads
    the whole method from it. workdir: where checkpoints go (resume). on_epoch_end: receives each epoch's metrics
    (tracking, tuning). progress: display.
    """

    cfg: Any
    method_cls: type[Method]
    variant: str
    seed: int
    data_root: Any
    workdir: Any
    encoder_ckpt: Any = None
    on_epoch_end: Any = None
    progress: Any = None

    def pretrained_method(self) -> Method:
        """The whole pre-trained method (all its weights, strict), for protocols that sample or probe it."""
        from omegaconf import OmegaConf

        from bench.checkpoints import load_method_checkpoint

        method = self.method_cls(OmegaConf.to_object(self.cfg.method))
        if self.encoder_ckpt is not None:
            load_method_checkpoint(method, self.encoder_ckpt)
        return method


class Protocol(abc.ABC):
    """A kind of downstream evaluation (finetune, partseg, semseg, svm, generation): one class each, registered in
    ``PROTOCOLS`` under ``name``; suites name it in ``suite.protocol``."""

    name: ClassVar[str] = ""
    requires: ClassVar[Requirements] = Requirements()
    #: the typed ``suite`` section of suites using this protocol (its own settings are its extra fields)
    suite_class: ClassVar[type[SuiteConfig]] = SuiteConfig

    @classmethod
    def requirements(cls, suite: Any) -> Requirements:
        """What a method must offer to run this suite (default: :attr:`requires`; a protocol whose conditions are
        suite settings computes them here)."""
        return cls.requires

    @classmethod
    def check(cls, suite: Any) -> None:
        """Validate the resolved ``suite`` section before any work starts (ConfigError naming the key)."""
        return None

    @classmethod
    def method_incompatibility(cls, suite: Any, method_cls: type[Method]) -> str | None:
        """Why ``method_cls`` cannot run this suite beyond its capabilities (a suite setting that names keys of
        one method's config, as the scaling study's sizes), or None; the planner asks before any work."""
        return None

    @abc.abstractmethod
    def run(self, ctx: JobContext) -> JobResult:
        """Run one job; the runner turns the result into a RunRecord."""

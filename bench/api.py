"""The contracts between the harness and what plugs into it: methods, encoders, protocols.

A *method* (``methods/<name>.py``, registered under the file stem) owns a pretext task and an encoder
architecture. The harness never looks inside it; it only calls what is declared here:

- ``pretrain_step(batch)`` for pre-training (the one Trainer calls it; no method has its own loop);
- ``build_backbone(cfg, ...)`` for the encoder that downstream protocols fine-tune, probe or freeze;
- ``checkpoint_prefix``: where the encoder lives in the method's (and the authors' official) state dict, so that
  pre-training checkpoints, ours and theirs, load through one path;
- ``generate(...)`` for generative methods.

Shapes: a batch is a dict with canonical keys ``xyz (B,N,3) float32``, ``label (B,) int64`` and, where a data set
has them, ``normal (B,N,3)``, ``seg (B,N)``, ``category (B,)``, ``occupancy``/``query`` (generation), ``view``
(images), ``text``; method-specific extras (e.g. teacher embeddings) are declared by the method's pretraining
data spec.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.errors import BenchError

#: capability names a method may declare
REPRESENTATION = "representation"
GENERATION = "generation"
CONDITIONAL_GENERATION = "conditional_generation"
CAPABILITIES = frozenset({REPRESENTATION, GENERATION, CONDITIONAL_GENERATION})


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


@dataclass
class MethodConfig:
    """Fields every method config has; a method subclasses this with its own hyper-parameters.

    ckpt: a pre-training checkpoint to import instead of pre-training (ours or the authors' official release).
    """

    name: str = ""
    ckpt: str | None = None


class Method(nn.Module):
    """Base class of every self-supervised method. Subclasses set the class variables and implement the hooks.

    Conventions:
    - No ``.cuda()`` / device logic inside a method: the Trainer moves the module and the batch.
    - ``pretrain_step`` returns a dict whose ``"loss"`` is the scalar to back-propagate; every other entry is a
      detached scalar to log.
    - ``state_dict()`` keeps the authors' key names, so ``{checkpoint_prefix}.`` selects the encoder.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset({REPRESENTATION})
    checkpoint_prefix: ClassVar[str | None] = None
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    #: registered dataset that pre-training reads (e.g. "shapenet55"); None: the method does not pre-train
    pretrain_dataset: ClassVar[str | None] = "shapenet55"

    def __init__(self, cfg: MethodConfig) -> None:
        super().__init__()
        self.cfg = cfg

    # --- pre-training -------------------------------------------------------------------------------------
    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One pretext forward pass; returns {"loss": scalar tensor, other scalars...}."""
        raise BenchError(f'method "{self.name}" has no pretext task to pre-train (its pretrain_dataset is None).')

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Calling the module runs the pretext (so DDP's forward hooks see it)."""
        return self.pretrain_step(batch)

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        """Hook for schedules that live inside the method (mask-ratio ramps, EMA momentum). Default: nothing."""

    # --- downstream ---------------------------------------------------------------------------------------
    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> nn.Module:
        """The encoder that downstream protocols train: returns a module whose forward(xyz) -> EncoderOutput."""
        raise BenchError(f'method "{cls.name}" has no downstream encoder: it is not a representation method.')

    # --- generation ---------------------------------------------------------------------------------------
    def generate(self, n: int, condition: Any = None, generator: torch.Generator | None = None) -> Tensor:
        """Sample ``n`` clouds, (n, N, 3). Only for methods with the generation capability."""
        raise BenchError(f'method "{self.name}" cannot generate: it lacks the generation capability.')

    @classmethod
    def pretrains(cls) -> bool:
        return cls.pretrain_dataset is not None


@dataclass
class JobContext:
    """Everything a protocol needs to run one job (one method x variant x seed); built by the runner.

    cfg: the resolved, variant-specific config (read-only). data_root: the folder holding the suite's data set in
    its official layout (real data or the synthetic stand-in). encoder_ckpt: pre-training weights to start from
    (None: random init), loaded under ``method_cls.checkpoint_prefix``. workdir: where checkpoints go (resume).
    on_epoch_end: receives each epoch's metrics (tracking). progress: display.
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


@dataclass
class JobResult:
    """What a protocol hands back; the runner turns it into a RunRecord."""

    metric: str
    higher_is_better: bool
    epochs: list[dict[str, float]]
    final: dict[str, float]
    selection: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


class Protocol(abc.ABC):
    """A kind of downstream evaluation (finetune, fewshot, partseg, semseg, svm, generation): one class each,
    registered in ``PROTOCOLS`` under ``name``; suites name it in ``suite.protocol``."""

    name: ClassVar[str] = ""

    @abc.abstractmethod
    def run(self, ctx: JobContext) -> JobResult:
        """Run one job; the runner turns the result into a RunRecord."""

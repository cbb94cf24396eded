"""Scratch: the Point-MAE ViT-S encoder trained from random initialisation (no pretext, no checkpoint).

The baseline every table needs: the same backbone as :mod:`methods.point_mae` (with cls token), fine-tuned
directly with Point-MAE's published fine-tuning recipe. ``init`` (the leaderboard notes which one ran):
``torch_default`` (default) = the reference's from-scratch path: ``tools/runner_finetune.py`` without ``--ckpts``
never calls ``load_model_from_ckpt`` (L75-79), so no ``_init_weights`` runs and every layer keeps PyTorch's
default, the cls tokens trunc_normal(.02) (Point_MAE.py L473-474); ``trunc_normal`` = Linear/Conv1d
trunc_normal(.02), zero bias, LayerNorm 1/0 everywhere (the reference ``_init_weights``; this harness's scratch
before issue 14).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.api import REPRESENTATION, Method, MethodConfig
from bench.errors import ConfigError
from bench.registry import METHODS
from methods.blocks.encoder import EncoderConfig, PointEncoder

#: encoder initialisations (``init``; names of methods.blocks.transformer.INIT_SCHEMES)
SCRATCH_INITS = ("torch_default", "trunc_normal")


@dataclass
class ScratchConfig(MethodConfig):
    """The encoder architecture and its ``init`` (module docstring); ``ckpt`` must stay unset (nothing to import)."""

    name: str = "scratch"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    init: str = "torch_default"

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = EncoderConfig.coerce(self.encoder)

    def validate(self) -> None:
        """Raise ConfigError on impossible settings."""
        self.encoder.validate()
        if self.init not in SCRATCH_INITS:
            raise ConfigError(f"method.init must be one of {', '.join(SCRATCH_INITS)}, got {self.init!r}")
        if self.ckpt is not None:
            raise ConfigError(
                f"method.ckpt={self.ckpt!r} is set for method scratch, which trains from random initialisation; "
                "unset it, or pick the method the checkpoint belongs to."
            )


@METHODS.register("scratch")
class Scratch(Method):
    """Random-init baseline: no pre-training, same backbone as Point-MAE."""

    name = "scratch"
    display_name = "Scratch"
    capabilities = frozenset({REPRESENTATION})
    checkpoint_prefix = None
    config_class = ScratchConfig
    pretrain_dataset = None

    def __init__(self, cfg: ScratchConfig) -> None:
        super().__init__(cfg)
        cfg.validate()

    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> PointEncoder:
        """ViT-S with cls token, initialised as ``cfg.init`` (module docstring)."""
        if isinstance(cfg, ScratchConfig):
            cfg.validate()
        encoder_cfg = EncoderConfig.coerce(getattr(cfg, "encoder", EncoderConfig()))
        init = getattr(cfg, "init", ScratchConfig.init)
        return PointEncoder(encoder_cfg, num_group, group_size, drop_path, cls_token=True, init=init)

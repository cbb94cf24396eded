"""Scratch: the Point-MAE ViT-S encoder trained from random initialisation (no pretext, no checkpoint).

The baseline every table needs: the same backbone as :mod:`methods.point_mae` (with cls token, reference init),
fine-tuned directly with Point-MAE's published fine-tuning recipe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.api import REPRESENTATION, Method, MethodConfig
from bench.errors import ConfigError
from bench.registry import METHODS
from methods.blocks.encoder import EncoderConfig, PointEncoder


@dataclass
class ScratchConfig(MethodConfig):
    """Only the encoder architecture; ``ckpt`` must stay unset (there is nothing to import)."""

    name: str = "scratch"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        if isinstance(self.encoder, Mapping):
            self.encoder = EncoderConfig.coerce(self.encoder)

    def validate(self) -> None:
        """Raise ConfigError on impossible settings."""
        self.encoder.validate()
        if self.ckpt is not None:
            raise ConfigError(
                f"method.ckpt={self.ckpt!r} is set for method scratch, which trains from random initialisation; "
                "unset it, or pick the method the checkpoint belongs to."
            )


@METHODS.register("scratch")
class Scratch(Method):
    """Random-init baseline: no pre-training, same backbone as Point-MAE."""

    name = "scratch"
    capabilities = frozenset({REPRESENTATION})
    checkpoint_prefix = None
    config_class = ScratchConfig
    pretrain_dataset = None

    def __init__(self, cfg: ScratchConfig) -> None:
        super().__init__(cfg)
        cfg.validate()

    @classmethod
    def build_backbone(cls, cfg: MethodConfig, *, num_group: int, group_size: int, drop_path: float) -> PointEncoder:
        """ViT-S with cls token, reference init."""
        if isinstance(cfg, ScratchConfig):
            cfg.validate()
        encoder_cfg = EncoderConfig.coerce(getattr(cfg, "encoder", EncoderConfig()))
        return PointEncoder(encoder_cfg, num_group, group_size, drop_path, cls_token=True)

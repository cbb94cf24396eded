"""Classification head and classifier of the Point-MAE family's fine-tuning model (``PointTransformer``).

Head layout (official ``cls_head_finetune`` indices): 0 Linear(in, 256), 1 BN, 2 ReLU, 3 Dropout(0.5),
4 Linear(256, 256), 5 BN, 6 ReLU, 7 Dropout(0.5), 8 Linear(256, classes).

Options (:class:`ClassificationHeadConfig`, the finetune protocol's ``suite.head``; each method's yaml sets them):
- ``pooling`` (the 2C-wide feature the head classifies; tokens are the encoder's normed outputs):
  ``cls_max`` = concat(cls-token output, max over patch tokens) (Point-MAE ``models/Point_MAE.py`` L546, Point-PQAE
  ``models/transformer.py`` L358); for backbones without a cls token concat(mean, max) over the patch tokens
  (Point-M2AE's choice). ``mean_max`` = concat(mean, max) over ALL tokens, the cls token included (Point-MaDi
  ``models/Point_MaDi.py`` L922; without a cls token, over the patch tokens).
- ``init``: ``torch_default`` = PyTorch's default init of every head layer, as in all three references when a
  checkpoint is loaded (``load_model_from_ckpt`` re-initialises only without one, Point_MAE.py L514-516) or when
  training from scratch (the runner then never calls it, ``tools/runner_finetune.py`` L75-79);
  ``trunc_normal`` = Linear trunc_normal(.02), zero bias (what this harness did before issue 14).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bench.api import Encoder, EncoderOutput
from bench.checkpoints import unwrap_state_dict
from bench.errors import CheckpointError, ConfigError
from methods.blocks.seg_head import known_fields
from methods.blocks.transformer import apply_init

OFFICIAL_HEAD_PREFIX = "cls_head_finetune."
#: pooled features (module docstring)
POOLINGS = ("cls_max", "mean_max")
#: initialisations of the head's layers (names of :data:`methods.blocks.transformer.INIT_SCHEMES`)
HEAD_INITS = ("torch_default", "trunc_normal")


@dataclass
class ClassificationHeadConfig:
    """How the classifier pools the encoder's tokens and initialises its head (module docstring)."""

    pooling: str = "cls_max"
    init: str = "torch_default"

    @classmethod
    def of(cls, options: Mapping[str, Any], where: str = "suite.head") -> ClassificationHeadConfig:
        """The validated config of a plain mapping of its fields (ConfigError naming ``where`` when wrong)."""
        head = cls(**known_fields(cls, options, where))
        head.validate(where)
        return head

    def validate(self, where: str = "suite.head") -> None:
        """Raise ConfigError naming ``<where>.<key>`` for an unknown pooling or init."""
        if self.pooling not in POOLINGS:
            raise ConfigError(f"{where}.pooling={self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if self.init not in HEAD_INITS:
            raise ConfigError(f"{where}.init={self.init!r} is not one of {', '.join(HEAD_INITS)}")


def pool_tokens(out: EncoderOutput, pooling: str) -> Tensor:
    """(B, 2C) feature of an encoder output: ``cls_max`` or ``mean_max`` (module docstring)."""
    if pooling == "cls_max":
        first = out.cls if out.cls is not None else out.tokens.mean(dim=1)
        return torch.cat([first, out.tokens.max(dim=1).values], dim=-1)
    if pooling == "mean_max":
        tokens = out.tokens if out.cls is None else torch.cat([out.cls.unsqueeze(1), out.tokens], dim=1)
        return torch.cat([tokens.mean(dim=1), tokens.max(dim=1).values], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")


class ClassificationHead(nn.Sequential):
    """MLP head: (B, in_dim) -> (B, num_classes) logits; ``init`` one of :data:`HEAD_INITS`."""

    def __init__(
        self, in_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.5, init: str = "torch_default"
    ) -> None:
        if init not in HEAD_INITS:
            raise ValueError(f"ClassificationHead: init must be one of {', '.join(HEAD_INITS)}, got {init!r}")
        super().__init__(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        apply_init(self, init)


class PointClassifier(nn.Module):
    """Backbone (forward(xyz) -> EncoderOutput, attribute ``out_dim``) + ClassificationHead; ``head`` options
    default to :class:`ClassificationHeadConfig`'s (``cls_max``, ``torch_default``)."""

    def __init__(self, backbone: nn.Module, num_classes: int, head: ClassificationHeadConfig | None = None) -> None:
        super().__init__()
        if not isinstance(backbone, Encoder):
            raise TypeError(f"{type(backbone).__name__} is not a bench.api.Encoder; PointClassifier needs its width")
        options = head or ClassificationHeadConfig()
        options.validate()
        self.pooling = options.pooling
        self.backbone = backbone
        self.head = ClassificationHead(2 * backbone.out_dim, num_classes, init=options.init)

    def features(self, xyz: Tensor) -> Tensor:
        """(B, N, 3) -> (B, 2C) pooled feature the head classifies (``pooling``)."""
        return pool_tokens(self.backbone(xyz), self.pooling)

    def forward(self, xyz: Tensor) -> Tensor:
        return self.head(self.features(xyz))

    def load_official_finetune_state(self, state_dict: Mapping[str, Any]) -> None:
        """Load the authors' flat fine-tuned state dict (``cls_head_finetune.*`` -> head, the rest -> backbone;
        ``module.`` stripped; ``{'model': sd}`` / ``{'base_model': sd}`` accepted) with strict key matching."""
        flat = unwrap_state_dict(state_dict, "the fine-tuned state dict")
        mapped = {
            ("head." + k[len(OFFICIAL_HEAD_PREFIX) :]) if k.startswith(OFFICIAL_HEAD_PREFIX) else ("backbone." + k): v
            for k, v in flat.items()
        }
        own = self.state_dict()
        missing = sorted(set(own) - set(mapped))
        unexpected = sorted(set(mapped) - set(own))
        wrong = [
            f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in mapped.items()
            if k in own and v.shape != own[k].shape
        ]
        if missing or unexpected or wrong:
            raise CheckpointError(
                "the fine-tuned state dict does not match this classifier: "
                f"missing {missing[:8]}, unexpected {unexpected[:8]}, shape mismatches {wrong[:5]}."
            )
        self.load_state_dict(mapped, strict=True)

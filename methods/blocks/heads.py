"""Classification head and classifier of the Point-MAE fine-tuning model (``PointTransformer``).

Head layout (official ``cls_head_finetune`` indices): 0 Linear(in, 256), 1 BN, 2 ReLU, 3 Dropout(0.5),
4 Linear(256, 256), 5 BN, 6 ReLU, 7 Dropout(0.5), 8 Linear(256, classes); Linear layers trunc_normal(.02) init.
Feature: concat(cls-token output, max over patch tokens) = 2C. For backbones without a cls token the feature is
concat(mean, max) over patch tokens (Point-M2AE's choice), also 2C wide.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bench.api import Encoder
from bench.checkpoints import unwrap_state_dict
from bench.errors import CheckpointError
from methods.blocks.transformer import init_vit_weights

OFFICIAL_HEAD_PREFIX = "cls_head_finetune."


class ClassificationHead(nn.Sequential):
    """MLP head: (B, in_dim) -> (B, num_classes) logits."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.5) -> None:
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
        self.apply(init_vit_weights)


class PointClassifier(nn.Module):
    """Backbone (forward(xyz) -> EncoderOutput, attribute ``out_dim``) + ClassificationHead."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        if not isinstance(backbone, Encoder):
            raise TypeError(f"{type(backbone).__name__} is not a bench.api.Encoder; PointClassifier needs its width")
        self.backbone = backbone
        self.head = ClassificationHead(2 * backbone.out_dim, num_classes)

    def features(self, xyz: Tensor) -> Tensor:
        """(B, N, 3) -> (B, 2C) pooled feature the head classifies."""
        out = self.backbone(xyz)
        pooled = out.tokens.max(dim=1).values
        first = out.cls if out.cls is not None else out.tokens.mean(dim=1)
        return torch.cat([first, pooled], dim=-1)

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

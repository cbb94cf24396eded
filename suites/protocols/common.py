"""What every protocol does the same way with a job's encoder: build the method's backbone at the suite's grouping
and load the job's pre-training weights into it (reporting missing / unexpected keys for the RunRecord)."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf
from torch import nn

from bench.api import JobContext
from methods.blocks.checkpoint import load_encoder_checkpoint


def job_backbone(ctx: JobContext, drop_path: float | None = None) -> nn.Module:
    """The method's downstream encoder with the suite's ``num_group`` / ``group_size``; stochastic depth from
    ``trainer.drop_path`` unless ``drop_path`` is given (0 for frozen encoders)."""
    cfg = ctx.cfg
    return ctx.method_cls.build_backbone(
        OmegaConf.to_object(cfg.method), num_group=cfg.suite.num_group, group_size=cfg.suite.group_size,
        drop_path=cfg.trainer.drop_path if drop_path is None else drop_path,
    )


def load_pretrained(backbone: nn.Module, ctx: JobContext) -> dict[str, Any] | None:
    """Load ``ctx.encoder_ckpt`` under the method's checkpoint prefix; None (random init) when there is none.

    Returns the load report stored in the record: the checkpoint path and the missing / unexpected keys."""
    if ctx.encoder_ckpt is None:
        return None
    loaded = load_encoder_checkpoint(backbone, ctx.encoder_ckpt, prefix=ctx.method_cls.checkpoint_prefix)
    return {"path": str(ctx.encoder_ckpt), "missing": list(loaded.missing), "unexpected": list(loaded.unexpected)}

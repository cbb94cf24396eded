"""Encoder weights for a method: import a checkpoint, reuse a cached pre-training, or pre-train now.

A pre-training is identified by a hash of the method config, the ``pretrain`` section and the data kind; its
result is saved in the authors' layout (``{"base_model": state_dict, "epoch": ...}``, encoder under
``<checkpoint_prefix>.``), so our checkpoints and the official releases load through the same path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.config import pretrain_hash
from bench.data.base import TransformedDataset, build_dataset
from bench.data.transforms import build_transform
from bench.errors import CheckpointError
from bench.records import atomic_write_text
from bench.sources import DataSource, locate
from bench.trainer import Trainer, seed_everything
from methods.blocks.checkpoint import save_pretrain_checkpoint

CHECKPOINT_NAME = "pretrain.pth"


@dataclass
class EncoderSource:
    """Where a job's encoder weights come from. source: import | cache | pretrained | none."""

    source: str
    ckpt: str | None = None
    data_kind: str | None = None  # kind of the pre-training data (None when imported or none)
    hash: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encoder_source(cfg: DictConfig, method_cls, output_dir: Path, tracker, sweep_run: str | None,
                   progress, note) -> EncoderSource:
    """Resolve the encoder weights for ``cfg``'s method (pre-training it when needed)."""
    if cfg.method.ckpt:
        path = Path(cfg.method.ckpt).expanduser()
        if not path.is_file():
            raise CheckpointError(f"method.ckpt: checkpoint file not found: {path}")
        return EncoderSource("import", str(path.resolve()))
    if not method_cls.pretrains():
        return EncoderSource("none")
    pre = cfg.pretrain
    data = locate(pre.dataset, [pre.variant], cfg.data.root, cfg.data.source, cfg.data.standin_size)
    if data.note:
        note(data.note)
    key = pretrain_hash(cfg, data.kind)
    workdir = output_dir / "pretrain" / f"{method_cls.name}-{key}"
    final = workdir / CHECKPOINT_NAME
    if final.exists():
        info = json.loads((workdir / "pretrain.json").read_text()) if (workdir / "pretrain.json").exists() else {}
        return EncoderSource("cache", str(final), data.kind, key, info)
    details = run_pretraining(cfg, method_cls, data, workdir, tracker, sweep_run, progress, key)
    return EncoderSource("pretrained", str(final), data.kind, key, details)


def run_pretraining(cfg: DictConfig, method_cls, data: DataSource, workdir: Path, tracker, sweep_run, progress,
                    key: str) -> dict[str, Any]:
    """Pre-train with the one Trainer; write ``pretrain.pth`` (official layout) and ``pretrain.json``."""
    pre = cfg.pretrain
    base = build_dataset(pre.dataset, data.root, "train", pre.variant, whole=pre.whole)
    specs = OmegaConf.to_container(pre.transforms, resolve=True)
    dataset = TransformedDataset(base, build_transform(specs), seed=pre.seed)
    seed_everything(pre.seed)  # initial weights depend on the pre-training seed only, not on what ran before
    method = method_cls(OmegaConf.to_object(cfg.method))
    run_id = tracker.open_run(
        key=f"pretrain/{method_cls.name}/{key}", name=f"pretrain {method_cls.name}", parent=sweep_run,
        params={"method": OmegaConf.to_container(cfg.method), "pretrain": OmegaConf.to_container(pre, resolve=True)},
        tags={"bench.stage": "pretrain", "bench.data_kind": data.kind},
    )
    desc = f"pretrain {method_cls.name}"
    trainer = Trainer(pre.trainer, seed=pre.seed, workdir=workdir, progress=progress, desc=desc)

    def log(epoch: int, row: dict[str, float]) -> None:
        tracker.log_metrics(run_id, row, step=epoch)

    result = trainer.fit(method, dataset, lambda model, batch: model(batch), on_epoch_end=log)
    details = {
        "epochs": len(result.history),
        "final_loss": result.history[-1].get("train_loss") if result.history else None,
        "wall_time_s": result.wall_time_s,
        "dataset": pre.dataset,
        "n_shapes": len(base),
        "data_kind": data.kind,
    }
    save_pretrain_checkpoint(method, workdir / CHECKPOINT_NAME, epoch=len(result.history), extra=details)
    atomic_write_text(workdir / "pretrain.json", json.dumps(details, indent=2))
    tracker.log_artifact_text(run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    tracker.close_run(run_id)
    (workdir / "last.pt").unlink(missing_ok=True)
    return details

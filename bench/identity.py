"""Identities of runs: the hashes that name pre-training caches (``pretrain/<method>-<hash>``) and fine-tuning
configurations (records' ``config_hash``, the "already done" check).

Conventions: a hash is the first 10 hex digits of the sha256 of the sorted-key JSON of plain data. What is left out:
``method.ckpt`` and the method's ``sampling_fields`` (they change no weights), empty ``pretrain.stages`` /
``side_data`` (so runs from before stages existed keep their hash), and the keys of :data:`LATER_KEYS` while they
hold the value that reproduces what ran before they existed; the point-op settings of :func:`ops_identity` are in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig

from bench.config import to_plain
from bench.registry import METHODS


def config_hash(data: Any, length: int = 10) -> str:
    """Stable short hash of plain data (sorted-key JSON)."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


#: keys added after records and pre-training caches existed (issue 14's fidelity options), per section, with the
#: value that reproduces what ran before the key existed: left out of every hash while they hold it, so earlier
#: pre-trainings and records keep their identity, and a new default (the authors' behaviour) gets a new one
LATER_KEYS: dict[str, dict[str, Any]] = {
    "trainer": {"schedule_convention": "pointbench"},
    "method": {"decoder_init": "trunc_normal", "init": "trunc_normal"},
}


def _without_later(section: str, values: dict[str, Any]) -> dict[str, Any]:
    later = LATER_KEYS.get(section, {})
    return {k: v for k, v in values.items() if k not in later or later[k] != v}


def trainer_identity(trainer: dict[str, Any]) -> dict[str, Any]:
    """A ``trainer`` mapping as hashed: without the :data:`LATER_KEYS` that hold their earlier behaviour."""
    return _without_later("trainer", trainer)


def pretrain_identity(plain: dict[str, Any]) -> dict[str, Any]:
    """The ``pretrain`` section as hashed: ``stages`` and ``side_data`` are left out while empty, so every
    pre-training made before stages existed keeps its hash (and its cache folder); so are trainer keys at the
    value that reproduces what ran before they existed (:func:`trainer_identity`)."""
    out = {k: v for k, v in plain.items() if not (k in ("stages", "side_data") and not v)}
    if isinstance(out.get("trainer"), dict):
        out["trainer"] = trainer_identity(out["trainer"])
    return out


def finetune_hash(cfg: DictConfig) -> str:
    """Identity of a fine-tuning configuration, independent of seed, variant, paths and tracking."""
    plain = to_plain(cfg)
    keep = {k: plain[k] for k in ("method", "pretrain", "trainer", "suite", "recipe")}
    keep["pretrain"] = pretrain_identity(keep["pretrain"])
    keep["trainer"] = trainer_identity(keep["trainer"])
    keep["suite"] = {k: v for k, v in keep["suite"].items() if k != "variants"}
    keep["method"] = _without_later("method", {k: v for k, v in keep["method"].items() if k != "ckpt"})
    keep["ckpt"] = plain["method"].get("ckpt")
    return config_hash({**keep, **ops_identity()})


def trained_method(plain: dict[str, Any]) -> dict[str, Any]:
    """The ``method`` section as pre-training sees it: without ``ckpt`` and without the method config's
    ``sampling_fields`` (sampler settings change samples, not weights, so they never re-run a pre-training)."""
    skip = {"ckpt", *getattr(METHODS.get(plain["method"]["name"]).config_class, "sampling_fields", ())}
    return _without_later("method", {k: v for k, v in plain["method"].items() if k not in skip})


def ops_identity() -> dict[str, Any]:
    """Point-op settings that change what a run computes, as hashed: ``fps_skip_origin`` while it is on (the
    pointnet2 kernel's quirk, :func:`extensions.ops.fps_skip_origin`); off, the behaviour before it existed, adds
    nothing, so earlier caches and records keep their identity."""
    from extensions import ops

    return {"fps_skip_origin": True} if ops.fps_skip_origin() else {}


def pretrain_hash(cfg: DictConfig, data_kind: str) -> str:
    """Identity of an unstaged pre-training run: method architecture + pretext + recipe + data kind (+ the point-op
    settings of :func:`ops_identity`)."""
    plain = to_plain(cfg)
    method = trained_method(plain)
    return config_hash({"method": method, "pretrain": pretrain_identity(plain["pretrain"]), "data_kind": data_kind,
                        **ops_identity()})


def stage_hash(cfg: DictConfig, upto: int, data_kinds: list[str],
               side_digests: list[dict[str, str]] | None = None) -> str:  # fmt: skip
    """Identity of stage ``upto`` of ``pretrain.stages``: the method, the shared ``pretrain`` settings and every
    stage up to and including it (with their data kinds), so changing stage k re-runs stages k and later only.
    ``side_digests``: per stage, the sha256 of each side-data file it reads (new teachers re-run the stages that
    read them); stages without side data leave the hash as it was before side data existed."""
    plain = to_plain(cfg)
    method = trained_method(plain)
    shared = {k: (trainer_identity(v) if k == "trainer" else v) for k, v in plain["pretrain"].items()
              if k != "stages"}
    chain = plain["pretrain"]["stages"][: upto + 1]
    identity = {"method": method, "pretrain": shared, "stages": chain, "data_kinds": data_kinds[: upto + 1],
                **ops_identity()}
    digests = (side_digests or [])[: upto + 1]
    if any(digests):
        identity["side_data"] = digests
    return config_hash(identity)

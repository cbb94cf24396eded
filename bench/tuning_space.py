"""The search space of ``bench tune``: ``tune.space`` entries checked against the resolved config, sampled by Optuna.

Entry forms (keys nested or dotted, each a config key of the resolved config, e.g. ``trainer.lr``):

    trainer.lr: {low: 1.0e-4, high: 2.0e-3, log: true}   # float (int when low and high are ints, or type: int)
    trainer.epochs: {low: 10, high: 30, step: 5}
    trainer.drop_path: [0.0, 0.1, 0.2]                    # categorical (also {choices: [...]})

A bad entry (unknown key, wrong type, low > high, non-scalar choice) is a ConfigError naming ``tune.space.<key>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from bench.errors import ConfigError
from bench.registry import did_you_mean

SPEC_KEYS = {"low", "high", "log", "step", "type", "choices"}
_ABSENT = object()


@dataclass
class Param:
    """One search dimension: ``kind`` float | int | categorical."""

    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.path, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return value in self.choices
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        out = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        return out if self.step is None else {**out, "step": self.step}


def flatten_space(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"trainer.lr": spec, ...}: descend mappings until a list or a mapping with spec keys."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, list) or (isinstance(node, dict) and SPEC_KEYS & set(node)):
        return {prefix: node}
    if not isinstance(node, dict) or not node:
        raise ConfigError(f'tune.space.{prefix}: expected [choices] or {{low, high}}, got {node!r}.')
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten_space(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def parse_space(space: Any, cfg: DictConfig) -> list[Param]:
    """Every entry of ``tune.space`` as a Param, checked against the resolved config ``cfg``."""
    entries = flatten_space(space) if space else {}
    if not entries:
        raise ConfigError("tune.space is empty: set it in the method or suite yaml (tune: space: ...) or on the "
                          "command line, e.g. 'tune.space.trainer.lr={low: 1e-4, high: 1e-3, log: true}'.")
    return [_param(path, spec, _current(cfg, path)) for path, spec in sorted(entries.items())]


def _current(cfg: DictConfig, path: str) -> Any:
    value = OmegaConf.select(cfg, path, default=_ABSENT)
    if value is _ABSENT or path.startswith("tune."):
        parent, _, leaf = path.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        siblings = list(node.keys()) if isinstance(node, DictConfig) else []
        raise ConfigError(f'tune.space.{path}: "{path}" is not a config key that a trial can set.'
                          f"{did_you_mean(leaf, siblings)}")
    if isinstance(value, (DictConfig, list)) or OmegaConf.is_list(value):
        raise ConfigError(f"tune.space.{path}: {path} is a section or a list; tune its scalar keys instead.")
    return value


def _param(path: str, spec: Any, current: Any) -> Param:
    where = f"tune.space.{path}"
    if isinstance(spec, dict) and "choices" in spec:
        spec = spec["choices"]
    if isinstance(spec, list):
        if not spec or any(not isinstance(c, (str, int, float, bool)) and c is not None for c in spec):
            raise ConfigError(f"{where}: choices must be a non-empty list of scalars, got {spec!r}.")
        return Param(path, "categorical", choices=list(spec))
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f'{where}: unknown entry "{key}".{did_you_mean(key, SPEC_KEYS)} Allowed: low, high, log, '
                          "step, type, choices.")
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"{where}: low and high must both be numbers, got low={low!r}, high={high!r}.")
    if low > high:
        raise ConfigError(f"{where}: low={low} is above high={high}.")
    kind = spec.get("type") or ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise ConfigError(f'{where}: type must be "float" or "int", not "{kind}".')
    if kind == "float" and isinstance(current, int) and not isinstance(current, bool):
        raise ConfigError(f"{where}: {path} is an integer ({current}); give integer low/high or type: int.")
    if isinstance(current, (str, bool)):
        raise ConfigError(f"{where}: {path} holds {current!r}, not a number; use a list of choices.")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0, got {low}.")
    if log and spec.get("step") is not None:
        raise ConfigError(f"{where}: step and log cannot be combined (Optuna).")
    return Param(path, kind, low, high, log, spec.get("step"))


def as_overrides(params: dict[str, Any]) -> list[str]:
    """``key=value`` tokens (JSON values: quoted strings, null, true/false) for :func:`bench.config.resolve`."""
    return [f"{path}={json.dumps(value)}" for path, value in sorted(params.items())]


def as_nested(params: dict[str, Any]) -> dict[str, Any]:
    """{"trainer.lr": 1e-3} -> {"trainer": {"lr": 1e-3}} (the override file's layout)."""
    out: dict[str, Any] = {}
    for path, value in sorted(params.items()):
        *parents, leaf = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out

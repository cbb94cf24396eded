"""Tiny settings shared by the method tests (every model here builds and runs in well under a second)."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from bench.api import MethodConfig
from bench.registry import METHODS, PLUGIN_PACKAGES, discover, load_plugins
from methods.blocks.encoder import EncoderConfig

#: ../shared beside the checkout (reference state-dict layouts); tests that need it skip without it
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
TINY_ENCODER = EncoderConfig(trans_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, encoder_dims=32)
#: generic tiny overrides, applied to whichever of these fields a method config has
TINY_FIELDS = {"num_group": 16, "group_size": 8, "decoder_depth": 1, "decoder_num_heads": 2, "drop_path": 0.1,
               "generator_depth": 1, "generator_num_heads": 2}
TINY_POINTS = 128


def tiny_config(config_class: type[MethodConfig]) -> MethodConfig:
    """The method's default config shrunk to a tiny encoder / grouping / decoder."""
    cfg = config_class()
    names = {f.name for f in fields(cfg)}
    overrides = {k: v for k, v in TINY_FIELDS.items() if k in names}
    if "encoder" in names:
        overrides["encoder"] = replace(TINY_ENCODER)
    return replace(cfg, **overrides)


def registered_methods() -> list[str]:
    """Every registered method name (plugins loaded; falls back to the methods package while other plugin
    packages are not written yet)."""
    try:
        load_plugins()
    except ModuleNotFoundError as exc:
        if exc.name not in PLUGIN_PACKAGES:
            raise
        discover("methods")
    return METHODS.names()


NAMES = registered_methods()

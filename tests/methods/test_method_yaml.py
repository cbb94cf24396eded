"""methods/configs/<name>.yaml: four sections (and an optional `tune:` search space), `method:` mirrors the config
dataclass, and every suite x profile resolves through the harness's loader into a buildable method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from methods_support import NAMES
from omegaconf import OmegaConf

from bench.api import REPRESENTATION
from bench.config import resolve
from bench.registry import METHODS
from bench.schema import PROFILES

CONFIGS = Path(__file__).resolve().parents[2] / "methods" / "configs"
SECTIONS = {"method", "pretrain", "recipes", "profiles", "tune"}


def _load(name: str) -> dict[str, Any]:
    path = CONFIGS / f"{name}.yaml"
    assert path.is_file(), f"method {name} has no {path}"
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_sections_and_defaults(name: str) -> None:
    cls = METHODS.get(name)
    doc = _load(name)
    assert set(doc) <= SECTIONS and {"method", "recipes", "profiles"} <= set(doc)
    assert ("pretrain" in doc) == cls.pretrains()
    assert cls.config_class(**doc["method"]) == cls.config_class()  # the yaml states the dataclass defaults
    assert set(doc["profiles"]) <= set(PROFILES) and "demo" in doc["profiles"]
    if "pretrain" in doc:  # pre-training drop path is the method's own; trainer.drop_path is for fine-tuning only
        assert "drop_path" not in doc["pretrain"].get("trainer", {})


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", NAMES)
def test_resolves_for_every_recipe_suite(name: str, profile: str) -> None:
    cls = METHODS.get(name)
    for suite, recipe in _load(name)["recipes"].items():
        run = OmegaConf.to_object(resolve(suite, name, profile=profile))
        assert isinstance(run.method, cls.config_class)
        if profile == "paper":  # the published recipe arrives untouched (demo/quick profiles may change it)
            assert run.method == cls.config_class()
            trainer = recipe.get("trainer", {})  # a recipe may set only the head (suite.head)
            assert {k: getattr(run.trainer, k) for k in trainer} == trainer
        head = recipe.get("suite", {}).get("head", {})  # head options are the method's in every profile
        assert {k: getattr(run.suite.head, k) for k in head} == head


@pytest.mark.parametrize("name", NAMES)
def test_demo_profile_builds_a_tiny_model(name: str) -> None:
    cls = METHODS.get(name)
    suite = next(iter(_load(name)["recipes"]))
    run = OmegaConf.to_object(resolve(suite, name, profile="demo"))
    if REPRESENTATION in cls.capabilities:
        backbone = cls.build_backbone(run.method, num_group=16, group_size=8, drop_path=0.1)
        assert sum(p.numel() for p in backbone.parameters()) < 2_000_000
        assert backbone(torch.rand(2, 64, 3)).tokens.shape[:2] == (2, 16)
    else:  # a generation-only method: the whole model is the demo's size
        assert sum(p.numel() for p in cls(run.method).parameters()) < 2_000_000
    if cls.pretrains():
        batch = {"xyz": torch.rand(2, run.pretrain.npoints, 3), **cls.example_side_inputs(run.method, 2)}
        loss = cls(run.method).pretrain_step(batch)["loss"]
        assert torch.isfinite(loss)

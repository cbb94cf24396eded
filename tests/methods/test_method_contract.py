"""Every registered method honours bench.api.Method, in tiny settings."""

from __future__ import annotations

import pytest
import torch
from methods_support import NAMES, TINY_POINTS, tiny_config

from bench.api import (
    CAPABILITIES,
    CONDITIONAL_GENERATION,
    GENERATION,
    REPRESENTATION,
    Encoder,
    EncoderOutput,
    Method,
)
from bench.registry import METHODS


def test_methods_are_registered_under_their_file_stem() -> None:
    assert {"point_mae", "scratch"} <= set(NAMES)
    for name in NAMES:
        cls = METHODS.get(name)
        assert cls.name == name and METHODS.origin(name) == f"methods.{name}"


@pytest.mark.parametrize("name", NAMES)
def test_class_contract(name: str) -> None:
    cls = METHODS.get(name)
    assert issubclass(cls, Method)
    assert cls.capabilities and cls.capabilities <= CAPABILITIES
    cfg = tiny_config(cls.config_class)
    assert cfg.name == name
    if cls.pretrains():
        assert isinstance(cls.checkpoint_prefix, str) and cls.checkpoint_prefix


@pytest.mark.parametrize("name", NAMES)
def test_pretrain_step(name: str) -> None:
    cls = METHODS.get(name)
    if not cls.pretrains():
        pytest.skip(f"{name} has no pretext")
    cfg = tiny_config(cls.config_class)
    method = cls(cfg)
    batch = {"xyz": torch.rand(2, TINY_POINTS, 3), **cls.example_side_inputs(cfg, 2)}
    out = method(batch)  # the Trainer calls the module: forward -> pretrain_step
    loss = out["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    for key, value in out.items():
        assert value.dim() == 0, key
    if cls.checkpoint_prefix:
        assert any(k.startswith(cls.checkpoint_prefix + ".") for k in method.state_dict())


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_backbone_output(name: str, batch: int) -> None:
    cls = METHODS.get(name)
    if REPRESENTATION not in cls.capabilities:
        pytest.skip(f"{name} is not a representation method: it has no downstream encoder")
    backbone = cls.build_backbone(tiny_config(cls.config_class), num_group=16, group_size=8, drop_path=0.1)
    out = backbone(torch.rand(batch, TINY_POINTS, 3))
    assert isinstance(out, EncoderOutput)
    width = out.tokens.shape[-1]
    assert out.tokens.shape == (batch, 16, width) and out.centers.shape == (batch, 16, 3)
    assert out.cls is None or out.cls.shape == (batch, width)
    assert out.hidden == []
    assert isinstance(backbone, Encoder) and backbone.out_dim == width and backbone.num_group == 16
    out.tokens.sum().backward()


@pytest.mark.parametrize("name", NAMES)
def test_every_method_can_run_some_suite(name: str) -> None:
    from bench.plan import runnable_suites

    assert runnable_suites()[name], f"{name}: no suite's protocol accepts its capabilities"


@pytest.mark.parametrize("name", NAMES)
def test_generate_is_declared_with_the_generation_capability(name: str) -> None:
    cls = METHODS.get(name)
    overrides = cls.generate is not Method.generate
    assert overrides == (GENERATION in cls.capabilities or CONDITIONAL_GENERATION in cls.capabilities), name
    assert bool(cls.condition_kinds) == (CONDITIONAL_GENERATION in cls.capabilities), name

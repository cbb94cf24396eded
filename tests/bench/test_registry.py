"""Registries: strict registration, helpful lookups, discovery; every plugin module registers what it should."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import methods
from bench.errors import BenchError, UnknownNameError
from bench.registry import METHODS, PROTOCOLS, Registry, load_plugins


def test_duplicate_names_from_two_modules_fail():
    registry = Registry("thing")

    class A:
        __module__ = "one"

    class B:
        __module__ = "two"

    registry.add("a", A)
    with pytest.raises(BenchError, match="registered twice"):
        registry.add("a", B)


def test_unknown_name_suggests_the_closest():
    registry = Registry("thing")
    registry.add("point_mae", object)
    with pytest.raises(UnknownNameError, match='Did you mean "point_mae"'):
        registry.get("point_ma")


def test_every_method_module_registers_exactly_one_method_under_its_stem():
    load_plugins()
    modules = [m.name for m in pkgutil.iter_modules(methods.__path__) if not m.ispkg and not m.name.startswith("_")]
    assert modules, "no method modules found"
    for module in modules:
        registered = [n for n in METHODS.names() if METHODS.origin(n) == f"methods.{module}"]
        assert registered == [module], f"methods/{module}.py registers {registered}"
    assert sorted(modules) == METHODS.names()
    importlib.import_module("methods.point_mae")


def test_every_suite_names_a_registered_protocol():
    from bench.config import SUITES_DIR, read_yaml, suite_names

    load_plugins()
    for suite in suite_names():
        assert read_yaml(SUITES_DIR / f"{suite}.yaml")["suite"]["protocol"] in PROTOCOLS

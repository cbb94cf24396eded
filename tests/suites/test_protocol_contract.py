"""Every registered protocol honours bench.api.Protocol, and every suite resolves against its protocol's typed
settings and passes its check, for every variant and profile."""

from __future__ import annotations

import dataclasses

import pytest

from bench.api import CAPABILITIES, Protocol
from bench.config import resolve, suite_names, variant_config
from bench.errors import ConfigError
from bench.registry import PROTOCOLS, load_plugins
from bench.schema import PROFILES, SuiteConfig

load_plugins()


@pytest.mark.parametrize("name", PROTOCOLS.names())
def test_protocol_declares_what_it_needs_and_its_settings(name):
    cls = PROTOCOLS.get(name)
    assert issubclass(cls, Protocol) and cls.name == name
    assert cls.requires.capabilities and cls.requires.capabilities <= CAPABILITIES
    assert issubclass(cls.suite_class, SuiteConfig) and dataclasses.is_dataclass(cls.suite_class)
    cls.suite_class()  # every setting has a default


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("suite", suite_names())
def test_every_suite_resolves_against_its_protocol_and_passes_its_check(suite, profile):
    cfg = resolve(suite, "point_mae", profile=profile)
    protocol = PROTOCOLS.get(cfg.suite.protocol)
    for variant in cfg.suite.variants:
        protocol.check(variant_config(cfg, variant).suite)


@pytest.mark.parametrize("suite", suite_names())
def test_a_setting_of_no_protocol_is_an_unknown_key(suite):
    with pytest.raises(ConfigError, match="suite.not_a_setting"):
        resolve(suite, "scratch", profile="demo", overrides=["suite.not_a_setting=1"])

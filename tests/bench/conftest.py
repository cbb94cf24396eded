"""Fixtures of the core tests: the toy plug-ins of :mod:`tests.bench.kinds_support` (test_kinds, test_dry_run)."""

from __future__ import annotations

import pytest

from tests.bench.kinds_support import registered, write_side


@pytest.fixture()
def toys(tmp_path, monkeypatch, tiny_data_root):
    """The toy plug-ins registered and the config's suites folder pointed at a temp one (their suite yamls go
    there); the tiny data root gets the toys' side data."""
    from bench import config

    folder = tmp_path / "suites"
    folder.mkdir()
    write_side(tiny_data_root)
    with registered(folder):
        monkeypatch.setattr(config, "SUITES_DIR", folder)
        yield folder

"""Fidelity options: the config keys that say how closely a run followed the authors' code (issue 14), shown per
leaderboard row in the provenance (HTML, per row; Markdown, one line per row; the long table's ``options`` column).

:data:`FIDELITY_OPTIONS` is the one list of them: dotted keys of a record's resolved config (``record.config``,
flattened as MLflow params are: ``trainer.reference_double_step``) or of its environment under ``env.``
(``record.env``: ``env.fps_skip_origin``), or :func:`fnmatch.fnmatchcase` patterns over those keys
(``*fps_skip_origin*``), in display order. A key that a record lacks is skipped, so a pattern may name an option
that only some protocols (or only newer records) have. Values are shown as the record stores them (``True``,
``10``, ``mean_max``); seeds of one row whose values differ are joined with " | ".

To show a new option: append its dotted key (or a pattern matching it) to :data:`FIDELITY_OPTIONS`. Nothing else
reads the list's entries, and no method or suite name appears here.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from bench.records import RunRecord
from bench.tracking import flatten

#: config keys (or fnmatch patterns over dotted keys) of the options that decide fidelity to the authors' code
FIDELITY_OPTIONS: tuple[str, ...] = (
    # classification / segmentation heads: pooling and initialisation
    "*head*pool*",
    "*head*init*",
    # initialisation of the pre-training decoder and of the from-scratch baseline
    "*decoder*init*",
    "method.init",
    # the reference segmentation scripts' second optimizer step per batch (the pre-training trainer never takes one)
    "trainer.reference_double_step",
    # epoch count and learning-rate schedule conventions
    "trainer.*schedule*",
    "trainer.*epoch_convention*",
    "trainer.reference_*",
    # test-time voting
    "suite.vote.enabled",
    "suite.vote.times",
    "suite.vote.repeats",
    # S3DIS test blocks: drawn once or redrawn every epoch
    "suite.*test_block*",
    "suite.*block_sampling*",
    # the SVM probe's feature standardisation (the references fit raw features)
    "suite.standardize",
    # the pointnet2 furthest-point-sampling kernel's skip of points near the origin
    "*fps_skip_origin*",
)


def record_keys(record: Any) -> dict[str, str]:
    """{dotted key: value as text} of a record's resolved config and, under ``env.``, of its environment."""
    config, env = getattr(record, "config", None), getattr(record, "env", None)
    flat = flatten(config) if isinstance(config, dict) else {}
    if isinstance(env, dict):
        flat.update(flatten({"env": env}) if env else {})
    return flat


def record_options(record: Any, options: tuple[str, ...] = FIDELITY_OPTIONS) -> dict[str, str]:
    """{dotted key: value as text} of the ``options`` the record holds (:func:`record_keys`), in ``options`` order
    (the keys one pattern matches sorted; a key matched twice is listed once, where it first matched)."""
    flat = record_keys(record)
    found: dict[str, str] = {}
    for pattern in options:
        for key in sorted(k for k in flat if fnmatch.fnmatchcase(k, pattern)):
            found.setdefault(key, flat[key])
    return found


def row_options(records: list[RunRecord], options: tuple[str, ...] = FIDELITY_OPTIONS) -> dict[str, str]:
    """The options of a leaderboard row's records: per key, its distinct values over seeds joined with " | "."""
    values: dict[str, list[str]] = {}
    for record in records:
        for key, value in record_options(record, options).items():
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
    return {key: " | ".join(found) for key, found in values.items()}


def options_line(options: dict[str, str] | str | None) -> str:
    """``key=value, key=value`` for a row's options (a dict, or the long table's JSON ``options`` text); "" when
    there are none."""
    if isinstance(options, str):
        options = json.loads(options) if options else {}
    return ", ".join(f"{key}={value}" for key, value in (options or {}).items())

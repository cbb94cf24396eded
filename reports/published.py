"""Published reference numbers (``reports/published.yaml``), read once and looked up by method, suite and variant.

The YAML is transcribed from reference/protocols.md section 5. Each entry says which statistic the paper reported:

- ``max``: the maximum over epochs of the test metric (and over seeds / pre-training checkpoints), no voting;
- ``vote``: the ModelNet40 voting protocol, the best of ``vote_repeats`` ten-vote passes;
- ``fold_mean``: the mean (and std) over the 10 few-shot folds of each fold's best test accuracy;
- ``unstated``: the source does not say whether the number is voted; it is compared like ``max`` and flagged;
- ``single``: one run of one trained model (generation: one sampling run, as PointFlow / PVD / LION report),
  compared with our ``paper`` statistic (the first sampling run).

A suite whose ``suites.<name>`` section sets ``reference_rows: true`` (generation) also shows the published numbers
of methods that have no run record of ours (LION, PVD, PointFlow) as rows of their own, in real-data tables only
(:func:`reference_methods`). ``vote`` says who votes on the suite: ``reference`` (the default: the authors' code
votes, ModelNet40) or ``ours`` (the authors' code does not, ScanObjectNN: a vote statistic of ours is an extra,
labelled so, with ``vote_note`` saying why; :func:`vote_practice`).

Suite and variant names are normalised through the ``suites`` section (canonical names plus aliases), so a record
written as ``modelnet40_fewshot`` / ``5way10shot`` finds the ``fewshot`` / ``5w10s`` entries.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import DataError

PUBLISHED_PATH = Path(__file__).with_name("published.yaml")
STATISTICS = ("max", "vote", "fold_mean", "unstated", "single")
#: statistics that the non-vote ("paper"-side) comparison uses; at most one per metric and variant
PRIMARY_STATISTICS = ("max", "fold_mean", "unstated", "single")
#: who votes on a suite (``suites.<name>.vote``): the authors' code, or only we (an extra statistic of ours)
VOTE_REFERENCE, VOTE_OURS = "reference", "ours"
VOTE_PRACTICES = (VOTE_REFERENCE, VOTE_OURS)


@dataclass(frozen=True)
class PublishedEntry:
    """One published number and how it was obtained (value and std in percent)."""

    method: str
    suite: str
    variant: str
    metric: str
    statistic: str
    value: float
    protocol: str
    source: str
    std: float | None = None
    unverified: bool = False
    note: str = ""
    vote_repeats: int | None = None


@dataclass(frozen=True)
class VotePractice:
    """Who votes on a suite: ``reference`` (the authors' code votes) or ``ours`` (only the harness does), and why."""

    origin: str = VOTE_REFERENCE
    note: str = ""

    @property
    def ours(self) -> bool:
        return self.origin == VOTE_OURS


@dataclass(frozen=True)
class Published:
    """The parsed YAML: entries by (method, suite, variant), suite metadata, display names and caveats."""

    entries: dict[tuple[str, str, str], tuple[PublishedEntry, ...]]
    suite_aliases: dict[str, str]
    variant_aliases: dict[str, dict[str, str]]
    variant_order: dict[str, tuple[str, ...]]
    display: dict[str, str]  # methods without a class of ours (LION, Point-BERT): reports/names.py
    caveats: tuple[str, ...]
    reference_rows: frozenset[str] = frozenset()  # canonical suites that show published-only methods as rows
    votes: dict[str, VotePractice] = field(default_factory=dict)  # canonical suite -> who votes on it


def _parse_entry(method: str, suite: str, variant: str, raw: dict[str, Any], path: Path) -> PublishedEntry:
    where = f"{path}: methods.{method}.results.{suite}.{variant}"
    try:
        entry = PublishedEntry(
            method=method,
            suite=suite,
            variant=str(variant),
            metric=str(raw["metric"]),
            statistic=str(raw["statistic"]),
            value=float(raw["value"]),
            protocol=str(raw["protocol"]),
            source=str(raw["source"]),
            std=None if raw.get("std") is None else float(raw["std"]),
            unverified=bool(raw.get("unverified", False)),
            note=str(raw.get("note", "")),
            vote_repeats=None if raw.get("vote_repeats") is None else int(raw["vote_repeats"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{where}: malformed published entry {raw!r} ({err!r})") from err
    if entry.statistic not in STATISTICS:
        raise DataError(f"{where}: statistic {entry.statistic!r} is not one of {', '.join(STATISTICS)}")
    return entry


def _check_unique(key: tuple[str, str, str], entries: list[PublishedEntry], path: Path) -> None:
    """At most one entry per (metric, statistic), and at most one primary statistic per metric."""
    seen = [(e.metric, e.statistic) for e in entries]
    primaries = [e.metric for e in entries if e.statistic in PRIMARY_STATISTICS]
    if len(set(seen)) != len(seen) or len(set(primaries)) != len(primaries):
        raise DataError(f"{path}: {'/'.join(key)} has ambiguous entries {seen}")


def _parse_votes(raw: dict[str, Any], path: Path) -> dict[str, VotePractice]:
    """``suites.<name>.vote`` / ``vote_note`` per canonical suite; an unknown practice is a DataError."""
    votes = {}
    for suite, meta in raw.items():
        origin = str(meta.get("vote", VOTE_REFERENCE))
        if origin not in VOTE_PRACTICES:
            raise DataError(f"{path}: suites.{suite}.vote is {origin!r}; it must be one of {', '.join(VOTE_PRACTICES)}")
        votes[suite] = VotePractice(origin, " ".join(str(meta.get("vote_note", "")).split()))
    return votes


def _parse_suites(raw: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, tuple]]:
    suite_aliases: dict[str, str] = {}
    variant_aliases: dict[str, dict[str, str]] = {}
    variant_order: dict[str, tuple[str, ...]] = {}
    for suite, meta in raw.items():
        suite_aliases[suite.lower()] = suite
        for alias in meta.get("suite_aliases", []):
            suite_aliases[str(alias).lower()] = suite
        variants = tuple(str(v) for v in meta.get("variants", []))
        variant_order[suite] = variants
        aliases = {v.lower(): v for v in variants}
        aliases.update({str(a).lower(): str(v) for a, v in meta.get("aliases", {}).items()})
        variant_aliases[suite] = aliases
    return suite_aliases, variant_aliases, variant_order


@functools.lru_cache(maxsize=4)
def load_published(path: Path = PUBLISHED_PATH) -> Published:
    """Parse and validate ``path`` (cached: the default file is read once per process)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"cannot read published numbers {path}: {err}") from err
    suite_aliases, variant_aliases, variant_order = _parse_suites(raw.get("suites", {}))
    entries: dict[tuple[str, str, str], tuple[PublishedEntry, ...]] = {}
    display: dict[str, str] = {}
    for method, meta in raw.get("methods", {}).items():
        display[method] = str(meta.get("display", method))
        for suite, variants in meta.get("results", {}).items():
            if suite not in variant_order:
                raise DataError(f"{path}: methods.{method} names suite {suite!r}, not listed under `suites`")
            for variant, items in variants.items():
                key = (method, suite, str(variant))
                parsed = [_parse_entry(method, suite, str(variant), item, path) for item in items]
                _check_unique(key, parsed, path)
                entries[key] = tuple(parsed)
    caveats = tuple(str(c) for c in raw.get("caveats", []))
    rows = frozenset(s for s, meta in raw.get("suites", {}).items() if meta.get("reference_rows"))
    votes = _parse_votes(raw.get("suites", {}), path)
    return Published(entries, suite_aliases, variant_aliases, variant_order, display, caveats, rows, votes)


def canonical_suite(suite: str) -> str:
    """The canonical suite name for ``suite`` (unknown names are returned unchanged)."""
    return load_published().suite_aliases.get(suite.lower(), suite)


def canonical_variant(suite: str, variant: str) -> str:
    """The canonical variant name of ``variant`` in ``suite`` (unknown names are returned unchanged)."""
    aliases = load_published().variant_aliases.get(canonical_suite(suite), {})
    return aliases.get(variant.lower(), variant)


def variant_rank(suite: str, variant: str) -> tuple[int, str]:
    """Sort key: the suite's published variant order first, then unknown variants alphabetically."""
    order = load_published().variant_order.get(canonical_suite(suite), ())
    name = canonical_variant(suite, variant)
    return (order.index(name), name) if name in order else (len(order), name)


def published_for(method: str, suite: str, variant: str) -> list[PublishedEntry]:
    """Every published entry for ``method`` on ``suite`` / ``variant`` (aliases accepted); ``[]`` when none."""
    suite_name = canonical_suite(suite)
    key = (method, suite_name, canonical_variant(suite_name, variant))
    return list(load_published().entries.get(key, ()))


def vote_practice(suite: str) -> VotePractice:
    """Who votes on ``suite`` (aliases accepted): the authors' code (the default, also for unlisted suites) or ours."""
    return load_published().votes.get(canonical_suite(suite), VotePractice())


def reference_methods(suite: str, skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Methods with published numbers on ``suite`` shown as rows of their own (the suite sets ``reference_rows``),
    in the YAML's order, leaving out ``skip`` (the methods that have rows of ours); [] for other suites."""
    published = load_published()
    name = canonical_suite(suite)
    if name not in published.reference_rows:
        return []
    found = (method for method, suite_name, _ in published.entries if suite_name == name)
    return [m for m in dict.fromkeys(found) if m not in skip]

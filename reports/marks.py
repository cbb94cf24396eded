"""Marks after a method's name for provenance flags of its pre-training side data, and their notes.

A flag is set when any record of the row has it true in its side-data provenance (the long table's
``pretrain_flags`` column, :data:`reports.leaderboard.PRETRAIN_FLAGS`); the mark follows the method's name in every
table (``MMPD †``) and the mark's note goes under the table.
"""

from __future__ import annotations

import json

import pandas as pd

#: mark and note of each pre-training provenance flag (:data:`reports.leaderboard.PRETRAIN_FLAGS`), in mark order
PRETRAIN_MARKS = {
    "uses_category_names": ("†", "pre-training used category names (captions): label information in a nominally "
                                 "self-supervised protocol"),
    "test_teachers": ("‡", "random test teachers (not the real ones)"),
}


def pretrain_flags(rows: pd.DataFrame) -> list[str]:
    """The :data:`PRETRAIN_MARKS` flags any of ``rows`` carries (``pretrain_flags``; none without the column)."""
    stated = rows.get("pretrain_flags", pd.Series(dtype=str)).dropna()
    found = {flag for text in stated if text for flag in json.loads(text)}
    return [flag for flag in PRETRAIN_MARKS if flag in found]


def method_marks(rows: pd.DataFrame) -> str:
    """' †‡' for a method's rows whose pre-training carried those flags; '' when none."""
    marks = "".join(PRETRAIN_MARKS[flag][0] for flag in pretrain_flags(rows))
    return f" {marks}" if marks else ""


def mark_notes(rows: pd.DataFrame) -> list[str]:
    """One note per mark used in the table: '† pre-training used category names ...'."""
    return [f"{PRETRAIN_MARKS[flag][0]} {PRETRAIN_MARKS[flag][1]}." for flag in pretrain_flags(rows)]

"""The 'vs Scratch' lines: each pre-trained cell's honest gap to the random-init row (reports/baseline.py)."""

from __future__ import annotations

import math

import pandas as pd

from reports.baseline import baselines, gain_line, gain_note


def _row(method: str, mean: float, std: float, random_init: bool, variant: str = "objbg", **extra) -> dict:
    return {"method": method, "recipe": "method", "variant": variant, "metric": "acc", "direction": "max",
            "scale": 1.0, "honest_mean": mean, "honest_std": std, "random_init": random_init, **extra}


def _frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_a_gain_beyond_both_stds_is_better_and_beyond():
    rows = _frame(_row("scratch", 31.11, 3.94, True), _row("mmpd", 39.44, 5.91, False))
    bases, notes = baselines(rows)
    assert notes == []
    line = gain_line(rows.iloc[1], bases[("method", "objbg", "acc")])
    assert line == "vs Scratch +8.33 (better, beyond the seeds' std)"  # 39.44 - 31.11, 8.33 > max(3.94, 5.91)


def test_a_gain_inside_the_larger_std_is_within():
    rows = _frame(_row("scratch", 21.67, 3.00, True), _row("mmpd", 29.44, 7.88, False))
    bases, _ = baselines(rows)
    line = gain_line(rows.iloc[1], bases[("method", "objbg", "acc")])
    assert line == "vs Scratch +7.77 (better, within the seeds' std)"  # 7.77 < 7.88


def test_a_loss_is_worse_and_the_baseline_has_no_line():
    rows = _frame(_row("scratch", 86.94, 2.68, True), _row("point_mae", 69.44, 2.93, False))
    bases, _ = baselines(rows)
    base = bases[("method", "objbg", "acc")]
    assert gain_line(rows.iloc[1], base) == "vs Scratch -17.50 (worse, beyond the seeds' std)"
    assert gain_line(rows.iloc[0], base) is None


def test_a_lower_is_better_metric_flips_the_verdict_and_scale_applies():
    # MMD-CD, displayed x10^3: 0.002 vs 0.003 -> 2.00 vs 3.00, a gap of -1.00 that is better
    rows = _frame(_row("scratch", 0.003, 0.0001, True, direction="min", scale=1000.0),
                  _row("gen", 0.002, 0.0002, False, direction="min", scale=1000.0))
    bases, _ = baselines(rows)
    line = gain_line(rows.iloc[1], bases[("method", "objbg", "acc")])
    assert line == "vs Scratch -1.00 (better, beyond the seeds' std)"


def test_one_seed_says_there_is_no_std():
    rows = _frame(_row("scratch", 50.0, math.nan, True), _row("mmpd", 55.0, math.nan, False))
    bases, _ = baselines(rows)
    line = gain_line(rows.iloc[1], bases[("method", "objbg", "acc")])
    assert line == "vs Scratch +5.00 (better, one seed: no std to compare with)"


def test_each_variant_has_its_own_baseline_and_none_without_a_random_init_row():
    rows = _frame(_row("scratch", 40.0, 1.0, True, "objbg"), _row("scratch", 90.0, 1.0, True, "objonly"),
                  _row("mmpd", 45.0, 1.0, False, "objbg"), _row("mmpd", 88.0, 1.0, False, "hardest"))
    bases, _ = baselines(rows)
    assert set(bases) == {("method", "objbg", "acc"), ("method", "objonly", "acc")}
    assert bases.get(("method", "hardest", "acc")) is None
    assert gain_line(rows.iloc[3], None) is None


def test_two_random_init_rows_leave_the_cell_without_a_baseline_and_say_why():
    rows = _frame(_row("scratch", 40.0, 1.0, True), _row("scratch_b", 42.0, 1.0, True), _row("mmpd", 45.0, 1.0, False))
    bases, notes = baselines(rows)
    assert bases == {}
    assert len(notes) == 1 and "objbg / acc" in notes[0] and "more than one row" in notes[0]


def test_the_note_appears_only_when_a_cell_has_a_vs_line():
    alone = _frame(_row("scratch", 40.0, 1.0, True))
    assert gain_note(alone, baselines(alone)[0]) == []  # a baseline but nothing to compare with it
    no_base = _frame(_row("mmpd", 45.0, 1.0, False))
    assert gain_note(no_base, baselines(no_base)[0]) == []
    both = _frame(_row("scratch", 40.0, 1.0, True), _row("mmpd", 45.0, 1.0, False))
    assert "honest mean" in gain_note(both, baselines(both)[0])[0]

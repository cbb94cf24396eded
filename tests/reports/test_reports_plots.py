"""reports/plots.py: the series behind the tuning-history plot and its rendering."""

from __future__ import annotations

from reports.plots import history_series, tuning_history

TRIALS = [
    {"number": 0, "state": "COMPLETE", "value": 50.0, "params": {}},
    {"number": 1, "state": "PRUNED", "value": 70.0, "params": {}},  # a partial curve, higher than any final
    {"number": 2, "state": "COMPLETE", "value": 40.0, "params": {}},
    {"number": 3, "state": "FAIL", "value": None, "params": {}},
    {"number": 4, "state": "COMPLETE", "value": 60.0, "params": {}},
]


def test_best_so_far_ignores_pruned_and_failed_trials():
    done, pruned, best = history_series(TRIALS, "maximize")
    assert done == [(0, 50.0), (2, 40.0), (4, 60.0)] and pruned == [(1, 70.0)]
    assert best == [50.0, 50.0, 60.0]
    assert history_series(TRIALS, "minimize")[2] == [50.0, 40.0, 40.0]


def test_history_plot_draws_pruned_trials_apart():
    svg = tuning_history(TRIALS, "maximize", 50.0, "study")
    assert svg is not None and "pruned (last reported epoch)" in svg and "completed trial" in svg
    assert tuning_history([{"number": 0, "state": "FAIL", "value": None, "params": {}}], "maximize", None,
                          "s") is None

"""summarize(): the paper / honest / vote statistics and the published comparison, against hand-computed values."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from bench.errors import DataError
from reports.leaderboard import COLUMNS, summarize


def only_row(df, **where):
    mask = pd.Series(True, index=df.index)
    for name, value in where.items():
        mask = mask & (df[name] == value)
    rows = df[mask]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_paper_and_honest_match_hand_computed_values(three_seeds):
    row = only_row(summarize(three_seeds))
    assert row["n_seeds"] == 3
    assert json.loads(row["seeds"]) == [0, 1, 2]
    assert row["paper"] == 90.0 and row["paper_seed"] == 2
    assert row["honest_mean"] == pytest.approx(82.0)
    assert row["honest_std"] == pytest.approx(2.0)  # ddof=1; ddof=0 would give 1.633
    assert row["best_mean"] == pytest.approx(87.0)
    assert row["best_std"] == pytest.approx(math.sqrt(7.0))
    assert json.loads(row["last_values"]) == [80.0, 82.0, 84.0]
    assert json.loads(row["best_values"]) == [85.0, 86.0, 90.0]


def test_one_seed_has_no_std(make_record):
    row = only_row(summarize([make_record(seed=3, last=81.5, best=83.0)]))
    assert row["honest_mean"] == 81.5
    assert math.isnan(row["honest_std"]) and math.isnan(row["best_std"])


def test_paper_ties_pick_smallest_seed_and_lower_is_better_uses_min(make_record):
    tied = [make_record(seed=s, best=88.0) for s in (5, 2, 9)]
    assert only_row(summarize(tied))["paper_seed"] == 2
    loss = [make_record(seed=s, last=v, best=v, metric="cd", higher_is_better=False) for s, v in [(0, 3.0), (1, 2.0)]]
    row = only_row(summarize(loss))
    assert (row["paper"], row["paper_seed"]) == (2.0, 1)


@pytest.mark.parametrize("field,other", [("suite_version", 2), ("profile", "quick"), ("recipe", "shared"),
                                         ("data_kind", "synthetic")])
def test_rows_never_merge_across_key_fields(make_record, field, other):
    records = [make_record(seed=0), make_record(seed=1, **{field: other})]
    df = summarize(records)
    assert len(df) == 2
    assert sorted(df["n_seeds"]) == [1, 1]


def test_vote_statistics(make_record):
    records = [
        make_record("point_mae", "modelnet40", "1k", seed=0, last=92.0, best=93.0,
                    extra_final={"vote": 93.1, "vote_best_of_r": 93.9, "vote_repeats": 10}),
        make_record("point_mae", "modelnet40", "1k", seed=1, last=92.5, best=93.4,
                    extra_final={"vote": 93.5, "vote_best_of_r": 93.7, "vote_repeats": 20}),
    ]
    row = only_row(summarize(records))
    assert row["vote_n"] == 2
    assert row["vote_mean"] == pytest.approx(93.3)
    assert row["vote_std"] == pytest.approx(math.sqrt(0.08))
    assert row["vote_max"] == pytest.approx(93.5)
    assert row["vote_best_of_r"] == pytest.approx(93.9) and row["vote_repeats"] == 10
    assert row["published_vote"] == pytest.approx(93.80)
    assert row["vote_diff"] == pytest.approx(0.1) and row["vote_diff_basis"] == "vote_best_of_r"
    assert row["published"] == pytest.approx(93.2) and row["published_unverified"] == True  # noqa: E712


def test_no_vote_leaves_vote_columns_blank(three_seeds):
    row = only_row(summarize(three_seeds))
    assert row["vote_n"] == 0
    assert all(math.isnan(row[c]) for c in ("vote_mean", "vote_std", "vote_max", "vote_best_of_r", "vote_repeats"))


def test_published_and_difference_only_for_real_data(three_seeds, make_record):
    synthetic = [make_record(seed=s, data_kind="synthetic") for s in range(2)]
    df = summarize(three_seeds + synthetic)
    real = only_row(df, data_kind="real")
    assert real["published"] == pytest.approx(90.02)
    assert real["diff"] == pytest.approx(-0.02) and real["diff_basis"] == "paper"
    assert real["published_statistic"] == "max" and "no voting" in real["published_protocol"]
    fake = only_row(df, data_kind="synthetic")
    assert math.isnan(fake["published"]) and math.isnan(fake["diff"])
    assert pd.isna(fake["published_protocol"]) and pd.isna(fake["published_unverified"])


def test_fewshot_compares_fold_mean_of_best_through_aliases(make_record):
    folds = [make_record(suite="modelnet40_fewshot", variant="5way10shot", seed=f, best=95.0 + f) for f in range(3)]
    row = only_row(summarize(folds))
    assert row["published"] == pytest.approx(96.3) and row["published_std"] == pytest.approx(2.5)
    assert row["diff_basis"] == "best_mean" and row["diff"] == pytest.approx(96.0 - 96.3)


def test_published_matches_the_record_metric(make_record):
    inst = [make_record("point_mae", "shapenetpart", "default", metric="inst_miou", best=86.0)]
    cls = [make_record("point_mae", "shapenetpart", "default", metric="cls_miou", best=84.0, profile="other")]
    df = summarize(inst + cls)
    assert only_row(df, metric="inst_miou")["published"] == pytest.approx(86.1)
    row = only_row(df, metric="cls_miou")
    assert row["published"] == pytest.approx(84.2) and row["published_unverified"] == True  # noqa: E712


def test_unknown_method_has_no_published_number(make_record):
    row = only_row(summarize([make_record("scratch")]))
    assert math.isnan(row["published"])


def test_duplicate_seed_keeps_latest_record(make_record):
    old = make_record(seed=0, last=70.0, created="2025-01-01T00:00:00", sweep_id="a")
    new = make_record(seed=0, last=75.0, created="2025-02-01T00:00:00", sweep_id="b")
    row = only_row(summarize([new, old]))
    assert row["n_seeds"] == 1 and row["honest_mean"] == 75.0 and row["dropped_duplicates"] == 1


def test_env_lists_every_commit_and_backend(make_record):
    records = [make_record(seed=0), make_record(seed=1, env={"git_commit": "def5678", "ops_backend": "cuda"})]
    row = only_row(summarize(records))
    assert json.loads(row["git_commits"]) == ["abc1234", "def5678"]
    assert json.loads(row["ops_backends"]) == ["cuda", "torch"]


@pytest.mark.parametrize("bad", [
    {"data_kind": "simulated"},
    {"final": {"best": 85.0}},
    {"final": {"last": float("nan"), "best": 85.0}},
])
def test_invalid_records_are_rejected(make_record, bad):
    with pytest.raises(DataError):
        summarize([make_record(**bad)])


def test_seeds_disagreeing_on_metric_are_rejected(make_record):
    with pytest.raises(DataError, match="disagree"):
        summarize([make_record(seed=0), make_record(seed=1, metric="macc")])


def test_rows_are_sorted_and_columns_fixed(make_record):
    records = [make_record("point_mae", variant=v) for v in ("hardest", "objonly", "objbg")]
    records.append(make_record("scratch", variant="objbg"))
    df = summarize(records)
    assert list(df.columns) == list(COLUMNS)
    assert list(zip(df["method"], df["variant"], strict=True)) == [
        ("scratch", "objbg"), ("point_mae", "objbg"), ("point_mae", "objonly"), ("point_mae", "hardest")]
    assert summarize([]).empty and list(summarize([]).columns) == list(COLUMNS)


def test_different_configs_of_one_method_never_pool_seeds(make_record):
    from reports.leaderboard import summarize

    records = [make_record(seed=0, last=80, best=81, config_hash="aaa"),
               make_record(seed=1, last=60, best=61, config_hash="bbb")]
    df = summarize(records)
    assert sorted(df["config_hash"]) == ["aaa", "bbb"]
    assert list(df["n_seeds"]) == [1, 1]


def test_rows_trained_from_random_init_note_their_method_init(make_record):
    """Issue 14 item 9: the note comes from the record's resolved ``method.init``; old records name none."""
    scratch = make_record("scratch", pretrain={"source": "none"},
                          config={"seed": 0, "method": {"name": "scratch", "init": "torch_default"}})
    old = make_record("scratch", config_hash="old", pretrain={"source": "none"},
                      config={"seed": 0, "method": {"name": "scratch"}})
    loaded = make_record("point_mae", pretrain={"source": "import"},
                         config={"seed": 0, "method": {"name": "point_mae", "init": "torch_default"}})
    df = summarize([scratch, old, loaded])
    (note,) = json.loads(only_row(df, method="scratch", config_hash="cfg0001abc")["table_notes"])
    assert note.startswith("scratch: trained from random initialisation, method.init=torch_default (")
    assert "runner without --ckpts" in note
    assert json.loads(only_row(df, method="scratch", config_hash="old")["table_notes"]) == []
    assert json.loads(only_row(df, method="point_mae")["table_notes"]) == []

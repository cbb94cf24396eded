"""Label columns that hold one value in every row (recipe, suite version, config, commit) move to the table's notes."""

from __future__ import annotations

from reports.leaderboard import summarize
from reports.render import render_markdown
from reports.tables import LABEL_COLUMNS, build_tables


def test_columns_with_one_value_become_a_note(make_record):
    records = [make_record(method=m, seed=s) for m in ("point_mae", "scratch") for s in (0, 1)]
    (table,) = build_tables(summarize(records))
    assert table.header == ["method", "objbg"]
    assert [row.label for row in table.rows] == [["Scratch"], ["Point-MAE"]]
    assert "Every row: recipe method; suite version v1; config cfg0001abc." in table.notes
    assert "git commits: abc1234; ops backends: torch." in table.notes  # the commit was stated already
    markdown = render_markdown(summarize(records))
    assert "| method | objbg |" in markdown and "| recipe |" not in markdown


def test_columns_that_differ_stay(make_record):
    env = {"git_commit": "def5678aaaaaa", "ops_backend": "torch", "device": "cpu"}
    records = [make_record(seed=0), make_record(method="scratch", seed=0, config_hash="cfg0002xyz", env=env,
                                                suite_version=2)]
    (table,) = build_tables(summarize(records))
    assert table.header == ["method", "suite version", "config", "git commit", "objbg"]
    assert [row.label for row in table.rows] == [["Point-MAE", "v1", "cfg0001abc", "abc1234"],  # suite version first
                                                 ["Scratch", "v2", "cfg0002xyz", "def5678aaa"]]
    assert "Every row: recipe method." in table.notes


def test_reference_rows_do_not_keep_a_column_alive(make_record):
    """A generation table of one configuration with published-only rows (LION, PVD): dashes do not count."""
    records = [make_record(method="point_mge", suite="generation", variant="airplane", seed=0, metric="nna_cd")]
    (table,) = build_tables(summarize(records))
    published = [row for row in table.rows if row.reference]
    assert published and all(len(row.label) == 1 for row in table.rows)
    assert published[0].label == ["LION (published)"] and len(table.header) == 1 + len(table.columns)
    assert len(LABEL_COLUMNS) == 4

"""write_leaderboard / render_markdown: table separation, published numbers, escaping, well-formed offline HTML."""

from __future__ import annotations

import csv

import pandas as pd
import pytest
from html_support import BalancedHTML

from bench.errors import OutputError
from reports.leaderboard import summarize
from reports.render import render_html, render_markdown, write_leaderboard
from reports.tables import SYNTHETIC_LABEL


class PageParser(BalancedHTML):
    """Checks tag balance and collects, per <table>, its <h2> heading, text and the data-kind of each body row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.heading: str | None = None
        self._in_h2 = False
        self._in_tbody = False

    def opened(self, tag, attrs):
        if tag == "h2":
            self._in_h2, self.heading = True, ""
        elif tag == "table":
            self.tables.append({"heading": self.heading, "kind": attrs.get("data-kind"), "rows": [], "text": "",
                                "cls": attrs.get("class")})
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.tables[-1]["rows"].append(attrs.get("data-kind"))

    def closed(self, tag):
        self._in_h2 = self._in_h2 and tag != "h2"
        self._in_tbody = self._in_tbody and tag != "tbody"

    def handle_data(self, data):
        if self._in_h2:
            self.heading += data
        if self.tables and "table" in self.stack:
            self.tables[-1]["text"] += data


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture
def mixed(make_record, three_seeds):
    """Real ScanObjectNN (3 seeds + a one-seed variant), synthetic ScanObjectNN, real ModelNet40 with votes."""
    vote = {"vote": 93.1, "vote_best_of_r": 93.9, "vote_repeats": 10}
    return [
        *three_seeds,
        make_record(variant="hardest", seed=0, last=81.0, best=83.0),
        *(make_record(seed=s, data_kind="synthetic", last=60.0 + s, best=65.0 + s) for s in range(2)),
        *(make_record(suite="modelnet40", variant="1k",
                      seed=s, best=93.0, last=92.0, extra_final=vote) for s in (0, 1)),
    ]


def test_writes_four_files_and_a_fragment_per_table_atomically(mixed, tmp_path):
    (tmp_path / "leaderboard.md").write_text("stale", encoding="utf-8")
    paths = write_leaderboard(mixed, tmp_path)
    fragments = {"modelnet40-real-paper", "scanobjectnn-real-paper", "scanobjectnn-synthetic-paper"}
    assert set(paths) == {"md", "csv", "html", "tex", *(f"tex:{name}" for name in fragments)}
    assert all(p.parent == tmp_path and p.stat().st_size > 0 for p in paths.values())
    assert paths["md"].read_text(encoding="utf-8").startswith("# pointbench leaderboard")
    names = ["leaderboard.csv", "leaderboard.html", "leaderboard.md", "leaderboard.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, *(f"{name}.tex" for name in fragments)])


def test_unwritable_output_is_a_clear_error(mixed, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(OutputError):
        write_leaderboard(mixed, blocker / "sub")


def test_synthetic_and_real_never_share_a_table(mixed, tmp_path):
    page = parse(write_leaderboard(mixed, tmp_path)["html"].read_text(encoding="utf-8"))
    kinds = sorted((t["heading"].split(" — ")[0], t["kind"]) for t in page.tables if t["cls"] == "leaderboard")
    assert kinds == [("modelnet40", "real"), ("scanobjectnn", "real"), ("scanobjectnn", "synthetic")]
    for table in (t for t in page.tables if t["cls"] == "leaderboard"):
        assert table["rows"] and set(table["rows"]) == {table["kind"]}
        assert (SYNTHETIC_LABEL in table["heading"]) == (table["kind"] == "synthetic")


def test_published_numbers_only_beside_real_rows(mixed):
    page = parse(render_html(summarize(mixed)))
    real = next(t for t in page.tables if t["kind"] == "real" and t["heading"].startswith("scanobjectnn"))
    fake = next(t for t in page.tables if t["kind"] == "synthetic")
    assert "published 90.02 (Δ -0.02 vs paper)" in real["text"]
    assert "published 85.18" in real["text"]
    assert "published 9" not in fake["text"] and "Δ" not in fake["text"] and "90.02" not in fake["text"]


def test_cells_show_honest_paper_and_vote(mixed):
    text = render_markdown(summarize(mixed))
    assert "honest 82.00 ± 2.00 (n=3) · paper 90.00 (seed 2)" in text
    assert "vote 93.10 ± 0.00 (n=2) · vote best-of-R 93.90 (R=10)" in text
    assert "published vote 93.8 (Δ +0.10)" in text


def test_one_seed_std_is_blank_not_zero(mixed, tmp_path):
    paths = write_leaderboard(mixed, tmp_path)
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    hardest = next(r for r in rows if r["variant"] == "hardest")
    assert hardest["honest_std"] == "" and hardest["n_seeds"] == "1"
    md = paths["md"].read_text(encoding="utf-8")
    assert "honest 81.00 (n=1, no std)" in md and "81.00 ± 0.00" not in md


def test_csv_round_trips_with_pandas(mixed, tmp_path):
    df = summarize(mixed)
    back = pd.read_csv(write_leaderboard(mixed, tmp_path)["csv"])
    assert list(back.columns) == list(df.columns)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert render_markdown(back) == render_markdown(df)


def test_markdown_has_one_table_per_suite_kind_and_profile(mixed, make_record):
    records = [*mixed, make_record(seed=0, profile="quick")]
    text = render_markdown(summarize(records))
    headings = [line for line in text.splitlines() if line.startswith("## ") and "Caveats" not in line]
    separators = [line for line in text.splitlines() if line.startswith("| --- |")]
    assert len(headings) == len(separators) == 4
    assert sum(SYNTHETIC_LABEL in h for h in headings) == 1
    assert sum("profile quick" in h for h in headings) == 1


def test_every_table_states_definitions_and_seeds(mixed):
    text = render_markdown(summarize(mixed))
    for needle in ("paper = max over seeds of each seed's 'best': max over epochs on test.",
                   "honest = mean ± sample std (ddof=1) over seeds of each seed's 'last': last epoch;",
                   "Seeds per cell:"):
        assert text.count(needle) == 3, needle


def test_html_is_well_formed_and_offline(mixed):
    page = parse(render_html(summarize(mixed)))
    assert page.errors == [] and page.stack == []
    assert {"html", "head", "style", "body", "table"} <= page.tags
    assert not page.tags & {"script", "link", "img", "iframe", "object"}
    assert all("://" not in url and not url.startswith("//") for url in page.urls)


def test_strings_are_escaped(make_record):
    evil = [make_record(method="<script>alert(1)</script>", variant="a|b", seed=0)]
    df = summarize(evil)
    page = render_html(df)
    assert "&lt;script&gt;" in page and "<script>" not in page
    parsed = parse(page)
    assert parsed.errors == [] and "script" not in parsed.tags
    assert "a\\|b" in render_markdown(df)


def test_empty_input_renders_a_message(tmp_path):
    paths = write_leaderboard([], tmp_path)
    assert "No run records" in paths["md"].read_text(encoding="utf-8")
    page = parse(paths["html"].read_text(encoding="utf-8"))
    assert page.errors == [] and page.tables == []


def test_renderer_never_shows_published_for_synthetic_rows(three_seeds):
    df = summarize(three_seeds)
    assert df["published"].notna().all()
    df["data_kind"] = "synthetic"  # a mislabelled frame: the renderer must still keep published numbers out
    text = render_markdown(df)
    assert SYNTHETIC_LABEL in text and "published 90" not in text and "Δ" not in text and "90.02" not in text


def test_vote_note_states_the_configured_number_of_votes(make_record):
    from reports.leaderboard import summarize
    from reports.render import render_markdown

    records = [make_record(seed=s, config={"suite": {"vote": {"times": 4}}}, extra_final={"vote": 80.0 + s})
               for s in range(2)]
    markdown = render_markdown(summarize(records))
    assert "one 4-vote pass" in markdown and "10-vote" not in markdown


def test_notes_use_the_records_selection_wording(make_record):
    """A protocol whose 'best' is not a max over epochs (SVM: the reference's fixed C) is described as it is."""
    rule = {"best": "test accuracy at the reference's fixed C", "last": "C chosen on a held-out 20% of train"}
    records = [make_record(seed=s, suite="svm", selection=rule) for s in (0, 1)]
    df = summarize(records)
    text = render_markdown(df)
    assert f"each seed's 'best': {rule['best']}." in text and f"each seed's 'last': {rule['last']};" in text
    assert "max over epochs" not in text

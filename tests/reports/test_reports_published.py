"""published.yaml: transcribed values, flags, aliases, validation, and a single read per process."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.errors import DataError
from reports.published import load_published, published_for


def by_stat(method: str, suite: str, variant: str) -> dict[tuple[str, str], float]:
    return {(e.metric, e.statistic): e.value for e in published_for(method, suite, variant)}


def test_values_from_the_published_table():
    assert by_stat("point_mae", "scanobjectnn", "objbg") == {("acc", "max"): 90.02}
    assert by_stat("point_mae", "modelnet40", "1k") == {("acc", "max"): 93.2, ("acc", "vote"): 93.80}
    assert by_stat("recon", "scanobjectnn", "hardest") == {("acc", "max"): 91.26}
    assert by_stat("pcp_mae", "s3dis", "area5") == {("miou", "max"): 61.3}
    assert by_stat("point_m2ae", "shapenetpart", "default") == {("cls_miou", "max"): 84.86,
                                                                ("inst_miou", "max"): 86.51}
    fewshot = published_for("point_pqae", "fewshot", "10w20s")[0]
    assert (fewshot.value, fewshot.std, fewshot.statistic) == (96.3, 2.7, "fold_mean")


def test_unknown_values_are_omitted_not_zero():
    assert published_for("point_mae", "s3dis", "area5") == []
    assert published_for("point_mge", "scanobjectnn", "objbg") == []
    assert published_for("recon", "modelnet40", "1k")[0].statistic == "vote"  # no no-vote number given
    assert published_for("no_such_method", "scanobjectnn", "objbg") == []


def test_starred_and_questionable_values_are_unverified():
    flagged = {e.metric: e.unverified for e in published_for("point_mae", "shapenetpart", "default")}
    assert flagged == {"cls_miou": True, "inst_miou": False}
    assert all(e.unverified for e in published_for("point_bert", "fewshot", "5w10s"))
    assert all(e.unverified for e in published_for("point_mge", "scanobjectnn", "hardest"))
    assert not any(e.unverified for e in published_for("pcp_mae", "scanobjectnn", "objbg"))


def test_vote_entries_record_the_repeats():
    repeats = {m: published_for(m, "modelnet40", "1k")[-1].vote_repeats for m in ("point_mae", "pcp_mae", "point_m2ae")}
    assert repeats == {"point_mae": 299, "pcp_mae": 51, "point_m2ae": 49}


def test_aliases_resolve_case_insensitively():
    assert by_stat("point_mae", "ScanObjectNN", "PB_T50_RS") == by_stat("point_mae", "scanobjectnn", "hardest")
    assert published_for("point_mae", "modelnet40_fewshot", "5way10shot") == published_for("point_mae", "fewshot",
                                                                                             "5w10s")


def test_every_entry_is_complete_and_in_percent():
    published = load_published()
    assert len(published.entries) > 40
    for entries in published.entries.values():
        for entry in entries:
            assert 0 < entry.value <= 100, entry
            assert entry.protocol and entry.source, entry


def test_caveats_are_recorded():
    text = " ".join(load_published().caveats)
    for needle in ("swapped in paper v1", "95.52 /", "split of 92.9 is unstated"):
        assert needle in text


def test_yaml_is_read_once():
    published_for("point_mae", "scanobjectnn", "objbg")
    misses = load_published.cache_info().misses
    for _ in range(5):
        published_for("recon", "modelnet40", "8k")
    assert load_published.cache_info().misses == misses


HEADER = "suites: {scanobjectnn: {variants: [objbg]}}\nmethods: {m: {results: {scanobjectnn: {objbg: "


@pytest.mark.parametrize("entries", [
    "[{metric: acc, statistic: max, value: 1, protocol: p, source: s},"
    " {metric: acc, statistic: unstated, value: 2, protocol: p, source: s}]",
    "[{metric: acc, statistic: best_guess, value: 1, protocol: p, source: s}]",
    "[{metric: acc, statistic: max, protocol: p, source: s}]",
])
def test_malformed_yaml_is_rejected(tmp_path: Path, entries: str):
    path = tmp_path / "published.yaml"
    path.write_text(HEADER + entries + "}}}}\n", encoding="utf-8")
    with pytest.raises(DataError, match="published"):
        load_published(path)

"""The HTML report from a realistic set of records: sections, inline figures, numbers, tuning, provenance, offline."""

from __future__ import annotations

import json
import re

import pytest
from html_support import BalancedHTML

from bench.errors import DataError
from reports.render import write_leaderboard
from reports.sources import load_tuning, read_tuning_summary


class Page(BalancedHTML):
    """Tag balance, sections by id, figures (kind -> svg texts), tables by class with their cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, str] = {}
        self.figures: list[dict] = []
        self.tables: list[dict] = []
        self._section: str | None = None

    def opened(self, tag, attrs):
        if tag == "section":
            self._section = attrs.get("id")
            self.sections[self._section] = ""
        elif tag == "figure":
            self.figures.append({"kind": attrs.get("data-plot"), "section": self._section, "svg": 0, "text": ""})
        elif tag == "svg" and self.figures:
            self.figures[-1]["svg"] += 1
            self.figures[-1]["label"] = attrs.get("aria-label")
        elif tag == "table":
            self.tables.append({"cls": attrs.get("class"), "section": self._section, "cells": []})
        elif tag in ("td", "th") and self.tables:
            self.tables[-1]["cells"].append("")

    def handle_data(self, data):
        if self._section is not None:
            self.sections[self._section] += data
        if "figure" in self.stack:
            self.figures[-1]["text"] += data
        if ("td" in self.stack or "th" in self.stack) and self.tables and self.tables[-1]["cells"]:
            self.tables[-1]["cells"][-1] += data


@pytest.fixture(scope="module")
def report(realistic, tuning_raw, tmp_path_factory):
    """(html text, parsed page, paths) of the full report with one tuning study."""
    out = tmp_path_factory.mktemp("report")
    study = out / "tuning" / "scanobjectnn-point_mae-lr"
    study.mkdir(parents=True)
    (study / "summary.json").write_text(json.dumps(tuning_raw()), encoding="utf-8")
    paths = write_leaderboard(realistic, out / "leaderboard", tuning_dir=out / "tuning")
    text = paths["html"].read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    return text, page, paths


def board(page: Page, heading_start: str) -> dict:
    """The leaderboard table whose section text starts with ``heading_start``."""
    return next(t for t in page.tables if t["cls"] == "leaderboard" and page.sections[t["section"]].strip().startswith(
        heading_start))


def test_page_is_well_formed_and_self_contained(report):
    text, page, _ = report
    assert page.errors == [] and page.stack == []
    assert not page.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert all(url.startswith("#") for url in page.urls), [u for u in page.urls if not u.startswith("#")]
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', "")
    assert "<?xml" not in text and "<metadata>" not in text


def test_one_section_per_table_then_tuning_provenance_caveats(report):
    _, page, _ = report
    boards = [s for s in page.sections if s.startswith("table-")]
    assert len(boards) == 6  # fewshot, modelnet40, s3dis, scanobjectnn real + synthetic, shapenetpart
    assert list(page.sections)[len(boards):] == ["tuning", "provenance", "caveats"]


def test_every_board_has_a_seed_plot_and_curves_and_fewshot_has_bars(report):
    _, page, _ = report
    kinds: dict[str, set] = {}
    for figure in page.figures:
        assert figure["svg"] == 1
        kinds.setdefault(figure["section"], set()).add(figure["kind"])
    fewshot = next(s for s in page.sections if page.sections[s].strip().startswith("fewshot"))
    assert kinds.pop(fewshot) == {"seeds", "folds", "curves"}
    assert kinds.pop("tuning") == {"tuning"}
    assert all(found == {"seeds", "curves"} for found in kinds.values()), kinds


def test_figures_carry_their_axis_labels_as_text(report):
    _, page, _ = report
    fewshot = next(s for s in page.sections if page.sections[s].strip().startswith("fewshot"))
    bars = next(f for f in page.figures if f["section"] == fewshot and f["kind"] == "folds")
    assert all(v in bars["text"] for v in ("5w10s", "5w20s", "10w10s", "10w20s", "Point-MAE", "Scratch"))
    partseg = next(s for s in page.sections if page.sections[s].strip().startswith("shapenetpart"))
    seeds = next(f for f in page.figures if f["section"] == partseg and f["kind"] == "seeds")
    assert "Inst. mIoU" in seeds["text"] and "Cls. mIoU" in seeds["text"]
    assert seeds["label"].startswith("per-seed distribution, shapenetpart")


def test_tables_show_the_right_numbers(report):
    _, page, _ = report
    fewshot = board(page, "fewshot")
    # recipe, suite version, config and commit are the same in every row: only the method column is left
    assert fewshot["cells"][:5] == ["method", "5w10s", "5w20s", "10w10s", "10w20s"]
    assert "Every row: recipe method; suite version v1; config cfg0001abc." in page.sections[fewshot["section"]]
    assert any("paper 96.30 ± 1.16 (fold mean, n=10)" in c for c in fewshot["cells"])
    scan = board(page, "scanobjectnn — real")
    # Point-MAE OBJ_BG: best 89.0 / 89.6 / 90.2 (paper 90.20, seed 2); last 87.8 / 88.7 / 89.6 (honest 88.70 ± 0.90)
    assert any(c.startswith("honest 88.70 ± 0.90 (n=3)paper 90.20 (seed 2)published 90.02") for c in scan["cells"])
    s3dis = board(page, "s3dis")
    assert s3dis["cells"][1:4] == ["mIoU", "mAcc", "OA"]


def test_tuning_section_compares_default_and_tuned(report):
    _, page, _ = report
    (summary,) = [t for t in page.tables if t["cls"] == "tuning"]
    assert summary["cells"][9:] == ["scanobjectnn-point_mae-lr", "scanobjectnn", "Point-MAE", "val_acc", "maximize",
                                    "81.5", "84", "+2.5", "lr=0.0003, weight_decay=0.05"]
    (trials,) = [t for t in page.tables if t["cls"] == "trials"]
    assert trials["cells"][4:8] == ["0", "COMPLETE", "80", "lr=0.0001, weight_decay=0.05"]
    assert trials["cells"][16:19] == ["3", "PRUNED", "—"]


def test_provenance_lists_command_commit_and_config_per_row(report, realistic):
    _, page, _ = report
    provenance = [t for t in page.tables if t["cls"] == "provenance"]
    assert len(provenance) == 22  # one per leaderboard key (metric rows share their key)
    text = page.sections["provenance"]
    assert "bench run suite=scanobjectnn method=point_mae,scratch,point_pqae seeds=[2]" in text
    assert "keys that differ between the seeds: seed." in text
    assert re.search(r"trainer:\s+epochs: 300\s+lr: 0\.0005", text)
    assert "(not recorded)" in text  # records without a command say so


def test_latex_and_csv_are_written_beside(report):
    _, _, paths = report
    tex = paths["tex"].read_text(encoding="utf-8")
    assert tex.count(r"\begin{table}") == 6 and r"96.30 $\pm$ 1.16" in tex
    lines = paths["csv"].read_text(encoding="utf-8").count("\n")
    assert lines == 1 + 22 + 4  # header, one row per key, the 4 extra metric rows (part seg 2, S3DIS 2)


def test_absent_tuning_folder_means_no_section(tmp_path):
    assert load_tuning(tmp_path / "nope") == [] and load_tuning(None) == []


@pytest.mark.parametrize(("key", "value"), [("best_value", "high"), ("direction", "up"), ("trials", None)])
def test_malformed_tuning_summary_names_file_and_key(tmp_path, tuning_raw, key, value):
    raw = tuning_raw()
    raw[key] = value
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(DataError, match=key) as err:
        read_tuning_summary(path)
    assert str(path) in str(err.value)


def test_escaping_in_provenance_and_tuning(make_record, tuning_raw, tmp_path):
    raw = tuning_raw()
    raw["study"] = "<b>x</b>"
    (tmp_path / "tuning" / "s").mkdir(parents=True)
    (tmp_path / "tuning" / "s" / "summary.json").write_text(json.dumps(raw), encoding="utf-8")
    record = make_record(command="bench run method='<script>alert(1)</script>'")
    text = write_leaderboard([record], tmp_path / "lb", tmp_path / "tuning")["html"].read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text and "<b>x</b>" not in text


def test_bench_tune_schema_1_is_read_too(tmp_path):
    """`bench tune` writes nested best / default entries (bench.tuning docstring); they fill the same fields."""
    trial = {"number": 0, "state": "COMPLETE", "value": 71.5, "params": {"trainer.lr": 5e-4}, "default": True}
    raw = {"schema": 1, "study": "s", "suite": "scanobjectnn", "method": "scratch", "variant": "objbg",
           "metric": "acc", "direction": "maximize", "trials": [trial, {**trial, "number": 1, "value": 74.0,
                                                                       "params": {"trainer.lr": 1e-3}}],
           "default": {"number": 0, "value": 71.5, "params": {"trainer.lr": 5e-4}, "test_last": 70.0},
           "best": {"number": 1, "value": 74.0, "params": {"trainer.lr": 1e-3}, "test_last": 72.5}}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "summary.json").write_text(json.dumps(raw), encoding="utf-8")
    (summary,) = load_tuning(tmp_path)
    assert (summary.best_value, summary.default_value, summary.best_params) == (74.0, 71.5, {"trainer.lr": 1e-3})
    assert (summary.variant, summary.default_test, summary.best_test) == ("objbg", 70.0, 72.5)
    raw.update(best=None, default=None, trials=[{**trial, "state": "RUNNING", "value": None}])
    (tmp_path / "s" / "summary.json").write_text(json.dumps(raw), encoding="utf-8")
    (summary,) = load_tuning(tmp_path)
    assert summary.best_value is None and summary.default_value is None
    from reports.page import tuning_section

    html = "\n".join(tuning_section([summary]))
    assert "<td>—</td>" in html and "<svg" not in html  # nothing completed: no scores, no history plot


def test_a_best_trial_that_is_the_default_says_so(tuning_raw, tmp_path):
    """bench tune's own schema (nested best / default): best = trial 0 = the default is flagged and shown."""
    flat = tuning_raw()
    default = {"number": 0, "value": 81.5, "params": flat["trials"][0]["params"]}
    raw = {k: v for k, v in flat.items() if k not in ("best_params", "best_value", "default_value")}
    raw.update(schema=1, best=dict(default), default=default)
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(raw))
    assert read_tuning_summary(path).best_is_default
    raw["best"] = {"number": 2, "value": 84.0, "params": flat["trials"][2]["params"]}
    path.write_text(json.dumps(raw))
    assert not read_tuning_summary(path).best_is_default


def test_provenance_lists_the_protocols_deviations(make_record, tmp_path):
    deviation = "one optimizer step per batch; the reference steps twice per batch"
    records = [make_record(seed=s, details={"deviations": [deviation]}) for s in (0, 1)]
    text = write_leaderboard(records, tmp_path / "lb")["html"].read_text(encoding="utf-8")
    assert text.count(f"<li>{deviation}</li>") == 1
    plain = write_leaderboard([make_record(seed=0)], tmp_path / "plain")["html"].read_text(encoding="utf-8")
    assert "Deviations from the reference" not in plain

"""Generation tables in the leaderboard: several metrics of different units, scales and directions in one table, the
1-NNA noise floor under it, published LION / PVD / PointFlow rows beside real-data rows only, and the samples figure
embedded in the HTML page (skipped when the files are gone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from html_support import BalancedHTML

from bench.records import RunRecord
from bench.registry import load_plugins
from bench.scoring import metric_results, noise_floor
from reports.leaderboard import summarize
from reports.published import published_for, reference_methods
from reports.render import render_latex, render_markdown, write_leaderboard

load_plugins()
ORDER = ["nna_cd", "nna_emd", "cov_cd", "cov_emd", "mmd_cd", "mmd_emd"]


def gen_record(method: str = "point_mge", variant: str = "airplane", data_kind: str = "real", seed: int = 0,
               nna: float = 60.0, samples_file: str | None = None, suite: str = "generation") -> RunRecord:  # fmt: skip
    """A generation record with three sampling runs (nna, nna + 1, nna + 2 for 1-NNA-CD)."""
    runs = [{"nna_cd": nna + d, "nna_emd": nna + 5 + d, "cov_cd": 45.0 + d, "cov_emd": 47.0, "mmd_cd": 2.5e-4,
             "mmd_emd": 3.5e-3, "nna_cd_t": nna, "nna_cd_f": nna, "nna_emd_t": nna, "nna_emd_f": nna}
            for d in (0.0, 1.0, 2.0)]
    results = metric_results(ORDER, runs)
    report = {"columns": "metrics", "metrics": ORDER, "paper_statistic": "max"}
    return RunRecord(
        job_id=f"{suite}/{variant}/{method}/seed{seed}", sweep_id="s", method=method, suite=suite, suite_version=1,
        variant=variant, seed=seed, protocol="generation", data_kind=data_kind,
        profile="paper" if data_kind == "real" else "demo", recipe="method", metric="nna_cd", results=results,
        epochs=[], config={"suite": {"report": report}}, env={"git_commit": "abc1234", "ops_backend": "cpp"},
        wall_time_s=1.0, config_hash="cfg0001", created="2026-01-01T00:00:00",
        details={"table_notes": [noise_floor(405, variant)[1]], "samples_file": samples_file},
    )


def generation_table(markdown: str, kind: str = "real data") -> str:
    (table,) = [p for p in markdown.split("## ") if p.startswith("generation") and kind in p.splitlines()[0]]
    return table


def test_one_table_describes_each_metric_and_shows_the_noise_floor():
    records = [gen_record(seed=0, nna=60.0), gen_record(seed=1, nna=45.0)]
    table = generation_table(render_markdown(summarize(records)))
    assert ("Metric: 1-NNA-CD, 1-NNA-EMD in percent, closest to 50 is best; COV-CD, COV-EMD in percent, higher is "
            "better; MMD-CD unitless, shown x1000, lower is better; MMD-EMD unitless, shown x100, lower is better"
            ) in table
    assert "paper = best (in each metric's direction) over seeds of each seed's 'single'" in table
    assert "1-NNA noise floor ±1.8 points at n=405 (airplane): the binomial sd of one sampling run." in table
    header = next(line for line in table.splitlines() if line.startswith("| method"))
    assert header.endswith("| 1-NNA-CD | 1-NNA-EMD | COV-CD | COV-EMD | MMD-CD | MMD-EMD |")
    row = next(line for line in table.splitlines() if line.startswith("| Point-MGE"))
    assert "paper 45.00 (seed 1)" in row  # closest to 50: seed 1's 45 beats seed 0's 60
    assert "honest 53.50 ± 10.61 (n=2)" in row  # means over sampling runs (61 and 46), then over seeds
    assert "paper 0.25 (seed 0)" in row and "paper 0.35 (seed 0)" in row  # MMD-CD x10^3, MMD-EMD x10^2


def test_published_rows_appear_beside_real_rows_only():
    records = [gen_record(), gen_record(variant="chair"), gen_record(data_kind="synthetic")]
    markdown = render_markdown(summarize(records))
    real, fake = generation_table(markdown), generation_table(markdown, "SYNTHETIC")
    # one configuration of ours: recipe, suite version, config and commit are in the notes, not in columns
    assert "| LION (published) | published 67.41 | published 61.23 | — | — | — | — | published 53.7 |" in real
    assert "| PVD (published) |" in real and "published 73.82✱" in real and "PointFlow (published)" in real
    assert "PointFlow / airplane / 1-NNA-EMD: 70.74 ✱ unverified" in real and "75.06 (PointFlow issue #26)" in real
    assert "(published)" not in fake and "published 6" not in fake and "Δ" not in fake
    assert reference_methods("scanobjectnn") == []  # representation tables keep their rows


def test_a_scored_lion_row_takes_its_published_number_instead_of_a_reference_row():
    table = generation_table(render_markdown(summarize([gen_record(method="lion", nna=66.0)])))
    row = next(line for line in table.splitlines() if line.startswith("| LION |"))
    assert "published 67.41 (Δ -1.41 vs paper)" in row and "published 61.23 (Δ +9.77 vs paper)" in row
    assert "LION (published)" not in table and "PVD (published)" in table


def test_published_generation_entries_follow_lion_table_1():
    cd = {m: {v: next(e for e in published_for(m, "generation", v) if e.metric == "nna_cd") for v in
              ("airplane", "chair", "car")} for m in ("lion", "pvd", "pointflow")}  # fmt: skip
    assert [cd["lion"][v].value for v in ("airplane", "chair", "car")] == [67.41, 53.70, 53.41]
    assert [cd["pvd"][v].value for v in ("airplane", "chair", "car")] == [73.82, 56.26, 54.55]
    assert [cd["pointflow"][v].value for v in ("airplane", "chair", "car")] == [75.68, 62.84, 58.10]
    assert not any(e.unverified for e in cd["lion"].values())
    assert all(e.unverified for m in ("pvd", "pointflow") for e in cd[m].values())
    assert all(e.statistic == "single" for m in cd.values() for e in m.values())
    assert published_for("lion", "generation_box", "airplane") == []  # LION Table 2 is a separate table


class Figures(BalancedHTML):
    def __init__(self) -> None:
        super().__init__()
        self.section: str | None = None
        self.figures: list[tuple[str | None, str | None]] = []

    def opened(self, tag, attrs):
        if tag == "section":
            self.section = attrs.get("id")
        elif tag == "figure":
            self.figures.append((self.section, attrs.get("data-plot")))


def parse(text: str) -> Figures:
    page = Figures()
    page.feed(text)
    page.close()
    return page


@pytest.fixture()
def samples_files(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    files = {}
    for variant in ("airplane", "chair"):
        files[variant] = tmp_path / f"{variant}.npz"
        np.savez(files[variant], samples=rng.normal(size=(4, 300, 3)), refs=rng.normal(size=(4, 300, 3)))
    return files


def test_the_samples_figure_is_embedded_for_generation_tables(tmp_path, samples_files):
    records = [gen_record(variant=v, samples_file=str(f)) for v, f in samples_files.items()]
    records.append(gen_record(method="other", samples_file=str(samples_files["airplane"])))
    text = write_leaderboard(records, tmp_path / "board")["html"].read_text(encoding="utf-8")
    page = parse(text)
    assert page.errors == [] and all(url.startswith("#") for url in page.urls)
    assert ("table-0", "samples") in page.figures and ("table-0", "seeds") in page.figures
    figure = text[text.index('data-plot="samples"'):text.index("</figure>", text.index('data-plot="samples"'))]
    assert "airplane: reference" in figure and "airplane: Point-MGE" in figure and "chair: Point-MGE" in figure
    assert "airplane: other" in figure and "Generated samples" in text
    assert "<image" not in figure  # vector points, no embedded raster


def test_the_samples_figure_is_skipped_when_the_files_are_gone(tmp_path, samples_files):
    records = [gen_record(variant="airplane", samples_file=str(tmp_path / "gone.npz")),
               gen_record(variant="chair", samples_file=None)]
    page = parse(write_leaderboard(records, tmp_path / "board")["html"].read_text(encoding="utf-8"))
    assert page.errors == [] and ("table-0", "samples") not in page.figures
    partial = [gen_record(variant="airplane", samples_file=str(tmp_path / "gone.npz")),
               gen_record(variant="chair", samples_file=str(samples_files["chair"]))]
    text = write_leaderboard(partial, tmp_path / "board2")["html"].read_text(encoding="utf-8")
    assert "chair: Point-MGE" in text and "airplane: Point-MGE" not in text


def test_latex_renders_a_generation_table():
    latex = render_latex(summarize([gen_record(), gen_record(method="lion")]))
    assert r"1-NNA-CD" in latex and r"\begin{tabular}{ll" in latex

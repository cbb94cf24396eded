"""The scaling figure: the power-law fit against hand-computed values, the per-size points (mean and std over seeds,
duplicates dropped), the log-log figure in the HTML page with its fit in the legend and caption, the table's size
order and metric words, and no figure for records without scaling details."""

from __future__ import annotations

import math

import numpy as np
import pytest
from html_support import BalancedHTML

from bench.records import RunRecord
from bench.results import HONEST, PAPER, MetricResult, Statistic
from reports.leaderboard import summarize
from reports.render import render_markdown, write_leaderboard
from reports.scaling import fit_power_law, scaling_plot, scaling_series
from reports.tables import build_tables

PARAMS = {"small": 1.0e3, "medium": 1.0e4, "large": 1.0e5}


def law(n: float, a: float = 2.0, b: float = -0.1) -> float:
    return a * n**b


def scaling_record(variant: str, seed: int = 0, loss: float | None = None, method: str = "g3pt",
                   created: str = "2026-01-01T00:00:00", scaling: bool = True) -> RunRecord:  # fmt: skip
    """A scaling record of ``variant`` whose test loss is ``loss`` (default: exactly 2 N^-0.1)."""
    value = law(PARAMS[variant]) if loss is None else loss
    result = MetricResult("test_loss", "test_loss", "min", "nats", 1.0, {
        "last": Statistic(value, "mean test loss after the last epoch (no selection)", HONEST),
        "final": Statistic(value, "the same value", PAPER)})
    details = {"scaling": {"size": variant, "params_trained": int(PARAMS[variant]), "params_total": 5000 +
                           int(PARAMS[variant])}} if scaling else {}  # fmt: skip
    return RunRecord(
        job_id=f"scaling/{variant}/{method}/seed{seed}", sweep_id="s", method=method, suite="scaling",
        suite_version=1, variant=variant, seed=seed, protocol="scaling", data_kind="synthetic", profile="demo",
        recipe="method", metric="test_loss", results=[result], epochs=[{"epoch": 0, "train_loss": 3.0}],
        config={"suite": {"report": {"columns": "variants", "metrics": [], "paper_statistic": "max"}}},
        env={"git_commit": "abc1234", "ops_backend": "cpp"}, wall_time_s=1.0, config_hash="cfg0001",
        created=created, details=details)


def exact_records() -> list[RunRecord]:
    return [scaling_record(v) for v in PARAMS]


def test_an_exact_power_law_is_recovered():
    fit = fit_power_law(list(PARAMS.values()), [law(n) for n in PARAMS.values()])
    assert fit.a == pytest.approx(2.0) and fit.b == pytest.approx(-0.1) and fit.r2 == pytest.approx(1.0)
    assert fit(1.0e6) == pytest.approx(law(1.0e6)) and fit.points == 3
    two = fit_power_law([10.0, 1000.0], [4.0, 1.0])  # through both points: b = log(1/4) / log(100) = -0.30103
    assert two.b == pytest.approx(-math.log10(2)) and two.a == pytest.approx(8.0)


def test_a_noisy_fit_matches_the_hand_computed_least_squares():
    # log N = 0, 1, 2 and log L = 0, 1, 1: slope 1/2, intercept 1/6, residuals -1/6, 1/3, -1/6
    fit = fit_power_law(np.exp([0.0, 1.0, 2.0]), np.exp([0.0, 1.0, 1.0]))
    assert fit.b == pytest.approx(0.5) and fit.a == pytest.approx(math.exp(1 / 6))
    assert fit.r2 == pytest.approx(1 - (1 / 6) / (2 / 3))  # SS_res 1/6, SS_tot 2/3: 0.75
    flat = fit_power_law([1.0, 10.0], [3.0, 3.0])
    assert flat.b == pytest.approx(0.0, abs=1e-12) and flat.r2 == 1.0


@pytest.mark.parametrize("params, losses, needle", [
    ([10.0, 10.0], [1.0, 2.0], "two distinct parameter counts"),
    ([10.0, 0.0], [1.0, 2.0], "finite and positive"),
    ([10.0, 20.0], [1.0, -2.0], "finite and positive"),
    ([10.0, 20.0], [1.0], "parameter counts but"),
])
def test_a_fit_refuses_what_it_cannot_fit(params, losses, needle):
    with pytest.raises(ValueError, match=needle):
        fit_power_law(params, losses)


def test_points_are_means_over_seeds_with_their_std_and_duplicates_dropped():
    records = [scaling_record("small", 0, 3.0), scaling_record("small", 1, 5.0), scaling_record("large", 0, 2.0),
               scaling_record("large", 0, 9.0, created="2025-01-01T00:00:00")]  # an older duplicate of seed 0
    table = build_tables(summarize(records))[0]
    (line,) = scaling_series(table, records)
    small, large = line.points  # ordered by parameter count
    assert (small.size, small.params, small.loss, small.seeds) == ("small", 1.0e3, 4.0, 2)
    assert small.std == pytest.approx(math.sqrt(2.0))  # sample std of 3 and 5
    assert (large.loss, large.std, large.seeds) == (2.0, None, 1)
    assert line.fit is not None and line.fit.b == pytest.approx(math.log(2.0 / 4.0) / math.log(100.0))
    one = [scaling_record("small")]
    (alone,) = scaling_series(build_tables(summarize(one))[0], one)
    assert alone.fit is None and scaling_plot(build_tables(summarize(one))[0], one).caption.endswith("no fit.")


class Figures(BalancedHTML):
    def __init__(self) -> None:
        super().__init__()
        self.figures: list[str | None] = []

    def opened(self, tag, attrs):
        if tag == "figure":
            self.figures.append(attrs.get("data-plot"))


def test_the_scaling_figure_is_in_the_html_report(tmp_path):
    records = [*exact_records(), *(scaling_record(v, method="point_mge", loss=1.5 * law(n, b=-0.05))
                                   for v, n in PARAMS.items())]
    path = write_leaderboard(records, tmp_path / "board")["html"]
    text = path.read_text(encoding="utf-8")
    page = Figures()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.figures.count("scaling") == 1 and "seeds" in page.figures
    start = text.index('data-plot="scaling"')
    figure = text[start:text.index("</figure>", start)]
    assert "<svg" in figure and 'aria-label="scaling law, scaling' in figure and "<image" not in figure
    assert "trained parameters N (log scale)" in figure and "test loss L (nats, log scale)" in figure
    assert "G3PT fit: L = 2·N^-0.100, R² = 1.000" in figure and "Point-MGE fit: L = 3·N^-0.050" in figure
    assert "Fits: G3PT: b = -0.100, R² = 1.000 over 3 sizes; Point-MGE: b = -0.050" in figure
    assert all(figure.count(f">{size}</text>") == 2 for size in PARAMS)  # each point labelled with its size


def test_the_table_shows_the_test_loss_per_size_in_size_order():
    markdown = render_markdown(summarize(exact_records()))
    assert "| small | medium | large |" in markdown
    assert "Metric: test_loss in nats, lower is better." in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| G3PT"))
    assert f"honest {law(1.0e3):.2f} (n=1, no std)" in row and f"paper {law(1.0e5):.2f} (seed 0)" in row


def test_no_scaling_figure_without_scaling_details(tmp_path):
    records = [scaling_record(v, scaling=False) for v in PARAMS]
    assert scaling_plot(build_tables(summarize(records))[0], records) is None
    text = write_leaderboard(records, tmp_path / "board")["html"].read_text(encoding="utf-8")
    assert 'data-plot="scaling"' not in text

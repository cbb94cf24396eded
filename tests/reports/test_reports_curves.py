"""The learning curves: a y label on every panel, readable legends, train and chance lines, and a caption that says
why early test accuracy can sit at chance (warm-up lr, BatchNorm running statistics)."""

from __future__ import annotations

import re

import pytest
from conftest import build_record

from reports.curves import chance_level, curves_caption, learning_curves
from reports.leaderboard import summarize
from reports.plots import LEGEND_FONT_SIZE
from reports.render import render_html
from reports.tables import build_tables

CLASSES = 15  # ScanObjectNN: chance 100/15 = 6.67 %


def demo_rows(seed: int, stuck: int = 3) -> list[dict[str, float]]:
    """Like the demo profile: epoch 0 at the warm-up lr 1e-6, the test metric at chance for ``stuck`` epochs while
    the training metric climbs from the start."""
    chance = 100.0 / CLASSES
    return [{"epoch": e, "lr": 1e-6 if e == 0 else 1e-3, "train_acc": 10.0 + 8 * e,
             "test_acc": chance if e < stuck else 40.0 + 3 * e + seed} for e in range(8)]


def demo_records(stuck: int = 3, variants=("objbg", "objonly", "hardest")):
    return [build_record(method=m, variant=v, seed=s, epochs=demo_rows(s, stuck), profile="demo",
                         data_kind="synthetic", config={"seed": s, "suite": {"num_classes": CLASSES}})
            for m in ("point_mae", "scratch") for v in variants for s in (0, 1)]


def _figure(records):
    (table,) = build_tables(summarize(records))
    return learning_curves(table, records)


def _texts(svg: str) -> list[tuple[float, str]]:
    """(font size in px, text) of every text element of the SVG (svg.fonttype none keeps text as text)."""
    found = re.findall(r'<text style="font-size: ([\d.]+)px[^"]*"[^>]*>([^<]*)</text>', svg)
    return [(float(size), text) for size, text in found]


def test_every_panel_has_its_y_label():
    figure = _figure(demo_records())
    labels = [text for _, text in _texts(figure.svg) if text == "Acc. (%)"]
    assert len(labels) == 3  # one per variant panel, not only the first


def test_legend_uses_display_names_at_a_readable_size():
    texts = dict((text, size) for size, text in _texts(_figure(demo_records()).svg))
    assert texts["Point-MAE (n=2)"] == texts["Scratch (n=2)"] == LEGEND_FONT_SIZE >= 9  # was 7 pt
    assert texts["Acc. (%)"] == LEGEND_FONT_SIZE  # as large as the axis labels


def test_caption_explains_a_demo_run():
    caption = _figure(demo_records()).caption
    assert "Dashed: the training metric (train mode, mean over seeds)." in caption
    assert "Dotted: chance (6.7 %)." in caption
    assert "Epoch 0 is the warm-up's first epoch, at lr 1e-06 (peak 0.001)" in caption
    assert "BatchNorm" in caption and "eval mode" in caption and "bench/profiles/demo.yaml" in caption


def test_caption_leaves_out_what_the_records_do_not_show():
    learning = demo_records(stuck=1)  # off chance from epoch 1
    assert "BatchNorm" not in _figure(learning).caption and "Dotted: chance" in _figure(learning).caption
    flat_lr = [build_record(seed=s, epochs=[{"epoch": e, "lr": 1e-3, "test_acc": 50.0 + e} for e in range(4)])
               for s in (0, 1)]
    assert _figure(flat_lr).caption == ""  # no train metric, no class count, no warm-up


def test_chance_needs_an_accuracy_and_one_class_count():
    records = demo_records(variants=("objbg",))
    assert chance_level(records) == pytest.approx(100 / 15)
    assert chance_level([build_record(metric="miou", config={"suite": {"num_classes": 13}})]) is None
    mixed = [build_record(config={"suite": {"num_classes": 15}}), build_record(config={"suite": {"num_classes": 40}})]
    assert chance_level(mixed) is None and curves_caption([], None) == ""


def test_the_caption_is_under_the_curves_in_the_page():
    records = demo_records()
    page = render_html(summarize(records), records)
    figure = page[page.index('data-plot="curves"'):]
    caption = figure[figure.index("<figcaption>"):figure.index("</figcaption>")]
    assert "one panel per variant" in caption and "BatchNorm" in caption and "warm-up" in caption

"""The leaderboard's provenance shows each row's fidelity options (issue 14): the keys of
reports.fidelity.FIDELITY_OPTIONS that a record holds, in the long table (``options``), the Markdown and the HTML
provenance; keys a record lacks are skipped; seeds that differ are both shown."""

from __future__ import annotations

import json

from reports.fidelity import FIDELITY_OPTIONS, options_line, record_options, row_options
from reports.leaderboard import summarize
from reports.render import OPTIONS_HEADING, render_html, render_markdown

CONFIG = {
    "trainer": {"epochs": 300, "reference_double_step": True, "schedule_convention": "reference_runner",
                "warmup_lr_init": 1.0e-6},
    "pretrain": {"trainer": {"reference_double_step": False}},
    "suite": {"name": "scanobjectnn", "head": {"pooling": "mean_max", "init": "torch_default"},
              "vote": {"enabled": True, "times": 10, "repeats": 1}, "test_blocks": "redrawn"},
    "method": {"name": "point_mae", "decoder_init": "xavier_uniform", "encoder": {"num_heads": 6}},
}
ENV = {"git_commit": "abc1234", "fps_skip_origin": True}


def test_listed_options_are_picked_in_list_order_and_others_left_out(make_record):
    found = record_options(make_record(config=CONFIG, env=ENV))
    assert list(found) == ["suite.head.pooling", "suite.head.init", "method.decoder_init",
                           "trainer.reference_double_step", "trainer.schedule_convention", "suite.vote.enabled",
                           "suite.vote.times", "suite.vote.repeats", "suite.test_blocks", "env.fps_skip_origin"]
    assert found["trainer.reference_double_step"] == "True" and found["suite.head.pooling"] == "mean_max"
    for other in ("trainer.epochs", "trainer.warmup_lr_init", "pretrain.trainer.reference_double_step",
                  "method.encoder.num_heads", "env.git_commit"):
        assert other not in found


def test_absent_keys_are_skipped_and_the_list_is_extensible(make_record):
    record = make_record(config={"trainer": {"epochs": 3}})
    assert record_options(record) == {}
    assert record_options(record, (*FIDELITY_OPTIONS, "trainer.epochs")) == {"trainer.epochs": "3"}
    assert record_options(make_record(config={"method": {"init": "torch_default"}})) == {"method.init": "torch_default"}


def test_seeds_that_differ_show_both_values(make_record):
    records = [make_record(seed=s, config={"suite": {"vote": {"times": t}}}) for s, t in ((0, 10), (1, 4), (2, 10))]
    assert row_options(records) == {"suite.vote.times": "10 | 4"}
    assert options_line(row_options(records)) == "suite.vote.times=10 | 4"
    assert options_line(json.dumps({"a.b": "1", "c": "x"})) == "a.b=1, c=x" and options_line("") == ""


def test_the_leaderboard_markdown_and_html_show_each_rows_options(make_record):
    mae = [make_record(seed=s, config=CONFIG, env=ENV) for s in (0, 1)]
    plain = [make_record(method="scratch", seed=0, config={"trainer": {"epochs": 1}})]
    df = summarize(mae + plain)
    by_method = dict(zip(df["method"], df["options"].map(json.loads), strict=True))
    assert by_method["point_mae"]["suite.head.pooling"] == "mean_max" and by_method["scratch"] == {}
    text = render_markdown(df)
    section = text.split(OPTIONS_HEADING)[1]
    assert ("- scanobjectnn / objbg / point_mae (real, profile paper, recipe method, config cfg0001abc): "
            "suite.head.pooling=mean_max, suite.head.init=torch_default") in section
    assert "scratch" not in section  # a row without options gets no line
    page = render_html(df, mae + plain)
    provenance = page.split('<section id="provenance">')[1]
    assert provenance.count('<table class="fidelity">') == 1  # the scratch row has none
    assert "<td><code>trainer.schedule_convention</code></td><td>reference_runner</td>" in provenance


def test_no_options_anywhere_means_no_markdown_section(make_record):
    assert OPTIONS_HEADING not in render_markdown(summarize([make_record(seed=0)]))

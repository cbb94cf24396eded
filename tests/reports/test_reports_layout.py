"""suite.report layouts: variant columns, metric columns (part seg, S3DIS), few-shot fold means; validation."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from bench.errors import ConfigError, DataError
from bench.records import RunRecord
from bench.results import HONEST, PAPER, MetricResult, Statistic
from reports.leaderboard import summarize
from reports.render import render_markdown
from reports.tables import build_tables

PARTSEG = {"inst_miou": (85.6, 86.0), "cls_miou": (83.9, 84.3)}
S3DIS = {"miou": (58.9, 60.1), "macc": (68.0, 69.2), "oa": (88.5, 89.1)}


@pytest.mark.parametrize(("report", "key"), [
    ({"columns": "rows"}, "suite.report.columns"),
    ({"paper_statistic": "median"}, "suite.report.paper_statistic"),
    ({"columns": "metrics", "metrics": []}, "suite.report.metrics"),
    ({"columns": "metrics", "metrics": "miou"}, "suite.report.metrics"),
])
def test_invalid_report_section_names_the_key(make_record, report, key):
    record = make_record(config={"suite": {"report": report}})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        summarize([record])
    assert record.job_id in str(err.value)


def test_missing_metric_value_names_the_missing_role(make_record, with_report):
    record = make_record(metric="miou", config=with_report("metrics", ("miou", "oa")),
                         extra_final={"oa_best": 90.0})
    with pytest.raises(DataError, match="oa.* lacks a finite honest"):
        summarize([record])


def test_seeds_of_a_row_must_share_the_layout(make_record, with_report):
    records = [make_record(seed=0), make_record(seed=1, config=with_report(paper_statistic="fold_mean"))]
    with pytest.raises(DataError, match="suite.report"):
        summarize(records)


def test_old_records_get_the_default_layout_and_no_command(make_record):
    data = json.loads(make_record().to_json())
    del data["command"]
    record = RunRecord.from_dict(data)  # a record written before `command` existed still loads
    assert record.command == ""
    (row,) = summarize([record]).to_dict("records")
    assert (row["report_columns"], row["paper_statistic"], row["headline"]) == ("variants", "max", True)
    assert json.loads(row["commands"]) == []


def test_metric_columns_give_one_row_per_metric_with_hand_computed_values(by_metric):
    records = by_metric("shapenetpart", "default", PARTSEG, seeds=(0, 1, 2))
    df = summarize(records)
    assert list(df["metric"]) == ["inst_miou", "cls_miou"] and list(df["headline"]) == [True, False]
    cls = df[df["metric"] == "cls_miou"].iloc[0]
    assert cls["paper"] == 86.3 and cls["paper_seed"] == 2  # max over seeds of cls_miou_best = 84.3 + seed
    assert cls["honest_mean"] == pytest.approx(84.9) and cls["honest_std"] == pytest.approx(1.0)
    assert cls["published"] == 84.2 and cls["diff"] == pytest.approx(86.3 - 84.2)  # Point-MAE Cls. mIoU
    assert cls["vote_n"] == 0
    assert len(summarize(records, headline_only=True)) == 1


def test_partseg_table_has_cls_and_inst_columns(by_metric):
    records = [*by_metric("shapenetpart", "default", PARTSEG),
               *by_metric("shapenetpart", "default", PARTSEG, method="scratch")]
    (table,) = build_tables(summarize(records))
    assert table.header[-2:] == ["Inst. mIoU", "Cls. mIoU"]
    assert [row.label[0] for row in table.rows] == ["Scratch", "Point-MAE"]  # display names (Method.display_name)
    mae = table.rows[1].cells
    assert mae[0][:2] == ["honest 86.10 ± 0.71 (n=2)", "paper 87.00 (seed 1)"]
    assert mae[1][:2] == ["honest 84.40 ± 0.71 (n=2)", "paper 85.30 (seed 1)"]
    assert "published 84.2✱ (Δ +1.10 vs paper)" in mae[1]
    assert any("Point-MAE / default / Cls. mIoU: 84.2" in ref for ref in table.references)


def test_s3dis_table_has_miou_macc_oa_columns(by_metric):
    records = by_metric("s3dis", "area5", S3DIS, method="point_pqae")
    (table,) = build_tables(summarize(records))
    assert table.header[-3:] == ["mIoU", "mAcc", "OA"]
    miou, macc, oa = table.rows[0].cells
    assert miou[1] == "paper 61.10 (seed 1)" and "published 61.4 (Δ -0.30 vs paper)" in miou
    assert macc[0] == "honest 68.50 ± 0.71 (n=2)" and oa[1] == "paper 90.10 (seed 1)"
    assert "Metric: mIoU, mAcc, OA in percent" in table.notes[0]


def test_fewshot_fold_mean_columns(fewshot):
    records = [r for v, base in (("5w10s", 95.0), ("5w20s", 96.5), ("10w10s", 91.0), ("10w20s", 93.5))
               for r in fewshot("point_mae", v, base=base)]
    (table,) = build_tables(summarize(records))
    assert table.header[-4:] == ["5w10s", "5w20s", "10w10s", "10w20s"]
    folds = [f % 4 for f in range(10)]
    std = statistics.stdev(folds)
    assert f"{std:.2f}" == "1.16" and math.isclose(statistics.fmean(folds), 1.3)
    cells = table.rows[0].cells
    assert cells[0][:2] == [f"honest 95.30 ± {std:.2f} (n=10)", f"paper 96.30 ± {std:.2f} (fold mean, n=10)"]
    assert cells[2][1] == "paper 92.30 ± 1.16 (fold mean, n=10)"
    assert "published 96.3 ± 2.5 (Δ +0.00 vs best mean)" in cells[0]  # Point-MAE 5w10s, compared as a fold mean
    assert any(note.startswith("paper (fold mean) = mean ± sample std over folds") for note in table.notes)


def test_markdown_of_a_metric_layout_reads_back_from_csv(tmp_path, by_metric, fewshot):
    import pandas as pd

    df = summarize([*by_metric("s3dis", "area5", S3DIS), *fewshot()])
    path = tmp_path / "board.csv"
    df.to_csv(path, index=False)
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert render_markdown(back) == render_markdown(df)


def test_a_metric_no_seed_has_gets_no_column(by_metric, with_report):
    """S3DIS lists whole-room metrics that its protocol writes only with whole_room."""
    records = by_metric("s3dis", "area5", S3DIS)
    for record in records:
        record.config = with_report("metrics", (*S3DIS, "room_miou"))
    df = summarize(records)
    assert list(df["metric"]) == ["miou", "macc", "oa"]
    (table,) = build_tables(df)
    assert table.header[-3:] == ["mIoU", "mAcc", "OA"]
    records[0].results.append(MetricResult("room_miou", "miou", "max", "%", 1.0, {"last": Statistic(50.0, "", HONEST)}))
    with pytest.raises(DataError, match="room_miou.* lacks a finite paper"):  # one seed has it with no paper value
        summarize(records)
    records[0].results[-1].statistics["best"] = Statistic(60.0, "", PAPER)
    with pytest.raises(DataError, match="seed1: suite.report.metrics names 'room_miou'"):  # the other seed lacks it
        summarize(records)


def test_config_resolution_rejects_a_bad_report_section():
    from bench.config import resolve

    with pytest.raises(ConfigError, match=r"suite\.report\.columns is 'rows'"):
        resolve("scanobjectnn", "scratch", profile="demo", overrides=["suite.report.columns=rows"])

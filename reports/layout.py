"""A suite's table layout (``suite.report``), read from the resolved config that every RunRecord carries.

``record.config["suite"]["report"]`` (see :class:`bench.schema.ReportConfig`):

- ``columns``: ``variants`` (one column per variant, the headline metric) or ``metrics`` (one column per entry of
  ``metrics``, per variant: part segmentation's Cls. / Inst. mIoU, S3DIS's mIoU / mAcc / OA);
- ``metrics``: the metric names of a ``metrics`` layout, the first being the headline; a record holds a typed
  result of each name (:mod:`bench.results`);
- ``paper_statistic``: ``max`` (max over seeds of each seed's best epoch) or ``fold_mean`` (mean ± std over folds
  of each fold's best epoch, the few-shot papers').

Records written before ``suite.report`` existed (no such section) get the defaults: variants, [], max.
"""

from __future__ import annotations

from bench.records import RunRecord
from bench.schema import ReportSpec, check_report

#: how the papers write the metric names (unknown names are shown as they are)
METRIC_LABELS = {
    "acc": "Acc.",
    "cls_miou": "Cls. mIoU",
    "inst_miou": "Inst. mIoU",
    "miou": "mIoU",
    "macc": "mAcc",
    "oa": "OA",
    "inst_miou_all": "Inst. mIoU (whole shapes)",
    "cls_miou_all": "Cls. mIoU (whole shapes)",
    "acc_all": "Acc. (whole shapes)",
    "room_miou": "mIoU (rooms)",
    "room_macc": "mAcc (rooms)",
    "room_oa": "OA (rooms)",
    "nna_cd": "1-NNA-CD",
    "nna_emd": "1-NNA-EMD",
    "cov_cd": "COV-CD",
    "cov_emd": "COV-EMD",
    "mmd_cd": "MMD-CD",
    "mmd_emd": "MMD-EMD",
}


def metric_label(name: str) -> str:
    """``inst_miou`` -> ``Inst. mIoU``; unknown names unchanged."""
    return METRIC_LABELS.get(name, name)


def report_spec(record: RunRecord) -> ReportSpec:
    """The record's ``suite.report`` section, validated (:func:`check_report`, naming the record's job)."""
    suite = record.config.get("suite") if isinstance(record.config, dict) else None
    raw = suite.get("report") if isinstance(suite, dict) else None
    if raw is None:
        return ReportSpec()
    return check_report(raw, f"record {record.job_id}: suite.report")


def has_metric(record: RunRecord, metric: str) -> bool:
    """True when the record holds a result called ``metric``."""
    return record.result(metric) is not None


def row_metrics(records: list[RunRecord], spec: ReportSpec) -> list[str]:
    """The metrics that get a leaderboard row: the headline first, then the other ``metrics`` of a metrics layout
    that any of the row's records has (a protocol may leave optional ones out, e.g. S3DIS's whole-room metrics
    without whole-room evaluation); a metric only some seeds have fails in :func:`bench.aggregate.metric_values`."""
    headline = records[0].metric
    if spec.columns != "metrics":
        return [headline]
    others = [m for m in spec.metrics if m != headline and any(has_metric(r, m) for r in records)]
    return [headline, *others]

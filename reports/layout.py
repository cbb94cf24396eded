"""A suite's table layout (``suite.report``), read from the resolved config that every RunRecord carries.

``record.config["suite"]["report"]`` (see :class:`bench.schema.ReportConfig`):

- ``columns``: ``variants`` (one column per variant, the headline metric) or ``metrics`` (one column per entry of
  ``metrics``, per variant: part segmentation's Cls. / Inst. mIoU, S3DIS's mIoU / mAcc / OA);
- ``metrics``: the metric names of a ``metrics`` layout, the first being the headline; a record's ``final`` holds
  ``<name>_last`` / ``<name>_best`` for each (the headline's are also its plain ``last`` / ``best``);
- ``paper_statistic``: ``max`` (max over seeds of each seed's best epoch) or ``fold_mean`` (mean ± std over folds
  of each fold's best epoch, the few-shot papers').

Records written before ``suite.report`` existed (no such section) get the defaults: variants, [], max.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import ConfigError, DataError
from bench.records import RunRecord

COLUMN_LAYOUTS = ("variants", "metrics")
PAPER_STATISTICS = ("max", "fold_mean")
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
}


@dataclass(frozen=True)
class ReportSpec:
    """The validated ``suite.report`` of one record."""

    columns: str = "variants"
    metrics: tuple[str, ...] = ()
    paper_statistic: str = "max"


def metric_label(name: str) -> str:
    """``inst_miou`` -> ``Inst. mIoU``; unknown names unchanged."""
    return METRIC_LABELS.get(name, name)


def check_report(raw: object, where: str) -> ReportSpec:
    """Validate a ``suite.report`` mapping; ConfigError naming ``<where>.<key>`` and the allowed values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    columns = raw.get("columns", "variants")
    if columns not in COLUMN_LAYOUTS:
        raise ConfigError(f"{where}.columns is {columns!r}; it must be one of {', '.join(COLUMN_LAYOUTS)}")
    statistic = raw.get("paper_statistic", "max")
    if statistic not in PAPER_STATISTICS:
        raise ConfigError(f"{where}.paper_statistic is {statistic!r}; it must be one of {', '.join(PAPER_STATISTICS)}")
    metrics = raw.get("metrics") or []
    if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) and m for m in metrics):
        raise ConfigError(f"{where}.metrics must be a list of metric names, got {metrics!r}")
    if columns == "metrics" and not metrics:
        raise ConfigError(f"{where}.metrics is empty, but columns is 'metrics': name the metric columns "
                          "(the first is the headline)")
    return ReportSpec(str(columns), tuple(metrics), str(statistic))


def report_spec(record: RunRecord) -> ReportSpec:
    """The record's ``suite.report`` section, validated (:func:`check_report`, naming the record's job)."""
    suite = record.config.get("suite") if isinstance(record.config, dict) else None
    raw = suite.get("report") if isinstance(suite, dict) else None
    if raw is None:
        return ReportSpec()
    return check_report(raw, f"record {record.job_id}: suite.report")


def has_metric(record: RunRecord, metric: str) -> bool:
    """True for the headline and for a metric with ``<metric>_last`` or ``<metric>_best`` in ``final``."""
    return metric == record.metric or f"{metric}_last" in record.final or f"{metric}_best" in record.final


def row_metrics(records: list[RunRecord], spec: ReportSpec) -> list[str]:
    """The metrics that get a leaderboard row: the headline first, then the other ``metrics`` of a metrics layout
    that any of the row's records has (a protocol may leave optional ones out, e.g. S3DIS's whole-room metrics
    without ``vote.enabled``); a metric only some seeds have fails in :func:`metric_values`."""
    headline = records[0].metric
    if spec.columns != "metrics":
        return [headline]
    others = [m for m in spec.metrics if m != headline and any(has_metric(r, m) for r in records)]
    return [headline, *others]


def metric_values(record: RunRecord, metric: str) -> tuple[float, float]:
    """(last, best) of ``metric``: the plain ``last`` / ``best`` for the headline, else ``<metric>_last/_best``."""
    if metric == record.metric:
        return float(record.final["last"]), float(record.final["best"])
    keys = (f"{metric}_last", f"{metric}_best")
    values = [record.final.get(k) for k in keys]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v != v for v in values):
        missing = [k for k, v in zip(keys, values, strict=True) if not isinstance(v, (int, float)) or v != v]
        raise DataError(f"record {record.job_id}: suite.report.metrics names {metric!r}, but final lacks a "
                          f"finite {' and '.join(missing)}")
    return float(values[0]), float(values[1])

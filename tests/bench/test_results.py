"""Typed results and records: roles, JSON round trips, and the schema-1 upgrade with its exact role mapping."""

from __future__ import annotations

import json

import pytest

from bench.metrics.base import MIN, MetricSpec
from bench.records import RunRecord, upgrade_v1
from bench.results import HONEST, INFO, PAPER, VOTE, VOTE_REPEATED, JobResult, MetricResult, Statistic


def test_a_statistic_has_a_known_role_and_a_float_value():
    assert Statistic(3, "r", HONEST).value == 3.0
    with pytest.raises(ValueError, match="role"):
        Statistic(1.0, "", "best")
    with pytest.raises(ValueError, match="at least one metric"):
        JobResult([])


def test_metric_result_copies_the_metric_declaration_and_finds_roles():
    result = MetricResult.of(MetricSpec("mmd_cd", MIN, "", 1e3), {"last": Statistic(2e-3, "l", HONEST),
                                                                   "best": Statistic(1e-3, "b", PAPER)})
    assert (result.name, result.direction, result.scale) == ("mmd_cd", "min", 1e3)
    assert result.role(PAPER) == ("best", result.statistics["best"]) and result.value(VOTE) is None
    assert MetricResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_schema_1_upgrade_maps_names_to_roles(make_v1):
    data = make_v1(final={"last": 80.0, "best": 85.0, "best_epoch": 7.0, "vote": 84.0, "vote_best_of_r": 86.0,
                          "vote_repeats": 10.0, "cls_miou_last": 70.0, "cls_miou_best": 72.0},
                   report={"columns": "metrics", "metrics": ["inst_miou", "cls_miou"]}, metric="inst_miou")
    record = RunRecord.from_dict(data)
    head, other = record.results
    roles = {name: s.role for name, s in head.statistics.items()}
    assert roles == {"last": HONEST, "best": PAPER, "best_epoch": INFO, "vote": VOTE, "vote_best_of_r": VOTE_REPEATED,
                     "vote_repeats": INFO}
    assert head.statistics["vote_best_of_r"].repeats == 10 and head.statistics["best"].rule == "rule best"
    assert (other.name, {k: (s.value, s.role) for k, s in other.statistics.items()}) == \
        ("cls_miou", {"last": (70.0, HONEST), "best": (72.0, PAPER)})
    assert record.schema_version == 2 and "final" not in upgrade_v1(data)
    again = RunRecord.from_dict(json.loads(record.to_json()))  # a schema-2 record reads back as itself
    assert again == record and again.flat()["cls_miou_best"] == 72.0 and again.flat()["best"] == 85.0


def test_unknown_schema_version_is_refused(make_v1):
    data = {**make_v1(), "schema_version": 3}
    with pytest.raises(TypeError, match="schema version 3"):
        RunRecord.from_dict(data)


@pytest.fixture
def make_v1():
    def make(final=None, report=None, metric="acc"):
        return {"job_id": "s/v/m/seed0", "sweep_id": "x", "method": "m", "suite": "s", "suite_version": 1,
                "variant": "v", "seed": 0, "protocol": "finetune", "data_kind": "real", "profile": "paper",
                "recipe": "method", "metric": metric, "higher_is_better": True, "epochs": [],
                "final": final or {"last": 1.0, "best": 2.0},
                "selection": {k: f"rule {k}" for k in ("last", "best")},
                "config": {"suite": {"report": report or {}}}, "env": {}, "wall_time_s": 1.0, "schema": 1}
    return make

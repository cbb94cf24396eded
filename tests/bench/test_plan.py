"""The one planner behind bench run, bench tune and bench show: methods per suite, data per variant, profile."""

from __future__ import annotations

import pytest

from bench.api import REPRESENTATION
from bench.config import parse_cli
from bench.errors import ConfigError
from bench.plan import job_spec, plan_suite, select_methods
from bench.pretraining import EncoderSource
from bench.progress import NullProgress
from bench.registry import METHODS


def request(tiny_data_root, *tokens):
    return parse_cli([*tokens, f"data.root={tiny_data_root}", "data.standin_size=tiny", "tracking.enabled=false"])


def test_method_all_is_every_method_the_protocol_accepts(tiny_data_root):
    representation = [m for m in METHODS.names() if REPRESENTATION in METHODS.get(m).capabilities]
    assert select_methods("scanobjectnn", request(tiny_data_root, "suite=scanobjectnn")) == representation
    assert "g3pt" not in representation  # generation only


def test_method_all_leaves_out_methods_a_suite_setting_rules_out(tiny_data_root):
    assert select_methods("scaling", request(tiny_data_root, "suite=scaling")) == ["g3pt"]  # sizes set car.*
    with pytest.raises(ConfigError, match="point_mge cannot run suite=scaling: its suite.sizes set car"):
        select_methods("scaling", request(tiny_data_root, "suite=scaling", "method=point_mge"))


def test_each_variant_is_located_with_its_own_data_set(tiny_data_root):
    notes = []
    plan = plan_suite("svm", request(tiny_data_root, "suite=svm", "method=scratch"), notes.append)
    assert {v: d.dataset for v, d in plan.data.items()} == {"modelnet40": "modelnet40", "objbg": "scanobjectnn"}
    assert plan.profile == "demo" and plan.data_kind == "synthetic" and len(notes) == 2


def test_bench_tune_locates_the_tuned_variants_data_set(tiny_data_root, tmp_path):
    """The drift the planner ended: tune.variant=objbg of suite svm reads ScanObjectNN, not the suite's ModelNet40."""
    from bench.tuning import setup_study

    tokens = ("suite=svm", "method=scratch", "tune.variant=objbg", f"output.dir={tmp_path}")
    study = setup_study(request(tiny_data_root, *tokens), NullProgress())
    assert study.data.dataset == "scanobjectnn" and study.variant == "objbg" and study.profile == "demo"


def test_job_identity_comes_from_one_place(tiny_data_root, tmp_path):
    plan = plan_suite("scanobjectnn", request(tiny_data_root, "suite=scanobjectnn", "method=point_mae"), print)
    cfg = plan.configs["point_mae"]
    job = job_spec(cfg, "hardest", 3, plan.data["hardest"], EncoderSource("cache", data_kind="real"), tmp_path / "w",
                   "sweep", tmp_path / "r")
    assert job.job_id == "scanobjectnn/hardest/point_mae/seed3" and job.kind == "synthetic"
    assert job.workdir == tmp_path / "w" / "scanobjectnn" / f"point_mae-{job.fhash}" / "hardest" / "seed3"
    assert job.path.parent == tmp_path / "r" / "scanobjectnn" / f"point_mae-{job.fhash}"
    assert job.cfg.suite.vote.enabled  # the variant's config (variant_options applied)

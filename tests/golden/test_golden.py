"""Before/after equality: one tiny sweep per protocol, run now, gives the same per-epoch metrics, statistics and
leaderboard numbers as the fixture (tests/golden/sweeps.py; first written at fc8f8aa, before the core refactor, and
rewritten when issue 14 changed defaults on purpose to the authors' behaviour: head and scratch inits, the
Point-MAE decoder init, the pointnet2 FPS origin skip, the float32 patch-embedding BatchNorm; and when issue 16 gave
the ModelNet40 / ShapeNet-55 / ScanObjectNN stand-ins a common bounding-box range, which changed the svm sweep's
numbers only); and the version-1
records written at fc8f8aa still load and report as they did (v1_leaderboard.md: their rendering, regenerated only
when the report changes on purpose)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.records import load_records
from reports.leaderboard import summarize
from reports.render import render_markdown
from tests.golden.sweeps import SWEEPS, run_sweeps

HERE = Path(__file__).parent
BEFORE = json.loads((HERE / "before.json").read_text())
#: torch threads the fixture was written with (torch's default on the 2-core machine): a float sum's order, and so
#: its last bits, depend on it, and an earlier test may have changed the process's setting (trainer.threads=1)
GOLDEN_THREADS = 2


@pytest.fixture(scope="module")
def after(tiny_data_root, tmp_path_factory):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(GOLDEN_THREADS)
    yield tmp_path_factory.mktemp("golden")
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("sweep", sorted(SWEEPS))
def test_sweep_gives_the_numbers_it_gave_before_the_refactor(sweep, tiny_data_root, after):
    now = run_sweeps(tiny_data_root, after, names=[sweep])[sweep]
    before = BEFORE[sweep]
    assert now["leaderboard"] == before["leaderboard"]
    assert now["pretrain_hashes"] == before["pretrain_hashes"]  # cached pre-trainings stay valid
    records = {r.job_id: r for r in load_records(after / sweep / "records")}
    assert sorted(records) == sorted(before["jobs"])
    for job_id, old in before["jobs"].items():
        assert now["jobs"][job_id]["epochs"] == old["epochs"], job_id
        flat = records[job_id].flat()  # schema-1 names: <stat> for the headline, <metric>_<stat>
        assert {k: flat.get(k) for k in old["stats"]} == old["stats"], job_id


def test_version_1_records_load_and_report_as_before():
    records = load_records(HERE / "v1_records")
    assert {r.schema_version for r in records} == {2} and len(records) == 9
    assert render_markdown(summarize(records)) == (HERE / "v1_leaderboard.md").read_text()
    raw = {json.loads(p.read_text())["job_id"]: json.loads(p.read_text()) for p in (HERE / "v1_records").glob("*.json")}
    for record in records:
        assert {k: record.flat()[k] for k in raw[record.job_id]["final"]} == raw[record.job_id]["final"]

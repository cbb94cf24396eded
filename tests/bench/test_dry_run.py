"""``bench run ... --dry-run``: the plan without running or writing anything. Jobs listed (done when their record
exists), pre-trainings marked cached exactly when the run would reuse them (the stage hashes of encoder_source,
side data included), the data found, a time estimate from earlier records; nothing written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cli import main
from tests.bench.kinds_support import STAGES_YAML

pytestmark = pytest.mark.slow


def snapshot(*folders: Path) -> dict[str, int]:
    """Every file and folder below ``folders`` with its mtime: a dry run must leave it as it was."""
    out = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(root) / name
                out[str(path)] = path.stat().st_mtime_ns
    return out


def dry(capsys, *args: str) -> list[str]:
    assert main(["run", *args, "--dry-run"]) == 0
    return capsys.readouterr().out.splitlines()


def test_dry_run_on_nothing_lists_the_jobs_and_the_missing_data_and_writes_nothing(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "runs"
    lines = dry(capsys, "suite=scanobjectnn", "method=scratch,point_mae", "seeds=[0,1]", "executor.workers=2",
                f"data.root={data}", f"output.dir={out}")
    assert not data.exists() and not out.exists() and not list(tmp_path.iterdir())
    assert lines[0] == "dry run: nothing is run or written."
    assert lines[1] == f"scanobjectnn: profile demo, synthetic data, output {out.resolve()}"
    for variant in ("objbg", "objonly", "hardest"):
        assert f"    {variant:<12} missing   {data / 'synthetic'}" in lines
    assert "    scratch      none      (no pre-training)" in lines
    assert "    point_mae    to run" in lines
    assert "  jobs: 12 (0 done, 12 to run)" in lines
    assert "    scanobjectnn/hardest/point_mae/seed1  to run" in lines
    assert "    scanobjectnn/objbg/scratch/seed0      to run" in lines  # aligned to the longest id
    assert any(line.startswith("  notice: No shapenet55 data found") for line in lines)
    assert lines[-1] == "  time: no earlier record of these jobs: no estimate for 12 job(s); 1 pre-training(s) to " \
        "run, no estimate"


def toy_args(tmp_path: Path, data_root: Path, spread_epochs: int) -> list[str]:
    stages = tmp_path / f"stages{spread_epochs}.yaml"
    stages.write_text(STAGES_YAML % spread_epochs)
    return ["suite=toy_generation", "method=toy_generator", "seeds=[0,1]", "data.standin_size=tiny",
            f"data.root={data_root}", f"output.dir={tmp_path / 'runs'}", "pretrain.trainer.batch_size=4",
            "executor.workers=1", f"+overrides={stages}", "tracking.enabled=false"]


def test_dry_run_marks_done_jobs_and_cached_stages_as_the_run_reuses_them(toys, tmp_path, tiny_data_root, capsys):
    args = toy_args(tmp_path, tiny_data_root, 1)
    before = dry(capsys, *args)
    assert "    toy_generator to run    stages template, spread" in before
    assert "  jobs: 2 (0 done, 2 to run)" in before
    assert main(["--quiet", "run", *args]) == 0
    pretrain = sorted(p.name for p in (tmp_path / "runs" / "pretrain").iterdir())
    (tmp_path / "runs" / "records" / "toy_generation").glob("*/*seed1.json").__next__().unlink()
    untouched = snapshot(tmp_path, tiny_data_root)

    lines = dry(capsys, *args)
    cached = next(line for line in lines if line.startswith("    toy_generator"))
    assert cached.split()[1] == "cached" and Path(cached.split()[2]).is_file()
    assert Path(cached.split()[2]).parent.name in pretrain
    assert "    toy_generation/default/toy_generator/seed0  done" in lines
    seed1 = next(line for line in lines if "toy_generator/seed1" in line)
    assert seed1.split()[1:3] == ["to", "run"] and seed1.split()[3].startswith("~")  # seed 0's wall time
    assert "  jobs: 2 (1 done, 1 to run)" in lines
    assert lines[-1].startswith("  time: ~") and "(1 of 1 job(s) estimated from earlier records)" in lines[-1]

    changed = dry(capsys, *toy_args(tmp_path, tiny_data_root, 2))  # stage two changed: only it would run
    (planned,) = [line for line in changed if line.startswith("    toy_generator")]
    assert planned.startswith("    toy_generator to run    stages spread (~") and planned.endswith(" as before)")
    assert "  jobs: 2 (0 done, 2 to run)" in changed
    after = snapshot(tmp_path, tiny_data_root)
    after.pop(str(tmp_path / "stages2.yaml"))  # written by this test, not by the dry run
    assert after == untouched


def test_a_cached_pretraining_is_announced_once_per_run(toys, tmp_path, tiny_data_root, capsys):
    args = toy_args(tmp_path, tiny_data_root, 1)
    assert main(["run", *args]) == 0
    capsys.readouterr()
    assert main(["run", *args, "seeds=[0,1,2]"]) == 0
    err = capsys.readouterr().err
    cached = [line for line in err.splitlines() if "pre-training toy_generator: cached, " in line]
    assert len(cached) == 1 and cached[0].endswith("pretrain.pth")
    assert len([line for line in err.splitlines() if "No shapenet55 data found" in line]) == 1

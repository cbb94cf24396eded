"""Every user mistake through the CLI: one paragraph naming the key, file or job, the documented exit code
(bench.errors), no traceback without ``--debug``, and nothing half-written (issue 15 item 4). The NaN loss, the dead
pool worker and Ctrl-C are in test_worker_errors.py and test_interrupt.py; concurrent processes in
test_concurrent_runs.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.io import atomic_write_many, check_output_links

RUN = ["run", "suite=scanobjectnn", "method=scratch", "suite.variants=[objbg]"]


def bench(*args: str) -> int:
    return main(["--quiet", *args])


def assert_one_paragraph(err: str, needle: str) -> None:
    assert needle in err, err
    assert "Traceback" not in err and err.startswith("bench: error: "), err


@pytest.mark.parametrize(
    ("extra", "code", "needle"),
    [
        (["trainer.lr=-1"], 2, "trainer.lr=-1"),
        (["trainer.batch_size=0"], 2, "trainer.batch_size=0"),
        (["trainer.epochs=0"], 2, "trainer.epochs=0"),
        (["trainer.lr=[1,"], 2, "trainer.lr=[1,: the value is not valid YAML"),
        (["trainer.lr='1"], 2, "trainer.lr='1: the value is not valid YAML"),
        (["trainer.lr=${nowhere}"], 2, "(key trainer.lr): Interpolation key 'nowhere' not found"),
        (["seeds=[0,0]"], 2, "seeds=[0, 0]: 0 given twice"),
    ],
)
def test_bad_values_fail_before_any_work(tiny_data_root, tiny_run, tmp_path, capsys, extra, code, needle):
    out = tmp_path / "runs"
    assert bench(*RUN, *tiny_run, *extra, f"data.root={tiny_data_root}", f"output.dir={out}") == code
    assert_one_paragraph(capsys.readouterr().err, needle)
    assert not out.exists()  # no records, no MLflow store, no work folder


def test_data_root_that_is_a_file(tmp_path, tiny_run, capsys):
    afile = tmp_path / "data.txt"
    afile.write_text("not a folder")
    assert bench(*RUN, *tiny_run, f"data.root={afile}", f"output.dir={tmp_path / 'runs'}") == 3
    assert_one_paragraph(capsys.readouterr().err, f"data.root={afile} is a file, not a folder")
    assert not (tmp_path / "runs").exists()


def test_tune_study_of_dots_only(tiny_data_root, tiny_run, tmp_path, capsys):
    args = ["tune", "suite=scanobjectnn", "method=scratch", "tune.study=..", *tiny_run,
            f"data.root={tiny_data_root}", f"output.dir={tmp_path / 'runs'}", "tracking.enabled=false"]
    assert bench(*args) == 2
    assert_one_paragraph(capsys.readouterr().err, "tune.study='..': a study name needs")
    assert not (tmp_path / "runs" / "summary.json").exists()


def test_report_rejects_an_unknown_key(tmp_path, capsys):
    assert bench("report", f"output.dri={tmp_path}") == 2
    assert_one_paragraph(capsys.readouterr().err, 'unknown key "output.dri"')


def test_unsafe_checkpoint_is_refused_without_torch_advice(tiny_data_root, tiny_run, tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"base_model": Payload()}, evil)
    args = ["run", "suite=scanobjectnn", "method=point_mae", f"method.ckpt={evil}", "suite.variants=[objbg]",
            *tiny_run, f"data.root={tiny_data_root}", f"output.dir={tmp_path / 'runs'}", "tracking.enabled=false"]
    assert bench(*args) == 4
    err = capsys.readouterr().err
    assert_one_paragraph(err, "not a checkpoint this harness can load safely")
    assert "posix.system" in err and "weights_only` set to `False` will likely succeed" not in err
    assert not list((tmp_path / "runs").glob("records/**/*.json"))


def test_modelnet_txt_errors_count_lines_from_one(tmp_path):
    from bench.data.modelnet40 import read_shape_txt
    from bench.errors import DataError

    bad_value = tmp_path / "a.txt"
    bad_value.write_text("1,2,3,4,5,6\n1,2,x,4,5,6\n")
    short_row = tmp_path / "b.txt"
    short_row.write_text("1,2,3,4,5,6\n1,2,3,4,5,6\n1,2,3\n")
    with pytest.raises(DataError, match="line 2 is not numbers: '1,2,x,4,5,6'"):
        read_shape_txt(bad_value)
    with pytest.raises(DataError, match="line 3 has 3 values where the lines before have 6"):
        read_shape_txt(short_row)


# --- planted symlinks ---------------------------------------------------------------------------------------------


def test_linked_sub_folder_outside_the_output_is_refused(tiny_data_root, tiny_run, tmp_path, capsys):
    out, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "leaderboard").symlink_to(elsewhere, target_is_directory=True)
    args = [*RUN, *tiny_run, f"data.root={tiny_data_root}", f"output.dir={out}", "tracking.enabled=false"]
    assert bench(*args) == 5
    assert_one_paragraph(capsys.readouterr().err, f"{out / 'leaderboard'} is a symlink to {elsewhere}")
    assert not list(elsewhere.iterdir()) and not (out / "records").exists()
    assert bench("report", f"output.dir={out}") == 5  # bench report refuses it too
    assert not list(elsewhere.iterdir())
    assert bench(*args, "output.allow_links=true") == 0  # asked for: the leaderboard goes through the link
    assert (elsewhere / "leaderboard.md").is_file()


def test_links_inside_the_output_and_file_links_are_fine(tmp_path):
    out = tmp_path / "runs"
    (out / "records").mkdir(parents=True)
    (out / "alias").symlink_to(out / "records", target_is_directory=True)
    (out / "note.txt").symlink_to(tmp_path / "outside.txt")  # a file link is replaced by the writer, not followed
    check_output_links(out)
    (out / "records" / "deep").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(Exception, match="deep is a symlink to"):
        check_output_links(out)
    check_output_links(out, allow=True)


# --- a full disk ----------------------------------------------------------------------------------------------------


def test_leaderboard_formats_are_written_all_or_none(tmp_path, monkeypatch):
    import bench.io as io

    paths = {tmp_path / f"leaderboard.{fmt}": f"new {fmt}".encode() for fmt in ("md", "csv", "html", "tex")}
    for path in paths:
        path.write_text("old")
    real_seal, calls = io._seal, []

    def seal_until_full(tmp: Path) -> None:
        calls.append(tmp)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_seal(tmp)

    monkeypatch.setattr(io, "_seal", seal_until_full)
    with pytest.raises(Exception, match="no space left on the device while writing"):
        atomic_write_many(paths)
    assert {p.read_text() for p in paths} == {"old"}  # not one format replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp file left


def _can_mount_tmpfs(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {folder}"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("tracking", ["false", "true"])
def test_full_disk_is_one_error_with_exit_5(tiny_data_root, tiny_run, tmp_path, tracking):
    """A 100 KiB tmpfs (a user and mount namespace: no root needed where unprivileged namespaces are allowed) as
    output.dir: the checkpoint (tracking off) or the MLflow store (tracking on) fills it."""
    full = tmp_path / "full"
    full.mkdir()
    if not _can_mount_tmpfs(full):
        pytest.skip("cannot mount a small tmpfs here (no unshare, or unprivileged user namespaces are disabled)")
    command = [sys.executable, "-m", "bench.cli", "--quiet", *RUN, *tiny_run, f"data.root={tiny_data_root}",
               f"output.dir={full / 'runs'}", f"tracking.enabled={tracking}"]
    script = f"mount -t tmpfs -o size=100k tmpfs {full} && exec {' '.join(command)}"
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 5, done.stderr
    assert "no space left on the device" in done.stderr and "Traceback" not in done.stderr

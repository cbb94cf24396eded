"""The CLI documents itself and says what is wrong in words: ``bench run --help`` covers the grammar, selectors,
overrides, examples and outputs; a wrong value is a bad value (not a bad key); choices print as words; the start-up
of help and of selector errors imports none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.cli import main
from bench.config import suite_names


def help_text(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_has_no_leftover_markup_and_names_the_exit_codes(capsys):
    text = help_text(capsys)
    assert "``" not in text
    assert "bench: run, tune, show, ls, report, score generation, data {check, synth, prepare}." in text
    assert "2 config error; 3 data error" in text and "bench <command> --help" in text


def test_run_help_documents_grammar_selectors_overrides_examples_and_outputs(capsys):
    text = help_text(capsys, "run")
    assert "usage: bench run [-h] [--debug] [--quiet] [--dry-run] [key=value ...]" in text
    assert "``" not in text
    for needle in ('arguments are key=value, no spaces around "="', "suite=NAME[,NAME...]",
                   "method=all|NAME[,NAME]    default all", "profile=paper|quick|demo", "recipe=method|shared",
                   "default method", "seeds=[0,1,2]", "seeds=0,1 is an error", "+overrides=FILE.yaml", "~KEY",
                   "pretrain.stages.0.trainer.epochs=5", "layers, later wins", "examples:",
                   "bench run suite=scanobjectnn --dry-run", "records/", "leaderboard/", "mlflow.db",
                   "pretrain/<method>-<hash>/", "work/", "data.root (default ./data, or $BENCH_DATA)"):
        assert needle in text, needle
    suites = " ".join(text.split())  # the suite list is wrapped over lines
    assert ", ".join(suite_names()) in suites
    assert max(len(line) for line in text.splitlines()) <= 120


@pytest.mark.parametrize(
    ("token", "needle", "absent"),
    [
        ("trainer.epochs=abc", 'bad value for trainer.epochs: "abc" is not an integer.', "bad config key"),
        ("trainer.lr=fast", 'bad value for trainer.lr: "fast" is not a number.', "bad config key"),
        ("tracking.enabled=maybe", 'bad value for tracking.enabled: "maybe" is not true or false.', "bad config key"),
        ("seeds=0,1", 'bad value for seeds: "0,1" is not a list. Did you mean seeds=[0,1]?', "AnyNode"),
        ("suite.variants=objbg,hardest", "Did you mean suite.variants=[objbg,hardest]?", "AnyNode"),
        ("profile=fast", "Choose from paper, quick, demo.", "('paper'"),
        ("data.source=nowhere", "data.source must be one of auto, real, synthetic", "('auto'"),
        ("trainer.epoch=3", 'bad config key "trainer.epoch"', "bad value"),
    ],
)
def test_config_errors_say_what_is_wrong_in_words(tmp_path, capsys, token, needle, absent):
    args = ["run", "suite=scanobjectnn", "method=scratch", token, f"data.root={tmp_path / 'data'}",
            f"output.dir={tmp_path / 'runs'}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and absent not in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written before the error


HEAVY = ("torch", "mlflow", "optuna", "matplotlib", "h5py", "sklearn", "scipy")
PROBE = """
import sys
from bench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print(code, " ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["run", "suite=nope"],
                                  ["run", "suite=scanobjectnn", "profile=fast"], ["run", "suite=scanobjectnn",
                                                                                  "recipe=mine"]])
def test_help_and_selector_errors_import_no_heavy_library(args):
    probe = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True,
                           timeout=120)
    code, _, imported = probe.stdout.strip().splitlines()[-1].partition(" ")
    assert code in ("0", "2") and imported == "", f"{args}: imported {imported}"

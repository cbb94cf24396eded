"""Start-up time of the CLI: ``bench --help``, ``bench run --help`` and two config errors, each a fresh process
(``pytest benchmarks/test_startup.py --benchmark-enable -s``; ``tox -e bench``).

What runs: the installed ``bench`` script beside this interpreter (``python -m bench.cli`` when there is none) with
each command line of :data:`COMMANDS`, and ``python -c pass`` as the floor no command can go under. They run
interleaved, one of each per round, :data:`ROUNDS` rounds (``BENCH_STARTUP_ROUNDS``), so machine load hits them
alike. Printed and in extra_info: per command its fastest wall time, its median CPU time (user + system of the
child) and its wall time over the floor's. The help and the selector error (an unknown suite) import no plug-in
and none of torch, mlflow, optuna, matplotlib; the bad value (``trainer.epochs=abc``) is found while the config
resolves, after the plug-ins (and so torch) are imported. No timing is asserted.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

ROUNDS = int(os.environ.get("BENCH_STARTUP_ROUNDS", "5"))
SCRIPT = Path(sys.executable).with_name("bench")
BENCH = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bench.cli"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "bench --help": [*BENCH, "--help"],
    "bench run --help": [*BENCH, "run", "--help"],
    "bench run suite=nope (config error)": [*BENCH, "run", "suite=nope"],
    "bench run ... trainer.epochs=abc (config error)": [*BENCH, "run", "suite=scanobjectnn", "method=scratch",
                                                        "trainer.epochs=abc"],
}


def timed(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of one run of ``argv``; cpu is the child's user + system time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run(argv, capture_output=True, cwd=cwd, check=False)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(cwd: Path) -> dict[str, tuple[float, float]]:
    """Per command: (fastest wall, median cpu) over the interleaved rounds."""
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(ROUNDS):
        for name, argv in COMMANDS.items():
            wall, cpu = timed(argv, cwd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {name: (min(walls[name]), statistics.median(cpus[name])) for name in COMMANDS}


def test_cli_startup_times(benchmark: BenchmarkFixture, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    benchmark.group = "cli start-up"
    figures = benchmark.pedantic(measure, args=(tmp_path,), rounds=1, iterations=1)
    floor = figures["python -c pass"][0]
    for name, (wall, cpu) in figures.items():
        benchmark.extra_info[f"{name} wall_s"] = wall
        benchmark.extra_info[f"{name} cpu_s"] = cpu
    with capsys.disabled():
        print(f"\nCLI start-up over {ROUNDS} interleaved round(s) ({' '.join(BENCH)}):")
        for name, (wall, cpu) in figures.items():
            print(f"  {name:<48} wall {wall:6.2f} s (fastest)  cpu {cpu:6.2f} s (median)  "
                  f"x{wall / max(floor, 1e-9):.1f} of python -c pass")

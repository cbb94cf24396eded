"""``bench``: run, tune, show, ls, report, score generation, data {check, synth, prepare}.

Arguments after the sub-command are ``key=value`` (``suite=scanobjectnn method=all trainer.epochs=5``).
Exit codes: 0 ok; 2 config error; 3 data error; 4 checkpoint error; 5 output error; 1 anything unexpected.
A user error prints one paragraph and no traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from bench.errors import BenchError
from bench.records import set_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    # the same flags after the sub-command (bench run ... --quiet); SUPPRESS keeps the top-level value otherwise
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    flags.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress display")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[flags], help="run a sweep: bench run suite=scanobjectnn method=all ...")
    run.add_argument("args", nargs="*")
    tune = sub.add_parser("tune", parents=[flags], help="Optuna study: bench tune suite=... method=... tune.trials=N")
    tune.add_argument("args", nargs="*")
    show = sub.add_parser("show", parents=[flags], help="print the resolved config: bench show suite=... method=...")
    show.add_argument("args", nargs="*")
    ls = sub.add_parser("ls", parents=[flags], help="list methods, suites, profiles and the data found")
    ls.add_argument("args", nargs="*", help="data.root=... to look elsewhere")
    report = sub.add_parser("report", parents=[flags], help="write the leaderboard from the run records")
    report.add_argument("args", nargs="*", help="output.dir=... (default ./runs); tracking.uri=... reads MLflow "
                        "(the run_record.json of job runs; tracking.experiment=..., default pointbench)")
    score = sub.add_parser("score", parents=[flags], help="score samples made elsewhere into a run record: bench "
                           "score generation samples=<file.npy|folder> reference=<variant|file.npy>")
    score.add_argument("kind", choices=["generation"])
    score.add_argument("args", nargs="*", help="samples=... reference=... [normalisation=global|box] [name=...] "
                       "[data.root=...] [output.dir=...] [emd_cost=...] (bench/score_command.py)")
    data = sub.add_parser("data", parents=[flags], help="check, synth or prepare data sets")
    data.add_argument("action", choices=["check", "synth", "prepare"])
    data.add_argument("args", nargs="*", help="data.root=..., datasets=a,b, size=tiny|demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_command(shlex.join(["bench", *(sys.argv[1:] if argv is None else argv)]))
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        handler = {"run": cmd_run, "show": cmd_show, "ls": cmd_ls, "report": cmd_report, "data": cmd_data,
                   "tune": cmd_tune, "score": cmd_score}
        return handler[args.command](args)
    except BenchError as err:
        if args.debug:
            raise
        print(f"bench: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import parse_cli
    from bench.progress import make_progress
    from bench.records import load_records
    from bench.runner import run
    from bench.trainer import is_main_process
    from reports.leaderboard import summarize
    from reports.render import render_markdown, write_leaderboard

    request = parse_cli(args.args)
    progress = make_progress(args.quiet)
    outcome = run(request, progress)
    if not is_main_process():  # a torchrun rank other than 0: rank 0 reports
        return 0
    out = outcome.output_dir
    paths = write_leaderboard(load_records(out / "records"), out / "leaderboard", out / "tuning")
    if not args.quiet:
        print(render_markdown(summarize(outcome.records)))
    print(f"ran {outcome.ran} job(s), {outcome.skipped} already done")
    print(f"leaderboard: {paths.get('md')} (also {_others(paths)})")
    if outcome.tracking_uri:
        print(f"mlflow: mlflow ui --backend-store-uri {outcome.tracking_uri}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """``bench tune``: run (or resume) the study; print the trial table and where its outputs are."""
    from bench.config import parse_cli
    from bench.progress import make_progress
    from bench.tuning import tune
    from bench.tuning_report import trial_table

    outcome = tune(parse_cli(args.args), make_progress(args.quiet))
    print(trial_table(outcome.summary))
    print(f"ran {outcome.ran} trial(s); study summary: {outcome.summary_path}")
    if outcome.summary["overrides_file"]:
        print(f"best config: bench run ... +overrides={outcome.summary['overrides_file']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``bench show``: the configs ``bench run`` would resolve (the same planner: methods, data, profile)."""
    from bench.config import dump_yaml, parse_cli
    from bench.plan import plan_suite

    request = parse_cli(args.args)
    for suite in request.suites:
        plan = plan_suite(suite, request, note=lambda line: print(f"# {line}"), write=False)
        for method in plan.methods:
            print(f"# suite={suite} method={method} profile={plan.profile} recipe={request.recipe}")
            print(dump_yaml(plan.configs[method]))
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from bench.config import suite_names
    from bench.data.check import check_data
    from bench.plan import runnable_suites
    from bench.registry import METHODS, load_plugins
    from bench.schema import PROFILES

    load_plugins()
    root = Path(_kv(args.args).get("data.root", _default_root()))
    runs = runnable_suites()
    print("methods (capabilities; suites it can run):")
    for name in METHODS.names():
        caps = ", ".join(sorted(METHODS.get(name).capabilities))
        print(f"  {name:<14} {caps}; {', '.join(runs[name]) or 'none'}")
    print("suites:   " + ", ".join(suite_names()))
    print("profiles: " + ", ".join(PROFILES))
    for label, folder in (("data", root), ("synthetic stand-in", root / "synthetic")):
        print(f"{label} under {folder}:")
        for status in check_data(folder):
            state = "present" if status.present else f"missing ({len(status.missing)} file(s))"
            print(f"  {status.dataset}/{status.variant}: {state}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from reports.leaderboard import summarize
    from reports.render import render_markdown, write_leaderboard
    from reports.sources import gather_records

    options = _kv(args.args)
    output = Path(options.get("output.dir", "./runs"))
    records = gather_records(output, options.get("tracking.uri"), options.get("tracking.experiment", "pointbench"))
    paths = write_leaderboard(records, output / "leaderboard", tuning_dir=output / "tuning")
    if not args.quiet:
        print(render_markdown(summarize(records)))
    print(f"leaderboard: {paths.get('md')} (also {_others(paths)})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """``bench score generation``: score samples made elsewhere against a reference set; one RunRecord."""
    from bench.score_command import parse_score_options, score_generation

    options = parse_score_options(_kv(args.args), _default_root())
    record, path = score_generation(options, note=print)
    ref = record.details["reference"]
    print(f"{record.method} on {record.suite}/{record.variant} ({record.data_kind} reference, {ref['size']} clouds x "
          f"{ref['points']} points, normalisation {options.normalisation}):")
    print("\n".join(score_lines(record)))
    print(f"record: {path}")
    print(f"leaderboard: bench report output.dir={options.output_dir}")
    return 0


def score_lines(record) -> list[str]:
    """One printable line per result: label, value at its display scale and unit, direction."""
    import math

    from bench.results import HONEST
    from reports.layout import metric_label

    lines = []
    for result in record.results:
        value = result.value(HONEST)
        shown = "nan" if value is None or not math.isfinite(value) else f"{value * result.scale:.2f}"
        scale = f" (x{result.scale:g})" if result.scale != 1.0 else ""
        lines.append(f"  {metric_label(result.name):<10} {shown} {result.unit}{scale}  [{result.direction}]")
    return lines


def cmd_data(args: argparse.Namespace) -> int:
    from bench.data.check import check_data

    names = [a for a in args.args if "=" not in a] if args.action == "prepare" else []  # bench data prepare fewshot
    options = _kv([a for a in args.args if a not in names])
    root = Path(options.get("data.root", _default_root()))
    if args.action == "synth":
        from bench.data.synthetic import write_standin

        datasets = options["datasets"].split(",") if "datasets" in options else None
        written = write_standin(root / "synthetic", datasets, size=options.get("size", "demo"))
        for name, paths in written.items():
            print(f"{name}: {len(paths)} file(s) under {root / 'synthetic'}")
        return 0
    if args.action == "prepare":
        return _prepare(root, options, names)
    for status in check_data(root):
        counts = f" (train {status.n_train}, test {status.n_test})" if status.present else ""
        print(f"{status.dataset}/{status.variant}: {'present' if status.present else 'MISSING'}{counts}")
        for path in status.missing:
            print(f"    missing: {path}")
        for problem in status.problems:
            print(f"    note: {problem}")
    return 0


def _prepare(root: Path, options: dict[str, str], names: list[str] | tuple[str, ...] = ()) -> int:
    """``bench data prepare [name ...] [key=value ...]``: run the registered prepare steps (``PREPARERS``, see
    bench.data.prepare) in the order given, ``modelnet40`` (the ``.dat`` caches) when none is named; ``fewshot``
    draws the few-shot fold pickles (``seed=0``). An unknown name fails before any step runs."""
    from bench.data.prepare import resolve_steps, summary_lines

    steps = resolve_steps(names)
    step_options = {key: value for key, value in options.items() if key != "data.root"}
    for step in steps:
        for line in summary_lines(step, step(root, step_options)):
            print(line)
    return 0


def _kv(tokens: list[str]) -> dict[str, str]:
    out = {}
    for token in tokens:
        if "=" not in token:
            raise BenchError(f'cannot parse "{token}": arguments are key=value.')
        key, value = token.split("=", 1)
        out[key] = value
    return out


def _default_root() -> str:
    import os

    return os.environ.get("BENCH_DATA", "./data")


def _others(paths: dict[str, Path]) -> str:
    return ", ".join(str(p) for k, p in paths.items() if k != "md")


if __name__ == "__main__":
    sys.exit(main())

"""``bench``: run, tune, show, ls, report, score generation, data {check, synth, prepare}.

Arguments after the sub-command are ``key=value`` (``suite=scanobjectnn method=all trainer.epochs=5``).
Exit codes (:mod:`bench.errors`): 0 ok; 2 config error; 3 data error; 4 checkpoint error; 5 output error (a full
disk too); 6 training diverged (a non-finite loss); 7 a worker process died; 130 interrupted; 1 anything
unexpected (a bug: the traceback is shown).
A user error prints one paragraph and no traceback (``--debug`` shows it). ``bench run --help`` documents the
grammar, selectors, overrides and outputs; ``bench run ... --dry-run`` prints the plan (:func:`bench.plan.dry_run`).
Start-up: only argparse and :mod:`bench.errors` at import; each command imports what it needs, after its arguments
parse, so help and selector errors never import torch (``benchmarks/test_startup.py`` times them).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from bench.errors import INTERRUPTED_EXIT, BenchError

DESCRIPTION = "bench: run, tune, show, ls, report, score generation, data {check, synth, prepare}."
EPILOG = """arguments after the sub-command are key=value (bench run suite=scanobjectnn method=all trainer.epochs=5);
bench <command> --help tells more.
exit codes: 0 ok; 2 config error; 3 data error; 4 checkpoint error; 5 output error (a full disk too);
6 training diverged; 7 a worker process died; 130 interrupted (Ctrl-C); 1 a bug (the traceback is shown)."""
RUN_DESCRIPTION = """Run a sweep: every method x variant x seed of each suite, one run record per job (and an MLflow
run), then the leaderboard. A job whose record exists is skipped: the same command again resumes a sweep."""
RUN_EPILOG = """arguments are key=value, no spaces around "="; a value is read as YAML (5, 1e-4, true, [0,1]).

selectors:
  suite=NAME[,NAME...]      required; one of:
{suites}
  method=all|NAME[,NAME]    default all: every method whose capabilities the suite's protocol needs
                            (bench ls lists them); naming one that lacks them is an error
  {profile:<26}default: paper when the data is real, demo on the synthetic stand-in
  recipe=method|shared      default method (each method's own recipe); shared: one common recipe
  seeds=[0,1,2]             a list, in brackets (seeds=0,1 is an error)

overrides:
  KEY=VALUE                 any key of the resolved config (bench show prints it): trainer.epochs=50,
                            trainer.lr=1e-4, data.root=/data, output.dir=/runs, executor.workers=2,
                            tracking.uri=http://host:5000; a list element by its index:
                            pretrain.stages.0.trainer.epochs=5
  +overrides=FILE.yaml      a YAML mapping of config keys (bench tune writes best_overrides.yaml)
  ~KEY                      remove a key of a free-form mapping (~tune.space) before the KEY=VALUE ones
  layers, later wins: schema defaults < suites/<suite>.yaml < methods/configs/<method>.yaml < its
  recipes.<suite> (recipe=method) < bench/profiles/<profile>.yaml < the suite's and the method's
  profiles.<profile> < +overrides files < ~KEY < KEY=VALUE. Unknown keys and values of the wrong type are
  errors before any work starts.

examples:
  bench run suite=scanobjectnn                        every method, variant and seed; profile from the data
  bench run suite=scanobjectnn method=scratch,point_mae seeds=[0,1] trainer.epochs=50 profile=quick
  bench run suite=modelnet40 method=point_mae method.ckpt=/path/pretrain.pth     the authors' checkpoint
  bench run suite=scanobjectnn method=point_mae +overrides=runs/tuning/<study>/best_overrides.yaml
  bench run suite=scanobjectnn --dry-run              the plan: jobs, done, cached, data, time

outputs, under output.dir (default ./runs):
  records/                  one run record (JSON) per job; the leaderboard is made from them
  leaderboard/              leaderboard.md, .csv, .tex, .html
  mlflow.db, mlartifacts/   the MLflow store (tracking.uri=... for another, tracking.enabled=false for none)
  pretrain/<method>-<hash>/ pre-training checkpoints, reused while the pre-training config is the same
  work/                     per-job checkpoints (last.pt resumes an interrupted job, best.pt)
data: data.root (default ./data, or $BENCH_DATA); without the real files the synthetic stand-in under
<data.root>/synthetic is written and used, and every result says so."""


class CommandParser(argparse.ArgumentParser):
    """A sub-command's parser whose epilog is made only when its help is shown (``epilog_fn``): listing the suites
    reads the config package, which the other commands' start-up need not pay for."""

    def __init__(self, *args, epilog_fn=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_fn = epilog_fn

    def format_help(self) -> str:
        if self.epilog_fn is not None:
            self.epilog = self.epilog_fn()
        return super().format_help()


def _run_epilog() -> str:
    import textwrap

    from bench.config import suite_names
    from bench.schema import PROFILES

    suites = textwrap.fill(", ".join(suite_names()), width=110, initial_indent=" " * 28, subsequent_indent=" " * 28)
    return RUN_EPILOG.format(suites=suites, profile="profile=" + "|".join(PROFILES))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    # the same flags after the sub-command (bench run ... --quiet); SUPPRESS keeps the top-level value otherwise
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    flags.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress display")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    run = sub.add_parser("run", parents=[flags], help="run a sweep: bench run suite=scanobjectnn method=all ...",
                         description=RUN_DESCRIPTION, epilog_fn=_run_epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--dry-run", action="store_true", help="print the plan (jobs, which are done, cached "
                     "pre-trainings, the data found, a time estimate from earlier records); run and write nothing")
    run.add_argument("args", nargs="*", metavar="key=value", help="selectors and config overrides (below)")
    tune = sub.add_parser("tune", parents=[flags], help="Optuna study: bench tune suite=... method=... tune.trials=N")
    tune.add_argument("args", nargs="*", metavar="key=value", help="the selectors and overrides of bench run (bench "
                      "run --help) and tune.* (tune.trials, tune.space, tune.metric; bench/tuning.py); the study goes "
                      "to <output.dir>/tuning/<study>/")
    show = sub.add_parser("show", parents=[flags], help="print the resolved config: bench show suite=... method=...")
    show.add_argument("args", nargs="*", metavar="key=value", help="the selectors and overrides of bench run "
                      "(bench run --help)")
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
    from bench.records import set_command

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
        return INTERRUPTED_EXIT
    except Exception as err:  # a full disk surfaces through many libraries (torch, SQLite, pandas)
        from bench.io import is_out_of_space

        if args.debug or not is_out_of_space(err):
            raise
        print(f"bench: error: no space left on the device ({type(err).__name__}: {str(err).splitlines()[0]}). "
              "Free some space (or set output.dir to another disk) and run the same command again: finished jobs "
              "are kept and interrupted ones resume.", file=sys.stderr)
        return 5


def cmd_run(args: argparse.Namespace) -> int:
    """``bench run``: the sweep (or, ``--dry-run``, its plan); the heavy imports come after the arguments parse."""
    from bench.config import parse_cli

    request = parse_cli(args.args)
    if args.dry_run:
        from bench.plan import dry_run, dry_run_lines

        print("\n".join(dry_run_lines(dry_run(request))))
        return 0
    from bench.progress import make_progress
    from bench.records import load_records
    from bench.runner import run
    from bench.trainer import is_main_process

    progress = make_progress(args.quiet)
    try:
        outcome = run(request, progress)  # a bad config value fails in here, before the reports are imported
    finally:
        progress.close()
    if not is_main_process():  # a torchrun rank other than 0: rank 0 reports
        return 0
    from reports.leaderboard import summarize
    from reports.render import render_markdown, write_leaderboard

    out = outcome.output_dir
    paths = write_leaderboard(load_records(out / "records"), out / "leaderboard", out / "tuning")
    outcome.log_leaderboard(paths)  # the files as artifacts of the sweep run (nothing when tracking is off)
    if not args.quiet:
        print(render_markdown(summarize(outcome.records)))
    others = f", {outcome.by_others} finished by another process" if outcome.by_others else ""
    print(f"ran {outcome.ran} job(s), {outcome.skipped} already done{others}")
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

    progress = make_progress(args.quiet)
    try:
        outcome = tune(parse_cli(args.args), progress)
    finally:
        progress.close()
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
    root = Path(_kv(args.args, ("data.root",), "bench ls").get("data.root", _default_root()))
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
    from reports.render import write_leaderboard
    from reports.sources import gather_records

    options = _kv(args.args, REPORT_KEYS, "bench report")
    output = Path(options.get("output.dir", "./runs"))
    from bench.io import check_output_links

    check_output_links(output, options.get("output.allow_links", "false").lower() == "true")
    # no records but tuning studies (only `bench tune` has run): a report of the studies
    records = gather_records(output, options.get("tracking.uri"), options.get("tracking.experiment", "pointbench"))
    paths = write_leaderboard(records, output / "leaderboard", tuning_dir=output / "tuning")
    if not args.quiet:
        print(paths["md"].read_text(encoding="utf-8"))
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
    from bench.data.check import check_report

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
    report = check_report(root, options.get("suite"))  # sources, folders, weights, summary (bench/data/check.py)
    print("\n".join(report.lines()))
    return report.exit_code  # non-zero when suite=<name> lacks some of its data


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


#: the keys ``bench report`` reads; any other is an error (a misspelt ``output.dri`` must not be ignored)
REPORT_KEYS = ("output.dir", "output.allow_links", "tracking.uri", "tracking.experiment")


def _kv(tokens: list[str], known: tuple[str, ...] | None = None, command: str = "bench") -> dict[str, str]:
    """``key=value`` tokens as a dict; with ``known``, a key outside it is a ConfigError naming it."""
    from bench.errors import ConfigError

    out = {}
    for token in tokens:
        if "=" not in token:
            raise ConfigError(f'cannot parse "{token}": arguments are key=value.')
        key, value = token.split("=", 1)
        if known is not None and key not in known:
            raise ConfigError(f'{command}: unknown key "{key}". Known keys: {", ".join(known)}.')
        out[key] = value
    return out


def _default_root() -> str:
    import os

    return os.environ.get("BENCH_DATA", "./data")


def _others(paths: dict[str, Path]) -> str:
    return ", ".join(str(p) for k, p in paths.items() if k != "md")


if __name__ == "__main__":
    sys.exit(main())

"""What data is present below a data root: per registered data set and variant, used by ``bench data check``
and ``bench ls``. Only cheap checks: expected files exist, h5 keys and shapes fit, list files are readable.

``bench data check`` (:func:`check_report`) also says, per data set, where the official files come from (the data
set class's ``source``: each module declares its own, so a new data set adds its line there) and the folder they
are unpacked into (the common folder of its expected files below the data root); that a missing set is replaced
by the synthetic stand-in; where the authors release their pre-trained weights (:data:`AUTHOR_CHECKPOINTS`, the
methods' GitHub READMEs read for it; imported with ``method.ckpt=<file>``); and ends with a one-line summary.
Nothing is downloaded. ``suite=<name>`` adds what that suite needs (its fine-tuning data per variant, and the
pre-training data of every method it plans, as ``bench run`` would plan them on the paper profile) and makes the
check fail (:attr:`CheckReport.exit_code`, DataError's) when any of it is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.data.base import PointCloudDataset
from bench.errors import BenchError, DataError
from bench.registry import DATASETS, discover


@dataclass
class DatasetStatus:
    """Status of one (dataset, variant) below a data root; counts are None when unknown (absent or unreadable)."""

    dataset: str
    variant: str
    present: bool
    missing: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    n_train: int | None = None
    n_test: int | None = None


def check_data(root: Path) -> list[DatasetStatus]:
    """One :class:`DatasetStatus` per registered data set and variant, sorted by name then variant order."""
    discover("bench.data")
    root = Path(root)
    statuses = []
    for name in DATASETS.names():
        cls = DATASETS.get(name)
        if isinstance(cls, type) and issubclass(cls, PointCloudDataset):
            statuses += [_check_one(cls, root, variant) for variant in cls.variants]
    return statuses


def _check_one(cls: type[PointCloudDataset], root: Path, variant: str) -> DatasetStatus:
    status = DatasetStatus(cls.name, variant, present=False)
    status.missing = [p for p in cls.expected_files(root, variant) if not p.exists()]
    try:
        status.present = cls.is_present(root, variant)
        if status.present:
            problems, counts = cls.light_check(root, variant)
            status.problems = problems
            status.n_train, status.n_test = counts.get("train", counts.get("trainval")), counts.get("test")
    except BenchError as exc:
        status.present = False
        status.problems.append(str(exc))
    return status


@dataclass(frozen=True)
class AuthorCheckpoint:
    """Where the authors of a method release their pre-trained weights (their README, read; never downloaded)."""

    method: str
    paper: str
    where: str


#: the authors' pre-training checkpoints (Point-MAE, Point-PQAE, Point-MaDi READMEs); each loads with
#: ``method.ckpt=<file>`` (keys under the method's checkpoint prefix; ``module.`` / ``base_model.`` stripped)
AUTHOR_CHECKPOINTS: tuple[AuthorCheckpoint, ...] = (
    AuthorCheckpoint("point_mae", "Point-MAE", "https://github.com/Pang-Yatian/Point-MAE/releases/download/main/"
                     "pretrain.pth (README, Point-MAE Models: Pre-training)"),
    AuthorCheckpoint("point_pqae", "Point-PQAE", "https://github.com/aHapBean/Point-PQAE (README, Point-PQAE Models: "
                     "the Pre-training Google Drive folder)"),
    AuthorCheckpoint("point_madi", "Point-MaDi", "https://github.com/YangParky/Point-MaDi (README, Point-MaDi Models: "
                     "the Pre-training Google Drive folder)"),
)


@dataclass
class DatasetSummary:
    """One registered data set: its official source, the folder it is unpacked into, the status per variant."""

    name: str
    source: str
    folder: Path
    statuses: list[DatasetStatus]

    @property
    def n_present(self) -> int:
        return sum(status.present for status in self.statuses)

    @property
    def present(self) -> bool:
        return self.n_present == len(self.statuses)


@dataclass
class SuiteNeed:
    """A (data set, variant) a suite reads, what for (``fine-tuning`` or ``pre-training: <methods>``), and
    whether it is usable under the data root (the runner's rule, :func:`bench.sources.missing_files`)."""

    dataset: str
    variant: str
    role: str
    present: bool


@dataclass
class CheckReport:
    """What ``bench data check`` prints; ``exit_code`` is non-zero when the suite asked for lacks some data."""

    root: Path
    datasets: list[DatasetSummary]
    suite: str | None = None
    needs: list[SuiteNeed] = field(default_factory=list)

    @property
    def missing_for_suite(self) -> list[SuiteNeed]:
        return [need for need in self.needs if not need.present]

    @property
    def exit_code(self) -> int:
        return DataError.exit_code if self.missing_for_suite else 0

    def summary(self) -> str:
        """``3 of 8 data sets present; the rest use the stand-in.`` (partly present sets named)."""
        whole = sum(d.present for d in self.datasets)
        line = f"{whole} of {len(self.datasets)} data sets present"
        partly = [f"{d.name}: {d.n_present} of {len(d.statuses)} variants" for d in self.datasets
                  if d.n_present and not d.present]
        if partly:
            line += f" ({'; '.join(partly)})"
        return line + ("." if whole == len(self.datasets) else "; the rest use the stand-in.")

    def lines(self) -> list[str]:
        """Every line of the report, the summary last."""
        out = [f"data under {self.root} (nothing is downloaded: unpack each set into the folder named)"]
        for data in self.datasets:
            out += _dataset_lines(data)
        out.append(f"A missing data set is replaced by the synthetic stand-in under {self.root / 'synthetic'}, "
                   "in the same layout (bench data synth writes it; bench run writes it on first use); results on "
                   "it are marked synthetic.")
        out.append("Authors' pre-trained weights (fine-tune from one with method.ckpt=<file>):")
        out += [f"  {c.method:<11} {c.paper}: {c.where}" for c in AUTHOR_CHECKPOINTS]
        if self.suite is not None:
            out += _suite_lines(self)
        return [*out, self.summary()]


def unpack_folder(cls: type[PointCloudDataset], root: Path) -> Path:
    """The folder below ``root`` that holds every file the data set's variants expect (their common folder)."""
    files = [p for variant in cls.variants for p in cls.expected_files(root, variant)]
    if not files:
        return Path(root)
    common = Path(os.path.commonpath(files))
    return common.parent if len(set(files)) == 1 and common.suffix else common


def summarize_data(root: Path) -> list[DatasetSummary]:
    """:func:`check_data` grouped per data set, with each set's source and unpack folder."""
    by_name: dict[str, list[DatasetStatus]] = {}
    for status in check_data(root):
        by_name.setdefault(status.dataset, []).append(status)
    return [DatasetSummary(name, DATASETS.get(name).source, unpack_folder(DATASETS.get(name), Path(root)), statuses)
            for name, statuses in by_name.items()]


def suite_needs(suite: str, root: Path) -> list[SuiteNeed]:
    """The data ``bench run suite=<suite> method=all profile=paper data.root=<root>`` reads: each variant's
    fine-tuning data set, then each planned method's pre-training stages' (none for an imported ``method.ckpt``)."""
    from bench.config import dataset_variant, parse_cli, variant_config
    from bench.plan import plan_suite
    from bench.pretraining import stages_of
    from bench.registry import METHODS
    from bench.sources import missing_files

    request = parse_cli([f"suite={suite}", "profile=paper", f"data.root={root}"])
    plan = plan_suite(suite, request, note=lambda line: None, write=False)
    roles: dict[tuple[str, str], list[str]] = {}
    for variant in plan.variants:
        vcfg = variant_config(plan.configs[plan.methods[0]], variant)
        roles.setdefault((vcfg.suite.dataset, dataset_variant(vcfg, variant)), [])
    for method in plan.methods:
        cfg = plan.configs[method]
        if METHODS.get(method).pretrains() and not cfg.method.ckpt:
            for stage in stages_of(cfg):
                roles.setdefault((stage.dataset, stage.variant), []).append(method)
    return [SuiteNeed(dataset, variant, f"pre-training: {', '.join(dict.fromkeys(users))}" if users else "fine-tuning",
                      not missing_files(dataset, Path(root), [variant])) for (dataset, variant), users in roles.items()]


def check_report(root: Path, suite: str | None = None) -> CheckReport:
    """What ``bench data check [suite=<name>]`` prints and its exit code (see the module docstring)."""
    root = Path(root)
    needs = suite_needs(suite, root) if suite is not None else []
    return CheckReport(root, summarize_data(root), suite, needs)


def _dataset_lines(data: DatasetSummary) -> list[str]:
    state = "present" if data.present else "MISSING" if not data.n_present else \
        f"{data.n_present} of {len(data.statuses)} variants present"
    out = [f"{data.name}: {state}", f"  source: {data.source or '(not declared by its data set class)'}",
           f"  unpack into: {data.folder}"]
    for status in data.statuses:
        counts = f" (train {status.n_train}, test {status.n_test})" if status.present else ""
        out.append(f"  {status.dataset}/{status.variant}: {'present' if status.present else 'MISSING'}{counts}")
        out += [f"      missing: {path}" for path in status.missing]
        out += [f"      note: {problem}" for problem in status.problems]
    return out


def _suite_lines(report: CheckReport) -> list[str]:
    out = [f"suite {report.suite} needs:"]
    out += [f"  {n.dataset}/{n.variant} ({n.role}): {'present' if n.present else 'MISSING'}" for n in report.needs]
    missing = report.missing_for_suite
    if missing:
        names = ", ".join(f"{n.dataset}/{n.variant}" for n in missing)
        out.append(f"suite {report.suite}: missing {names}; bench run would use the synthetic stand-in instead "
                   "(results marked synthetic).")
    else:
        out.append(f"suite {report.suite}: every data set it needs is present.")
    return out

"""What data is present below a data root: per registered data set and variant, used by ``bench data check``
and ``bench ls``. Only cheap checks: expected files exist, h5 keys and shapes fit, list files are readable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.data.base import PointCloudDataset
from bench.errors import BenchError
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

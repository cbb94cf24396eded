"""Where a suite's data comes from: the real data set under ``data.root`` when present, else the synthetic
stand-in under ``<data.root>/synthetic`` (written on first use), in the same official on-disk layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import DataError, OutputError
from bench.registry import DATASETS, load_plugins

REAL, SYNTHETIC = "real", "synthetic"


@dataclass
class DataSource:
    dataset: str
    root: Path  # folder holding the data set in its official layout
    kind: str  # "real" | "synthetic"
    note: str = ""  # one plain sentence for the user when the stand-in is used


def missing_files(dataset: str, root: Path, variants: list[str]) -> list[Path]:
    """Expected files absent under ``root``; empty when the data set is usable there (its ``is_present`` says so:
    e.g. ModelNet40's txt layout counts, its ``.dat`` caches are built on first use)."""
    cls = DATASETS.get(dataset)
    if all(cls.is_present(root, v) for v in variants):
        return []
    return [p for v in variants for p in cls.expected_files(root, v) if not p.exists()]


def locate(dataset: str, variants: list[str], root: str | Path, source: str, standin_size: str,
           write: bool = True) -> DataSource:
    """Resolve ``source`` (auto | real | synthetic) for ``dataset`` / ``variants`` under the data root ``root``.

    ``write=False`` (``bench show``) never writes the stand-in; its note then says it would be written."""
    load_plugins()
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"data.root={root} is a file, not a folder: point data.root (or BENCH_DATA) at the folder "
                        "that holds the data sets (or an empty one, where the synthetic stand-in is written).")
    missing = missing_files(dataset, root, variants)
    if source == "real" and missing:
        shown = "\n  ".join(str(p) for p in missing[:6])
        raise DataError(
            f"data.source=real but {dataset} is incomplete under {root}; missing:\n  {shown}\n"
            "Set data.root (or BENCH_DATA) to the folder holding it, or use data.source=auto."
        )
    if source in ("auto", "real") and not missing:
        return DataSource(dataset, root, REAL)
    return _standin(dataset, variants, root, standin_size, reason=missing if source == "auto" else [], write=write)


def variant_source(cfg, variant: str, suite_data: DataSource) -> DataSource:
    """The data of one variant (``cfg``: its variant config): the suite's, unless ``suite.variant_options.<variant>``
    names another ``dataset`` (suite svm: ModelNet40 and ScanObjectNN), then located by the same rules."""
    if cfg.suite.dataset == suite_data.dataset:
        return suite_data
    from bench.config import dataset_variant

    return locate(cfg.suite.dataset, [dataset_variant(cfg, variant)], cfg.data.root, cfg.data.source,
                  cfg.data.standin_size)


def _standin(dataset: str, variants: list[str], root: Path, size: str, reason: list[Path],
             write: bool = True) -> DataSource:
    from bench.data.synthetic import write_standin

    synthetic_root = root / "synthetic"
    written = ""
    if not write and missing_files(dataset, synthetic_root, variants):
        written = " (not written yet: bench run writes it)"
    elif missing_files(dataset, synthetic_root, variants):
        try:
            write_standin(synthetic_root, [dataset], size=size)
        except PermissionError as err:
            raise OutputError(
                f"cannot write the synthetic stand-in for {dataset} to {synthetic_root}: {err.strerror}. "
                "Point data.root (or BENCH_DATA) at a writable folder."
            ) from None
        written = " (written now)"
    why = f"No {dataset} data found under {root} (expected {reason[0]})" if reason else "data.source=synthetic"
    note = f"{why}; using the synthetic stand-in in {synthetic_root}{written}: results are marked synthetic."
    return DataSource(dataset, synthetic_root, SYNTHETIC, note)

"""Before/after equality of every protocol: one tiny sweep per protocol through ``bench run``, reduced to the numbers
a user sees (per-epoch metrics without wall times, and every per-job statistic).

``python -m tests.golden.sweeps <out.json>`` writes the fixture (it was written at the commit before the core
refactor of issue 10); ``test_golden.py`` runs the same sweeps and compares digit for digit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: one sweep per protocol (finetune with voting, finetune with folds, svm, partseg, semseg with whole rooms)
SWEEPS = {
    "scanobjectnn": ["suite=scanobjectnn", "method=scratch,point_mae", "suite.variants=[objbg]"],
    "fewshot": ["suite=fewshot", "method=scratch", "suite.variants=[5way10shot]"],
    # raw features, as when the fixture was written (the demo profile standardises since issue 16)
    "svm": ["suite=svm", "method=scratch,point_mae", "suite.standardize=false"],
    "shapenetpart": ["suite=shapenetpart", "method=point_mae"],
    "s3dis": ["suite=s3dis", "method=scratch"],
}
TINY = ["seeds=[0]", "trainer.epochs=2", "trainer.batch_size=8", "pretrain.trainer.epochs=1",
        "pretrain.trainer.batch_size=8", "data.standin_size=tiny", "executor.workers=1", "tracking.enabled=false"]
#: per-epoch keys that are measurements of time, not results
TIMING = ("epoch_time_s",)


def reduce(records) -> dict[str, dict]:
    """job id -> {"epochs": rows without timings, "stats": {statistic name: value}} of each record."""
    out = {}
    for record in records:
        rows = [{k: v for k, v in row.items() if k not in TIMING} for row in record.epochs]
        stats = dict(record.final) if hasattr(record, "final") else record.flat()  # schema-1 names (test_golden)
        out[record.job_id] = {"epochs": rows, "stats": stats}
    return out


def run_sweeps(data_root: Path, out_dir: Path, names=None) -> dict[str, dict]:
    from bench.cli import main
    from bench.records import load_records

    result = {}
    for name, args in SWEEPS.items():
        if names is not None and name not in names:
            continue
        folder = out_dir / name
        code = main(["--quiet", "run", *args, *TINY, f"data.root={data_root}", f"output.dir={folder}"])
        if code != 0:
            raise RuntimeError(f"golden sweep {name} exited {code}")
        records = load_records(folder / "records")
        result[name] = {"jobs": reduce(records), "leaderboard": leaderboard_numbers(records),
                        "pretrain_hashes": sorted({r.pretrain.get("hash") or "" for r in records})}
    return result


#: the leaderboard's numeric columns compared before and after
LEADERBOARD_NUMBERS = ("paper", "honest_mean", "honest_std", "best_mean", "best_std", "vote_mean", "vote_std",
                       "vote_max", "n_seeds")


def leaderboard_numbers(records) -> list[dict]:
    """The leaderboard rows' identity columns and numbers (NaN as None, so JSON compares them)."""
    from reports.leaderboard import summarize

    table = summarize(records)
    rows = []
    for row in table.to_dict("records"):
        kept = {k: row[k] for k in ("method", "variant", "metric", *LEADERBOARD_NUMBERS)}
        rows.append({k: (None if isinstance(v, float) and v != v else v) for k, v in kept.items()})
    return rows


if __name__ == "__main__":
    import tempfile

    import torch

    torch.set_num_threads(2)  # what test_golden.GOLDEN_THREADS pins (torch's default on the 2-core machine)
    from bench.data.synthetic import write_standin

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_standin(root / "synthetic", None, size="tiny")
        sweeps = run_sweeps(root, Path(tmp) / "runs")
    # only the sweep fixture: v1_records / v1_leaderboard.md are the frozen records of fc8f8aa (schema 1)
    Path(sys.argv[1]).write_text(json.dumps(sweeps, indent=1, sort_keys=True))

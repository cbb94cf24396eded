"""Stand-in few-shot folds: drawn from the ModelNet40 stand-in's ``.dat`` caches, in the official fold format.

Clamping rule (the stand-in has few classes and shapes: tiny 4 classes x 3 train / 2 test, demo 12 x 10 / 4): every
setting and fold is written, drawn by :func:`bench.data.fewshot.make_fold` with ``strict=False``: a fold takes all
the classes when the stand-in has fewer than ``way``, and every shape of a class that has fewer than ``shot`` train
or 20 test shapes. ``bench data check`` notes the shortfall. The ModelNet40 stand-in must be written first: the
writer declares it (``requires``), so ``write_standin`` writes it first whenever the few-shot stand-in is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data import fewshot, modelnet40
from bench.data.synthetic.writers import standin_writer


@standin_writer("modelnet_fewshot", stream=3, requires=("modelnet40",))
def write_fewshot(root: Path, size: str, rng: np.random.Generator) -> list[Path]:
    """Every setting x fold below ``root`` from ``root``'s ModelNet40 stand-in (whatever ``size`` it was written
    in); fold seeds derive from ``rng``."""
    folder = Path(root) / modelnet40.FOLDER
    seed = int(rng.integers(2**31))
    train, test = (modelnet40.cache_path(folder, split) for split in ("train", "test"))
    return fewshot.write_folds(train, test, Path(root), seed=seed, strict=False)

"""``bench score generation``: score point clouds made by any model under the generation protocol.

``bench score generation samples=<file.npy|folder> reference=<variant|file.npy>`` (:func:`score_generation`):

- samples: one ``.npy`` (n, N, 3), or a folder of ``.npy`` files (N, 3) each, read in name order; in raw ShapeNet
  units for ``normalisation=global`` (as LION's released samples after de-normalisation), box-normalised here for
  ``box``;
- reference: a variant of the generation suite (the shapenet15k split under ``data.root``: real data when present,
  else the stand-in, :func:`bench.sources.locate`) or a ``.npy`` file (n, N, 3) taken as it is;
- sizes: more samples than references -> the first n_ref (LION truncates); fewer -> DataError naming both counts;
- points: references with more points than the samples are subsampled to the samples' N (as above); samples with
  more points than a reference file are subsampled to its N by one ``default_rng(0)`` permutation shared by every
  cloud (LION ``compute_score``); both are recorded in ``details``;
- every input is checked before anything is written (DataError naming the file: missing, not an array, wrong
  shape, NaN / inf, point counts that differ between files); the result is a RunRecord (suite ``generation``, or
  ``generation_box`` for ``box``; seed 0; method ``name``) under ``<output.dir>/records/``, written atomically, that
  ``bench report`` shows beside our methods' rows (profile ``paper`` on real reference data, else ``demo``).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError, DataError
from bench.results import MetricResult
from bench.scoring import (
    SUITE_OF,
    audit,
    distance_options,
    finite_clouds,
    generation_details,
    metric_names,
    metric_results,
    reference_clouds,
    reference_order,
    score_sets,
)


# --- bench score generation --------------------------------------------------------------------------------------
@dataclass
class ScoreOptions:
    """The ``key=value`` arguments of ``bench score generation`` (see the module docstring)."""

    samples: str = ""
    reference: str = ""
    normalisation: str = "global"
    name: str = ""
    profile: str = ""  # "": paper on real reference data, else demo
    data_kind: str = ""  # a reference file's data kind ("": real); a variant's comes from where it was found
    reference_split: str = "val"
    reference_size: int = 0
    emd_cost: str = "sqeuclidean"
    emd_method: str = "approx"
    emd_audit: int = 0
    chunk_mb: int = 256
    device: str = "cpu"
    data_root: str = "./data"
    data_source: str = "auto"
    data_standin_size: str = "demo"
    output_dir: str = "./runs"


#: command-line key -> ScoreOptions field (the data and output keys are spelt as in ``bench run``)
DOTTED = {"data.root": "data_root", "data.source": "data_source", "data.standin_size": "data_standin_size",
          "output.dir": "output_dir"}
KEYS = {**{f: f for f in ScoreOptions.__dataclass_fields__ if f not in DOTTED.values()}, **DOTTED}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def parse_score_options(pairs: dict[str, str], default_root: str) -> ScoreOptions:
    """Typed options from the command's ``key=value`` pairs; ConfigError for an unknown key or a bad value."""
    from bench.registry import did_you_mean

    options = ScoreOptions(data_root=default_root)
    for key, value in pairs.items():
        if key not in KEYS:
            raise ConfigError(f'bench score generation: unknown argument "{key}".{did_you_mean(key, list(KEYS))} '
                              f"Known: {', '.join(KEYS)}.")
        kind = type(getattr(options, KEYS[key]))
        try:
            setattr(options, KEYS[key], kind(value))
        except ValueError:
            raise ConfigError(f"bench score generation: {key}={value!r} is not a {kind.__name__}.") from None
    for key in ("samples", "reference"):
        if not getattr(options, key):
            raise ConfigError(f"bench score generation: {key}= is required (samples=<file.npy|folder> "
                              "reference=<variant|file.npy>).")
    if options.normalisation not in SUITE_OF:
        raise ConfigError(f"normalisation={options.normalisation!r}: choose one of {', '.join(SUITE_OF)}.")
    options.name = options.name or Path(options.samples.rstrip("/")).stem
    if not NAME.match(options.name):
        raise ConfigError(f"name={options.name!r}: use letters, digits and _ . + - (it names the leaderboard row).")
    from bench.schema import DATA_SOURCES, PROFILES

    for key, value, allowed in (("data_kind", options.data_kind, ("real", "synthetic")),
                                ("profile", options.profile, PROFILES), ("data.source", options.data_source,
                                                                         DATA_SOURCES)):  # fmt: skip
        if value and value not in allowed:
            raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}.")
    return options


def load_samples(path: Path) -> tuple[np.ndarray, str]:
    """(clouds (n, N, 3) float32, sha256) of a ``.npy`` file or a folder of ``.npy`` clouds (N, 3)."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.npy") if p.is_file())
        if not files:
            raise DataError(f"samples={path}: the folder holds no .npy files.")
        clouds = [_read_npy(f, ndim=2) for f in files]
        for f, cloud in zip(files, clouds, strict=True):
            if cloud.shape != clouds[0].shape:
                raise DataError(f"samples={path}: {f.name} holds {cloud.shape[0]} points but {files[0].name} "
                                f"{clouds[0].shape[0]}: every cloud needs the same point count.")
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
        return finite_clouds(np.stack(clouds), f"samples={path}"), digest.hexdigest()
    if not path.is_file():
        raise DataError(f"samples={path}: no such file or folder.")
    arr = _read_npy(path, ndim=3)
    return finite_clouds(arr, f"samples={path}"), hashlib.sha256(path.read_bytes()).hexdigest()


def _read_npy(path: Path, ndim: int) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err}).") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != ndim or arr.shape[-1] != 3 or arr.dtype.kind not in "fiu":
        wanted = "(n, N, 3)" if ndim == 3 else "(N, 3)"
        raise DataError(f"{path}: expected a numeric {wanted} point array, got "
                        f"{getattr(arr, 'shape', '?')} {getattr(arr, 'dtype', '')}.")
    if ndim == 2:
        finite_clouds(arr[None], str(path))
    return arr


@dataclass
class Scored:
    """The inputs as scored: sample and reference clouds in the metric frame, and what was done to them."""

    samples: np.ndarray
    refs: np.ndarray
    variant: str
    data_kind: str
    reference: dict[str, Any]


def suite_section(options: ScoreOptions, profile: str, points: int):
    """The generation suite's ``suite`` section (its yaml, that profile's section, the command's settings), checked."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from bench.config import SUITES_DIR, read_yaml
    from bench.registry import PROTOCOLS

    path = SUITES_DIR / f"{SUITE_OF[options.normalisation]}.yaml"
    raw = read_yaml(path)
    own = {"reference_split": options.reference_split, "reference_size": options.reference_size,
           "emd_cost": options.emd_cost, "emd_method": options.emd_method, "emd_audit": options.emd_audit,
           "chunk_mb": options.chunk_mb, "npoints": points, "sampling_seeds": [0], "finetune_epochs": 0}
    layers = [raw.get("suite") or {}, ((raw.get("profiles") or {}).get(profile) or {}).get("suite") or {}, own]
    protocol = PROTOCOLS.get("generation")
    try:
        suite = OmegaConf.merge(OmegaConf.structured(protocol.suite_class), *layers)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None
    protocol.check(suite)
    return suite


def _variant_reference(options: ScoreOptions, points: int, note) -> tuple[np.ndarray, str, dict[str, Any]]:
    from bench.data.base import build_dataset
    from bench.sources import locate

    source = locate("shapenet15k", [options.reference], options.data_root, options.data_source,
                    options.data_standin_size)
    if source.note:
        note(source.note)
    dataset = build_dataset("shapenet15k", source.root, options.reference_split, options.reference)
    refs, _ = reference_clouds(dataset, points, options.reference_size, options.normalisation)
    return refs, source.kind, {"kind": "variant", "root": str(source.root), "split": options.reference_split}


def _file_reference(options: ScoreOptions, path: Path, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(samples, references, which were subsampled) at one point count; references as they are otherwise."""
    refs = finite_clouds(_read_npy(path, ndim=3), f"reference={path}")
    refs = refs[reference_order(len(refs), options.reference_size)]
    points, own = samples.shape[1], refs.shape[1]
    if own > points:  # references at the samples' N, each by its own seed-0 stream
        refs = np.stack([ref[np.random.default_rng([0, i]).permutation(own)[:points]] for i, ref in enumerate(refs)])
        return samples, refs, "references"
    if own < points:  # samples at the references' N by one permutation (LION compute_score)
        return samples[:, np.random.default_rng(0).permutation(points)[:own]], refs, "samples"
    return samples, refs, "none"


def reference_input(options: ScoreOptions, samples: np.ndarray, note) -> Scored:
    """Samples and references at one point count and size, in the metric frame (see the module docstring)."""
    from bench.data.shapenet15k import ShapeNet15k, normalize_box
    from bench.sources import REAL

    if options.reference in ShapeNet15k.variants:
        refs, kind, where = _variant_reference(options, samples.shape[1], note)
        variant, subsampled = options.reference, "references"
    else:
        path = Path(options.reference).expanduser()
        if path.suffix != ".npy" and not path.exists():
            raise ConfigError(f"reference={options.reference!r} is neither a variant "
                              f"({', '.join(ShapeNet15k.variants)}) nor a .npy file.")
        if not path.is_file():
            raise DataError(f"reference={path}: no such file.")
        samples, refs, subsampled = _file_reference(options, path, samples)
        refs = normalize_box(refs) if options.normalisation == "box" else refs
        variant, kind = path.stem, options.data_kind or REAL
        where = {"kind": "file", "path": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    if len(samples) < len(refs):
        raise DataError(f"samples={options.samples}: {len(samples)} clouds, fewer than the {len(refs)} reference "
                        f"clouds of reference={options.reference}: the sample set needs the reference set's size "
                        "(or set reference_size=).")
    samples = samples[: len(refs)]  # LION truncates to the reference size
    samples = normalize_box(samples) if options.normalisation == "box" else samples
    reference = {**where, "size": len(refs), "points": int(refs.shape[1]), "subsampled": subsampled}
    return Scored(samples, refs, variant, kind, reference)


def score_generation(options: ScoreOptions, note=print) -> tuple[Any, Path]:
    """Score the samples and write their RunRecord; returns (record, its path). Nothing is written on bad input."""
    from omegaconf import OmegaConf

    from bench.identity import config_hash
    from bench.registry import METHODS, load_plugins

    load_plugins()
    if options.name in METHODS:
        raise ConfigError(f"name={options.name!r} is a registered method; give the scored samples their own name "
                          f"(e.g. name={options.name}_samples), so their row is not taken for the method's.")
    tic = time.perf_counter()
    samples_path = Path(options.samples).expanduser()
    samples, digest = load_samples(samples_path)
    given = len(samples)
    scored = reference_input(options, samples, note)
    profile = options.profile or ("paper" if scored.data_kind == "real" else "demo")
    suite = suite_section(options, profile, int(scored.samples.shape[1]))
    distance = distance_options(suite, options.device)
    runs = [score_sets(scored.samples, scored.refs, distance)]
    emd = audit(scored.samples, scored.refs, options.emd_audit, options.emd_cost)
    details = generation_details(suite, distance, runs, len(scored.refs), scored.variant, emd)
    details.update(reference=scored.reference, samples={
        "path": str(samples_path.resolve()), "sha256": digest, "given": given, "used": len(scored.samples),
        "points": int(scored.samples.shape[1])})
    config = {"suite": OmegaConf.to_container(suite, resolve=True), "seeds": [0],
              "score": {"samples": str(samples_path.resolve()), "sha256": digest, "reference": options.reference},
              "data": {"root": options.data_root, "source": options.data_source,
                       "standin_size": options.data_standin_size}}
    chash = config_hash({"suite": config["suite"], "sha256": digest, "reference": scored.reference})
    return _write(options, scored, profile, config, chash, metric_results(metric_names(suite), runs), details, tic)


def _write(options: ScoreOptions, scored: Scored, profile: str, config: dict[str, Any], chash: str,
           results: list[MetricResult], details: dict[str, Any], tic: float) -> tuple[Any, Path]:  # fmt: skip
    """The scored samples' RunRecord, written atomically below ``<output.dir>/records/<suite>/<name>-<hash>/``."""
    from bench.env import environment
    from bench.records import RunRecord, current_command, write_record

    suite = config["suite"]
    record = RunRecord(
        job_id=f"{suite['name']}/{scored.variant}/{options.name}/seed0", sweep_id=f"score-{chash}",
        method=options.name, suite=suite["name"], suite_version=int(suite["version"]), variant=scored.variant,
        seed=0, protocol="generation", data_kind=scored.data_kind, profile=profile, recipe="method",
        metric=results[0].name, results=results, epochs=[], config=config, env=environment("cpu"),
        wall_time_s=time.perf_counter() - tic, config_hash=chash, pretrain={"source": "samples", "ckpt": None},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), command=current_command(),
        details=details,
    )
    folder = Path(options.output_dir).expanduser() / "records" / suite["name"] / f"{options.name}-{chash}"
    return record, write_record(folder, record)

"""A method's pre-trained weights: import a checkpoint, reuse cached stages, or pre-train them now.

Stages: ``pretrain.stages`` lists them in order (a tokenizer, then a generator; align, then distil); with none, the
``pretrain`` section is one implicit stage named ``pretrain``. Each stage trains the whole method with the one
Trainer, on its own data set and side data, with only its ``train`` / ``freeze`` parts trainable, starting from the
previous stage's checkpoint; ``Method.on_stage_start`` runs before it trains.

Caching: a stage is identified by a hash of the chain up to and including it
(:func:`bench.config.stage_hash`; the implicit stage keeps :func:`bench.config.pretrain_hash`, so caches made before
stages existed stay valid). Its result lives in ``<output.dir>/pretrain/<method>-<hash>/pretrain.pth`` in the
authors' layout (``{"base_model": whole-method state_dict, "epoch": ...}``, encoder under ``<checkpoint_prefix>.``)
with ``pretrain.json`` beside it. Changing stage k re-runs stage k and the stages after it, never those before.

MLflow: one pre-training run per method under the sweep; with declared stages, one run per stage under it. Each is
tagged with its method, stage name(s) and hash, and once trained with its checkpoint's path, sha256 and size (tags,
not an uploaded ``.pth``; :mod:`bench.tracking`). A cached pre-training opens no run; it closes FINISHED (with its
checkpoint tags) a run that a process killed between saving the checkpoint and closing the run left RUNNING, and
removes a ``last.pt`` left beside a saved ``pretrain.pth`` by a kill just before that clean-up.

Several processes on one output folder: a chain is trained under a lease (:mod:`bench.leases`) on
``<output.dir>/leases/pretrain/<method>-<last hash>.lock`` (beside the job leases: ``pretrain/`` holds only
checkpoint folders); a process that finds it held waits (and says so), then finds
the cache: the pre-training is waited for, not repeated.

Side data: before any stage trains, every stage still to run gets its data, and its side data is checked against
every sample id. On the synthetic stand-in, a side-data file that is absent is first written by the stand-in writer
its spec names (:func:`bench.data.side.write_standin_side_data`, noted to the user); on real data it stays a
DataError that names the ``bench data prepare`` step making it. A stage with side data records each file's
provenance (:meth:`bench.data.side.SideDataSource.describe`) as ``details["side_data"][name]`` in its
``pretrain.json``, which reaches every fine-tuning record's ``pretrain.details``.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.checkpoints import load_method_checkpoint, save_pretrain_checkpoint
from bench.config import stage_trainer
from bench.data.base import TransformedDataset, build_dataset
from bench.data.side import WithSideData, load_side_data, write_standin_side_data
from bench.data.transforms import build_transform
from bench.errors import CheckpointError, ConfigError
from bench.identity import pretrain_hash, stage_hash
from bench.io import atomic_write_text
from bench.leases import LEASES_DIR, acquire
from bench.registry import DATASETS, SIDE_DATA
from bench.schema import StageConfig
from bench.sources import REAL, SYNTHETIC, DataSource, locate
from bench.tracking import run_name
from bench.trainer import Trainer, seed_everything, world_size

CHECKPOINT_NAME = "pretrain.pth"
IMPLICIT = "pretrain"


@dataclass
class EncoderSource:
    """Where a job's weights come from. source: import | cache | pretrained | none; ckpt: the last stage's file."""

    source: str
    ckpt: str | None = None
    data_kind: str | None = None  # kind of the pre-training data (None when imported or none)
    hash: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Stage:
    """One resolved pre-training stage (every field set; see :class:`bench.schema.StageConfig`)."""

    config: StageConfig
    dataset: str
    variant: str
    whole: bool
    transforms: list[Any]
    side_data: list[str]
    trainer: DictConfig
    train: list[str]
    freeze: list[str]

    @property
    def name(self) -> str:
        return self.config.name


def stages_of(cfg: DictConfig) -> list[Stage]:
    """The resolved stages of ``cfg.pretrain`` (one implicit stage when ``stages`` is empty)."""
    pre = cfg.pretrain
    plain = OmegaConf.to_container(pre, resolve=True)
    if not pre.stages:
        return [Stage(StageConfig(name=IMPLICIT), pre.dataset, pre.variant, pre.whole, plain["transforms"],
                      list(plain["side_data"]), pre.trainer, [], [])]
    stages = []
    for node, raw in zip(pre.stages, plain["stages"], strict=True):
        inherited = {key: plain[key] if raw[key] is None else raw[key]  # unset: the pretrain section's value
                     for key in ("dataset", "variant", "whole", "transforms")}
        stages.append(Stage(OmegaConf.to_object(node), **inherited,
                            side_data=list(raw["side_data"]) or list(plain["side_data"]),
                            trainer=stage_trainer(cfg, node), train=list(raw["train"]), freeze=list(raw["freeze"])))
    return stages


@dataclass
class Chain:
    """One method's pre-training stages, resolved: their data, cache hashes (one per stage) and cache folders."""

    method: str
    declared: bool  # pretrain.stages lists the stages (else one implicit stage)
    stages: list[Stage]
    located: list[DataSource]
    keys: list[str]
    folders: list[Path]
    kind: str  # synthetic when any stage's data is

    def checkpoint(self, i: int = -1) -> Path:
        return self.folders[i] / CHECKPOINT_NAME

    def cached(self, i: int = -1) -> bool:
        return self.checkpoint(i).exists()

    def run_key(self, i: int | None = None) -> str:
        """MLflow key of the pre-training run (``i`` None) or of stage ``i``'s run under it."""
        if i is None:
            return f"pretrain/{self.method}/{self.keys[-1]}"
        return f"pretrain/{self.method}/{self.keys[i]}/{self.stages[i].name}"

    @property
    def lock(self) -> Path:
        """``<output.dir>/leases/pretrain/<method>-<last hash>.lock``: held while the chain is trained
        (bench.leases). Two chains that share only their first stages are not serialised by it: each may train a
        shared stage (written atomically, so the cache stays whole; the work may be done twice)."""
        last = self.folders[-1]  # <output.dir>/pretrain/<method>-<hash>
        return last.parent.parent / LEASES_DIR / "pretrain" / f"{last.name}.lock"

    def source(self, how: str) -> EncoderSource:
        return EncoderSource(how, str(self.checkpoint()), self.kind, self.keys[-1], _details(self.stages, self.folders))


def encoder_source(cfg: DictConfig, method_cls, output_dir: Path, tracker, sweep_run: str | None,
                   progress, note) -> EncoderSource:
    """The weights for ``cfg``'s method: the imported file, or the last pre-training stage (run when not cached).

    Several processes on one output folder: the chain is trained under a lease on :attr:`Chain.lock` (waited for,
    noted to the user when another process holds it), and the cache is looked at again once it is held, so a
    pre-training another process ran meanwhile is reused, not repeated. Under torchrun (every rank trains the
    chain together) there is no lease."""
    if cfg.method.ckpt:
        path = Path(cfg.method.ckpt).expanduser()
        if not path.is_file():
            raise CheckpointError(f"method.ckpt: checkpoint file not found: {path}")
        return EncoderSource("import", str(path.resolve()))
    if not method_cls.pretrains():
        return EncoderSource("none")
    chain = resolve_chain(cfg, method_cls.name, output_dir, note)
    with _chain_lease(chain, note):
        if chain.cached():
            note(f"pre-training {chain.method}: cached, {chain.checkpoint()}")
            _settle_cached(chain, tracker, range(len(chain.stages)), whole=True)
            return chain.source("cache")
        return pretrain_chain(cfg, method_cls, chain, tracker, sweep_run, progress, note)


def resolve_chain(cfg: DictConfig, method: str, output_dir: Path, note) -> Chain:
    """The stages of ``cfg.pretrain`` with their data located (stand-in side data written when absent), their
    cache hashes and folders ``<output.dir>/pretrain/<method>-<hash>``."""
    stages = stages_of(cfg)
    located = [locate(s.dataset, [s.variant], cfg.data.root, cfg.data.source, cfg.data.standin_size) for s in stages]
    for data in {d.note: d for d in located if d.note}.values():
        note(data.note)
    kinds = [d.kind for d in located]
    for stage, data in zip(stages, located, strict=True):
        write_missing_side_data(stage, data, cfg.data.standin_size, note)
    digests = [side_digests(stage, data) for stage, data in zip(stages, located, strict=True)]
    keys = [pretrain_hash(cfg, kinds[0])] if not cfg.pretrain.stages else \
        [stage_hash(cfg, i, kinds, digests) for i in range(len(stages))]
    folders = [output_dir / "pretrain" / f"{method}-{key}" for key in keys]
    kind = SYNTHETIC if SYNTHETIC in kinds else REAL
    return Chain(method, bool(cfg.pretrain.stages), stages, located, keys, folders, kind)


def _chain_lease(chain: Chain, note):
    """The lease on the chain's lock file, waited for (and noted) when another process holds it; none under
    torchrun."""
    if world_size() > 1:
        return nullcontext()
    return acquire(chain.lock, on_wait=lambda holder: note(
        f"waiting for another process's pre-training of {chain.method} ({chain.lock}: {holder or 'holder unknown'})"))


def _settle_cached(chain: Chain, tracker, indices, whole: bool) -> None:
    """Clean up after a process killed between saving a cached stage and finishing it: its ``last.pt`` beside
    ``pretrain.pth`` is removed, and its MLflow run (the pre-training's too when ``whole``), still RUNNING, is
    closed FINISHED with its checkpoint tags."""
    for i in indices:
        (chain.folders[i] / "last.pt").unlink(missing_ok=True)
        if chain.declared:
            tracker.close_if_running(chain.run_key(i), chain.checkpoint(i))
    if whole:
        tracker.close_if_running(chain.run_key(), chain.checkpoint())


def pretrain_chain(cfg: DictConfig, method_cls, chain: Chain, tracker, sweep_run: str | None, progress,
                   note) -> EncoderSource:  # fmt: skip
    """Train the stages that are not cached, in order, each from the previous stage's checkpoint, under one
    pre-training run (one run per declared stage under it)."""
    # every stage still to run gets its data (side data checked against every sample id) before any stage trains
    to_run = [i for i in range(len(chain.stages)) if not chain.cached(i)]
    datasets = {i: stage_dataset(chain.stages[i], chain.located[i], cfg.pretrain.seed) for i in to_run}
    reused = sorted(set(range(len(chain.stages))) - set(to_run))  # the stages reused from an earlier run
    for i in reused:
        note(f"pre-training {chain.method} ({chain.stages[i].name}): cached, {chain.checkpoint(i)}")
    _settle_cached(chain, tracker, reused, whole=False)
    parent = tracker.open_run(
        key=chain.run_key(), name=run_name(chain.method, "pretrain"), parent=sweep_run,
        params={"method": OmegaConf.to_container(cfg.method), "pretrain": OmegaConf.to_container(cfg.pretrain,
                                                                                             resolve=True)},
        tags={**_run_tags("pretrain", chain.method, ",".join(s.name for s in chain.stages), chain.keys[-1]),
              "bench.data_kind": chain.kind},
    )
    previous = None
    for i, (stage, data, folder) in enumerate(zip(chain.stages, chain.located, chain.folders, strict=True)):
        if i in datasets:
            run_id = parent if not chain.declared else tracker.open_run(
                key=chain.run_key(i), parent=parent, name=run_name(chain.method, "pretrain", f"stage {stage.name}"),
                params={"stage": stage.name, "index": i}, tags=_run_tags("pretrain_stage", chain.method, stage.name,
                                                                        chain.keys[i]))
            try:
                run_stage(cfg, method_cls, stage, datasets[i], data.kind, folder, previous, tracker, run_id, progress)
            except BaseException as err:  # no pre-training run is left RUNNING
                status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
                for run in dict.fromkeys([run_id, parent]):
                    tracker.close_run(run, status=status)
                raise
            if run_id != parent:
                tracker.tag_checkpoint(run_id, chain.checkpoint(i))
                tracker.close_run(run_id)
        previous = chain.checkpoint(i)
    tracker.tag_checkpoint(parent, previous)  # path, sha256 and size as tags (the .pth is not uploaded)
    tracker.log_artifact_text(parent, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
    tracker.close_run(parent)
    return chain.source("pretrained")


def _run_tags(run_kind: str, method: str, stages: str, key: str) -> dict[str, str]:
    """MLflow tags of a pre-training run (:mod:`bench.tracking`): its kind, method, stage name(s) and cache hash."""
    return {"bench.stage": run_kind, "bench.method": method, "bench.pretrain_stage": stages, "bench.pretrain_hash": key}


def _details(stages: list[Stage], folders: list[Path]) -> dict[str, Any]:
    """``pretrain.json`` of the last stage (what records always held), with every stage's when there are several."""
    infos = [json.loads((f / "pretrain.json").read_text()) if (f / "pretrain.json").exists() else {} for f in folders]
    if len(stages) == 1 and stages[0].name == IMPLICIT:
        return infos[0]
    return {**infos[-1], "stages": [{"name": s.name, "folder": f.name, **i} for s, f, i in zip(stages, folders, infos,
                                                                                                strict=True)]}


def set_trainable(method: nn.Module, train: list[str], freeze: list[str]) -> None:
    """Parameters under a ``train`` prefix (all when empty) train, then those under a ``freeze`` prefix do not."""
    names = [n for n, _ in method.named_parameters()]
    for prefix in [*train, *freeze]:
        if not any(_under(n, [prefix]) for n in names):
            raise ConfigError(f"pretrain.stages: no parameter of {type(method).__name__} is under {prefix!r}; "
                              f"its top-level modules are {', '.join(sorted({n.split('.')[0] for n in names}))}.")
    for name, param in method.named_parameters():
        param.requires_grad_((not train or _under(name, train)) and not _under(name, freeze))


def _under(name: str, prefixes: list[str]) -> bool:
    """``name`` is one of ``prefixes`` or a parameter of a module they name."""
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def write_missing_side_data(stage: Stage, data: DataSource, standin_size: str, note) -> None:
    """On the synthetic stand-in, write each side-data file of ``stage`` that is absent and whose spec names a
    stand-in writer, and ``note`` it; real data (or a spec without a writer) is left to :func:`stage_dataset`."""
    if data.kind != SYNTHETIC:
        return
    for name in stage.side_data:
        spec = SIDE_DATA.get(name)
        if spec.standin and not spec.file(data.root).exists():
            write_standin_side_data(spec, data.root, standin_size)
            note(f"side data {name}: {spec.file(data.root)} was absent; the stand-in writer {spec.standin} wrote it "
                 "now (synthetic stand-in).")


def side_digests(stage: Stage, data: DataSource) -> dict[str, str]:
    """sha256 of each side-data file the stage reads (``absent`` when missing: :func:`stage_dataset` then names
    the file and the command that makes it)."""
    out = {}
    for name in stage.side_data:
        path = SIDE_DATA.get(name).file(data.root)
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"
    return out


def stage_dataset(stage: Stage, data: DataSource, seed: int) -> TransformedDataset:
    """The stage's training split, joined with its side data by sample id, through its transforms."""
    options = {"whole": stage.whole} if "whole" in DATASETS.get(stage.dataset).option_defaults else {}
    base = build_dataset(stage.dataset, data.root, "train", stage.variant, **options)
    if stage.side_data:
        base = WithSideData(base, [load_side_data(name, data.root) for name in stage.side_data])
    return TransformedDataset(base, build_transform(stage.transforms), seed=seed)


def run_stage(cfg: DictConfig, method_cls, stage: Stage, dataset: TransformedDataset, data_kind: str, workdir: Path,
              start: Path | None, tracker, run_id: str | None, progress) -> dict[str, Any]:  # fmt: skip
    """Train one stage with the one Trainer; write ``pretrain.pth`` (whole method) and ``pretrain.json``."""
    pre = cfg.pretrain
    seed_everything(pre.seed)  # initial weights depend on the pre-training seed only, not on what ran before
    method = method_cls(OmegaConf.to_object(cfg.method))
    if start is not None:
        load_method_checkpoint(method, start)
    set_trainable(method, stage.train, stage.freeze)
    method.on_stage_start(stage.config)
    desc = f"pretrain {method_cls.name}" + ("" if stage.name == IMPLICIT else f" ({stage.name})")
    trainer = Trainer(stage.trainer, seed=pre.seed, workdir=workdir, progress=progress, desc=desc)
    result = trainer.fit(method, dataset, lambda model, batch: model(batch),
                         on_epoch_end=lambda epoch, row: tracker.log_metrics(run_id, row, step=epoch))
    details = {
        "epochs": len(result.history),
        "final_loss": result.history[-1].get("train_loss") if result.history else None,
        "wall_time_s": result.wall_time_s,
        "dataset": stage.dataset,
        "n_shapes": len(dataset),
        "data_kind": data_kind,
    }
    if stage.name != IMPLICIT:
        details.update(stage=stage.name, started_from=None if start is None else start.parent.name)
    sources = dataset.dataset.sources if isinstance(dataset.dataset, WithSideData) else []
    if sources:  # stages without side data keep their details (and records) exactly as before
        details["side_data"] = {source.name: source.describe() for source in sources}
    save_pretrain_checkpoint(method, workdir / CHECKPOINT_NAME, epoch=len(result.history), extra=details)
    atomic_write_text(workdir / "pretrain.json", json.dumps(details, indent=2))
    (workdir / "last.pt").unlink(missing_ok=True)
    return details

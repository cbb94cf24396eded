"""The typed config schema. Every key a user can set is a field here (or in a method's config dataclass);
an unknown key anywhere is an error at load time, with a did-you-mean.

Layering (later wins), resolved once by :func:`bench.config.resolve` and frozen:
    schema defaults < suite yaml < method yaml < method recipe for the suite (unless ``recipe=shared``)
    < profile file < the suite's and the method's ``profiles.<name>`` sections < command-line ``key=value``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from bench.errors import ConfigError


def coerce_section(cls: type, value: Any, key: str = "") -> Any:
    """A nested config section as its dataclass: a mapping becomes ``cls(**value)``, an unknown key a ConfigError
    naming ``key`` and the known ones; anything else (already a ``cls``) is returned as it is."""
    if isinstance(value, Mapping):
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            where = f"method.{key}" if key else cls.__name__
            raise ConfigError(f"unknown {where} key(s) {unknown}; known: {known}")
        return cls(**value)
    return value


@dataclass
class TrainerConfig:
    """One Trainer for pre-training and fine-tuning (reference recipe: protocols.md 3.2).

    Learning rate: AdamW; cosine decay to ``min_lr`` after ``warmup_epochs`` of linear warm-up from
    ``warmup_lr_init``, stepped once per epoch (timm ``CosineLRScheduler`` values f); ``schedule_convention``
    says how many epochs run, which f each runs at and which are evaluated (:func:`bench.trainer.epoch_lr`).
    Weight decay is not applied to 1-D parameters, biases and ``*token*`` parameters (reference builder).
    """

    epochs: int = 300
    batch_size: int = 32
    # 0: twice batch_size, as Point-MAE / MaDi validate (main.py L55 / L73: 2 x total_bs; PQAE main.py L61 uses
    # total_bs); in eval mode the batch size changes no prediction
    eval_batch_size: int = 0
    lr: float = 5.0e-4
    weight_decay: float = 0.05
    warmup_epochs: int = 10
    warmup_lr_init: float = 1.0e-6
    min_lr: float = 1.0e-6
    drop_path: float = 0.1  # the downstream backbone's; a pre-training model takes its own from the method config
    grad_clip: float | None = 10.0
    # reproduce the reference segmentation scripts' quirk (protocols.md 2.5): optimizer.step() on the raw gradient,
    # then clip_grad_norm_ and a second step on the clipped one, per batch. Off: one step on the clipped gradient.
    reference_double_step: bool = False
    # pointbench: epochs 0..epochs-1, epoch e at f(e), every epoch evaluated | reference_runner: Point-MAE / PQAE /
    # MaDi tools/runner_{finetune,pretrain}.py, `range(start, max_epoch + 1)`: epochs + 1 epochs, epoch e at
    # f(max(e - 1, 0)) (scheduler.step(epoch) at each epoch's end), epoch 0 never evaluated | reference_seg: the
    # segmentation main.py scripts, `range(0, args.epoch)`: epochs epochs at f(max(e - 1, 0)), every one evaluated
    schedule_convention: str = "pointbench"
    amp: str = "auto"  # auto: bf16 autocast on CUDA, off on CPU | bf16 | off
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    # torch.use_deterministic_algorithms + CUBLAS_WORKSPACE_CONFIG=:4096:8 + no cuDNN benchmark, recorded in the
    # record's env (CPU runs are bit-identical for the same seed anyway)
    deterministic: bool = False
    threads: int = 0  # torch.set_num_threads; 0 leaves torch's default


@dataclass
class StageConfig:
    """One stage of a staged pre-training (``pretrain.stages``), e.g. a tokenizer then a generator.

    Unset fields (None, or an empty ``trainer``) take the ``pretrain`` section's value; ``trainer`` holds only the
    keys that differ from ``pretrain.trainer``. A stage starts from the previous stage's weights (the first from
    the seeded init). ``train``: module-name prefixes that train (empty: all); ``freeze``: prefixes that do not
    (applied after ``train``). ``side_data``: registered side data joined to the samples by id.
    """

    name: str = ""
    dataset: str | None = None
    variant: str | None = None
    whole: bool | None = None
    transforms: list[Any] | None = None
    side_data: list[str] = field(default_factory=list)
    trainer: dict[str, Any] = field(default_factory=dict)
    train: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)


@dataclass
class PretrainConfig:
    """Pre-training on ``dataset`` with the method's pretext (ShapeNet-55 for the Point-MAE family).

    With ``stages`` empty this section is one implicit stage named ``pretrain``; otherwise each stage of
    ``stages`` runs in order, inheriting what it leaves unset from here (:class:`StageConfig`).
    """

    dataset: str = "shapenet55"
    variant: str = "default"
    seed: int = 0  # one pre-training per method, shared by every fine-tuning seed
    whole: bool = False  # ShapeNet-55 train+test (ReCon/PCP/MaDi/PQAE: on; Point-MAE: off)
    npoints: int = 1024
    # reference ShapeNet55Dataset: a random npoints subset, then pc_norm (centroid, max norm -> unit sphere)
    transforms: list[Any] = field(
        default_factory=lambda: [{"random_subset": {"n": "${pretrain.npoints}"}}, "normalize_unit_sphere"]
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(epochs=300, batch_size=128, lr=1.0e-3, grad_clip=None)
    )
    side_data: list[str] = field(default_factory=list)
    stages: list[StageConfig] = field(default_factory=list)


@dataclass
class VoteConfig:
    """Test-time voting: ``times`` forward passes of ``transforms.vote_each`` views, logits averaged.

    ``repeats`` > 1 reproduces the reference ``--test`` practice (best of R whole passes; MAE/ReCon/PQAE/MaDi
    R=299), reported separately and marked as test-set selection.
    """

    enabled: bool = True
    times: int = 10
    repeats: int = 1


@dataclass
class TransformsConfig:
    """Transform chains per split (names in the transform registry).

    Training applies ``train`` (sampling) then ``augment`` (the recipe's augmentation: Rotate for ReCon/PCP/PQAE/
    MaDi, ScaleAndTranslate for Point-MAE). ``vote`` prepares each test cloud once; ``vote_each`` is applied
    independently for every vote. Chains may use ``${suite.npoints}``.
    """

    train: list[Any] = field(default_factory=list)
    augment: list[Any] = field(default_factory=list)
    test: list[Any] = field(default_factory=list)
    vote: list[Any] = field(default_factory=list)
    vote_each: list[Any] = field(default_factory=list)


@dataclass
class ReportConfig:
    """How the leaderboard lays out a suite's table and which statistic is its headline.

    columns: ``variants``: one column per variant showing the headline metric (classification, few-shot);
             ``metrics``: one column per entry of ``metrics`` (per variant), e.g. part segmentation's
             Cls./Inst. mIoU or S3DIS's mIoU / mAcc / OA.
    metrics: metric names shown as columns when ``columns`` is ``metrics``; the first is the headline. A protocol
             writes each one into a record's ``final`` as ``<name>_last`` and ``<name>_best`` (besides the
             headline's plain ``last`` / ``best``).
    paper_statistic: ``max`` (max over seeds of each seed's best epoch: the classification papers) or
             ``fold_mean`` (mean +- std over folds of each fold's best epoch: the few-shot papers).
    """

    columns: str = "variants"
    metrics: list[str] = field(default_factory=list)
    paper_statistic: str = "max"


COLUMN_LAYOUTS = ("variants", "metrics")
PAPER_STATISTICS = ("max", "fold_mean")


@dataclass(frozen=True)
class ReportSpec:
    """A validated ``suite.report`` (of a resolved config, or of a record's stored config)."""

    columns: str = "variants"
    metrics: tuple[str, ...] = ()
    paper_statistic: str = "max"


def check_report(raw: object, where: str) -> ReportSpec:
    """Validate a ``suite.report`` mapping; ConfigError naming ``<where>.<key>`` and the allowed values."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    columns = raw.get("columns", "variants")
    if columns not in COLUMN_LAYOUTS:
        raise ConfigError(f"{where}.columns is {columns!r}; it must be one of {', '.join(COLUMN_LAYOUTS)}")
    statistic = raw.get("paper_statistic", "max")
    if statistic not in PAPER_STATISTICS:
        raise ConfigError(f"{where}.paper_statistic is {statistic!r}; it must be one of {', '.join(PAPER_STATISTICS)}")
    metrics = raw.get("metrics") or []
    if not isinstance(metrics, (list, tuple)) or not all(isinstance(m, str) and m for m in metrics):
        raise ConfigError(f"{where}.metrics must be a list of metric names, got {metrics!r}")
    if columns == "metrics" and not metrics:
        raise ConfigError(f"{where}.metrics is empty, but columns is 'metrics': name the metric columns "
                          "(the first is the headline)")
    return ReportSpec(str(columns), tuple(metrics), str(statistic))


@dataclass
class SuiteConfig:
    """What a suite measures and on which data; ``variant_options`` holds per-variant overrides of these keys.

    A protocol's own settings (voting, a validation split, whole-room evaluation, the SVM C table, generation
    options) are the extra fields of its ``suite_class``, a subclass of this one (:class:`bench.api.Protocol`).
    ``metric``: the headline, a name the protocol scores; its direction and unit come from the metric registry.
    """

    name: str = ""
    version: int = 1
    protocol: str = "finetune"
    dataset: str = ""
    variants: list[str] = field(default_factory=lambda: ["default"])
    dataset_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0
    npoints: int = 1024
    num_group: int = 64
    group_size: int = 32
    metric: str = "acc"
    transforms: TransformsConfig = field(default_factory=TransformsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    variant_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """``root`` holds each data set in its official layout (env ``BENCH_DATA``); ``source``: auto uses real data
    when present and otherwise writes and uses the synthetic stand-in under ``<root>/synthetic``."""

    root: str = "./data"
    source: str = "auto"  # auto | real | synthetic
    standin_size: str = "demo"  # tiny | demo


@dataclass
class TrackingConfig:
    """MLflow: ``uri`` null means ``sqlite:///<output.dir>/mlflow.db`` (or ``MLFLOW_TRACKING_URI`` when set)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "pointbench"


@dataclass
class OutputConfig:
    dir: str = "./runs"
    # a sub-folder of output.dir that is a symlink to a folder outside it (records -> /elsewhere) is refused unless
    # this is true: the harness would write through it (bench.io.check_output_links)
    allow_links: bool = False


@dataclass
class ExecutorConfig:
    """Where a sweep's jobs run (:mod:`bench.executors`). local: in this process (``workers`` 1) or a pool of
    ``workers`` processes; slurm: one submitit array job per sweep (``cluster: local`` runs it without Slurm)."""

    kind: str = "local"  # local | slurm
    workers: int = 1
    partition: str | None = None
    time_min: int = 240
    gpus: int = 0  # per job
    cpus: int = 2  # per job
    mem_gb: int = 16
    array_parallelism: int = 32  # jobs of the array running at once
    folder: str | None = None  # submitit logs and pickles; null: <output.dir>/slurm
    cluster: str | None = None  # submitit AutoExecutor cluster: null (auto: slurm when sbatch exists) | slurm | local


@dataclass
class TuneConfig:
    """``bench tune`` (bench/tuning.py): an Optuna study over ``space`` scored on a held-out part of train.

    space: config key -> ``[choices]`` | ``{low, high, log?, step?, type?: float|int}`` (nested or dotted keys).
    pruner: median | halving | threshold | none, on the per-epoch validation metric. storage: null ->
    ``sqlite:///<output.dir>/tuning/optuna.db``; any RDB URL (postgresql://...) shares the study between machines.
    """

    trials: int = 20
    space: dict[str, Any] = field(default_factory=dict)
    study: str = ""  # "": <suite>-<method>-<profile>-<variant>
    storage: str | None = None
    direction: str = "auto"  # auto: the direction of the registered metric behind tune.metric | maximize | minimize
    metric: str = "val_acc"
    objective: str = "best"  # best: the metric's best epoch | last: its last epoch
    val_fraction: float = 0.2  # sets suite.validation for the trials
    variant: str = ""  # "": the suite's first variant
    seeds: list[int] = field(default_factory=lambda: [0])  # a trial's score: mean over these seeds
    sampler_seed: int = 0  # TPE sampler seed
    startup_trials: int = 5  # TPE random start-up trials
    pruner: str = "median"
    pruner_startup_trials: int = 2  # median: never prune before this many trials finished
    pruner_warmup_epochs: int = 1  # median/threshold: never prune before this many epochs; halving: min_resource
    threshold: float = 0.0  # pruner threshold: prune once the metric is worse (below when maximizing) than this
    heartbeat_s: int = 60  # a RUNNING trial silent for 2x this is failed, and retried up to ``retries`` times
    retries: int = 1


@dataclass
class RunConfig:
    """The whole resolved configuration of one (suite, method) pair."""

    profile: str = "paper"
    recipe: str = "method"  # method: the method's own published recipe | shared: one recipe for every method
    seeds: list[int] = field(default_factory=lambda: list(range(8)))
    suite: SuiteConfig = field(default_factory=SuiteConfig)
    method: Any = None  # the method's own config dataclass, set by bench.config.resolve
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


PROFILES = ("paper", "quick", "demo")
RECIPES = ("method", "shared")
DATA_SOURCES = ("auto", "real", "synthetic")

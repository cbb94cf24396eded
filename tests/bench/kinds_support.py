"""Test-only plug-ins for the core's new paths: a generative method with two pre-training stages, an
evaluation-only protocol that needs the generation capability, and a metric whose direction is ``min`` with a
display scale. Registered only inside :func:`registered` (never in the real registries otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from bench.api import GENERATION, JobContext, Method, MethodConfig, Protocol, Requirements
from bench.data.base import build_dataset, pc_normalize
from bench.data.side import SideData
from bench.data.synthetic.side import write_side_data
from bench.metrics.base import MIN, Metric
from bench.registry import METHODS, METRICS, PROTOCOLS, SIDE_DATA
from bench.results import HONEST, PAPER, JobResult, MetricResult, Statistic
from bench.schema import SuiteConfig
from extensions import ops

POINTS = 64


@dataclass
class ToyGeneratorConfig(MethodConfig):
    name: str = "toy_generator"
    points: int = POINTS


class ToyGenerator(Method):
    """Learns one template cloud (stage ``template``) and then a noise scale (stage ``spread``, template frozen);
    ``generate`` samples template + noise. Counts its ``on_step`` calls and remembers the stages it started."""

    name = "toy_generator"
    capabilities = frozenset({GENERATION})
    checkpoint_prefix = None
    config_class = ToyGeneratorConfig
    pretrain_dataset = "shapenet55"

    def __init__(self, cfg: ToyGeneratorConfig) -> None:
        super().__init__(cfg)
        self.template = nn.Parameter(torch.rand(cfg.points, 3) - 0.5)
        self.log_sigma = nn.Parameter(torch.zeros(()))
        self.steps = 0
        self.stages_started: list[str] = []

    def on_stage_start(self, stage) -> None:
        super().on_stage_start(stage)
        self.stages_started.append(stage.name)

    def pretrain_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        xyz = batch["xyz"]
        if self.stage == "spread":  # the target spread of each shape comes from side data, joined by sample id
            target = batch["toy_target.sigma"].float().mean()
            return {"loss": (self.log_sigma.exp() - target) ** 2, "target": target.detach()}
        return {"loss": ops.chamfer_l2(self.template.expand(len(xyz), -1, -1).contiguous(), xyz)}

    def on_step(self, step: int, epoch: int) -> dict[str, float]:
        self.steps += 1
        return {"sigma": float(self.log_sigma.detach().exp())}

    def generate(self, n: int, points: int, condition=None, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(n, points, 3, generator=generator)
        return self.template.detach() + self.log_sigma.exp().detach() * noise


class ToyChamfer(Metric):
    """Mean over generated clouds of the Chamfer-L2 to the nearest reference cloud (lower is better, x10^3)."""

    name = "toy_cd"
    direction = MIN
    unit = ""
    scale = 1e3

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.values: list[float] = []

    def update(self, preds: Tensor, target: Tensor) -> None:
        for cloud in preds:
            pairs = [float(ops.chamfer_l2(cloud[None], ref[None])) for ref in target]
            self.values.append(min(pairs))

    def compute(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")


@dataclass
class ToyGenerationSuite(SuiteConfig):
    samples: int = 4


class ToyGeneration(Protocol):
    """Evaluation only (no epochs): sample from the whole pre-trained method, score against the test split."""

    name = "toy_generation"
    requires = Requirements(frozenset({GENERATION}))
    suite_class = ToyGenerationSuite

    def run(self, ctx: JobContext) -> JobResult:
        suite = ctx.cfg.suite
        method = ctx.pretrained_method()
        refs = build_dataset(suite.dataset, Path(ctx.data_root), "test")
        target = torch.stack([torch.from_numpy(pc_normalize(refs.load(i)["xyz"][:POINTS])) for i in range(len(refs))])
        samples = method.generate(suite.samples, POINTS, generator=torch.Generator().manual_seed(ctx.seed))
        metric = METRICS.get("toy_cd")()
        metric.update(samples, target)
        value = metric.compute()
        stats = {"mean": Statistic(value, "mean over samples (no selection)", HONEST),
                 "reported": Statistic(value, "the same value, as a paper would report it", PAPER)}
        details = {"sigma": float(method.log_sigma.detach().exp())}  # trained by stage 2: the whole method was loaded
        return JobResult([MetricResult.of(METRICS.get("toy_cd").spec(), stats)], [], details)


SUITE_YAML = """
suite:
  name: toy_generation
  protocol: toy_generation
  dataset: shapenet55
  variants: [default]
  metric: toy_cd
  samples: 3
"""
STAGES_YAML = """
pretrain:
  npoints: 64
  stages:
    - {name: template, trainer: {epochs: 2}}
    - {name: spread, trainer: {epochs: %d}, freeze: [template], side_data: [toy_target]}
"""
SIDE = SideData("toy_target", "toy/target.h5", ("sigma",), "per-shape target spread (test only)")
TARGET = 0.25


def write_side(data_root: Path, drop: int = 0) -> Path:
    """The toy side data for the tiny ShapeNet-55 train split (``drop``: leave out that many ids)."""
    train = build_dataset("shapenet55", data_root / "synthetic", "train")
    ids = [train.sample_id(i) for i in range(len(train))][drop:]
    return write_side_data(SIDE.file(data_root / "synthetic"), ids, {"sigma": [np.float32(TARGET)] * len(ids)})


@contextmanager
def registered(suites_dir: Path) -> Iterator[Path]:
    """The toy method, metric and protocol registered, and ``suites_dir`` holding toy_generation.yaml beside a
    copy of the real suites; yields ``suites_dir``."""
    import shutil

    from bench import config

    for path in config.SUITES_DIR.glob("*.yaml"):
        shutil.copy(path, suites_dir / path.name)
    (suites_dir / "toy_generation.yaml").write_text(SUITE_YAML)
    with ExitStack() as stack:
        stack.enter_context(METHODS.temporarily("toy_generator", ToyGenerator))
        stack.enter_context(METRICS.temporarily("toy_cd", ToyChamfer))
        stack.enter_context(PROTOCOLS.temporarily("toy_generation", ToyGeneration))
        stack.enter_context(SIDE_DATA.temporarily("toy_target", SIDE))
        yield suites_dir

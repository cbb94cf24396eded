"""Conditions of a generator as AdaLN vectors and attention prefixes (G3PT's conditioning, wave2.md 2.2 item 6).

:class:`ConditionEncoder` turns one condition kind per batch into ``(cond (B, width), prefix (B, P, dim) | None)``:

- ``class``: a learnable embedding per ShapeNet-55 synset; row ``num_classes`` is the null condition, which every
  dropped sample (classifier-free guidance) and every unconditional sample gets (VAR's ``class_emb`` + cond drop).
- ``text``: a frozen text encoder's sentence embedding (:mod:`methods.blocks.teachers`, e.g. MiniLM), through a
  Linear, as the AdaLN vector (G3PT feeds CLIP text features through adaLN). Embeddings are cached per caption.
- ``image``: depth images (:func:`bench.data.render.depth_images`; V fixed views) -> the frozen image encoder's
  spatial tokens (e.g. EfficientNet-Lite0's 7 x 7 head map at 224 px) -> ``prefix`` tokens the transformer attends
  to (G3PT prefixes DINOv2 tokens with an attention mask), and their mean through a Linear as the AdaLN vector.
  A dropped image sample gets the null AdaLN vector and ``null_prefix`` (learned tokens), so the conditional and
  unconditional halves of a guided batch have the same length.

The frozen encoders are held outside the module tree (:class:`FrozenEncoders`): they are not trained, so they are
not in the state dict (a checkpoint holds what was learned; the encoder names are config, so they are in every
pre-training hash) and ``.to(device)`` moves them on first use. Captions for training come from the category
templates (no captioning model runs offline): a template drawn per sample.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.api import Condition
from bench.errors import ConfigError
from bench.registry import TEACHERS
from methods.blocks.projection import to_teacher_input
from methods.blocks.teachers import CAPTION_TEMPLATES, RANDOM_SOURCE, Teacher, load_teacher, sha256_of

CONDITIONS = ("class", "text", "image")


@dataclass
class TextEncoderConfig:
    """A registered text teacher (``minilm`` needs ``pointbench[teachers]``; ``random_text`` is a test stand-in)."""

    name: str = "minilm"


@dataclass
class ImageEncoderConfig:
    """A registered image teacher, its input size, and the depth renders it sees (views x render px)."""

    name: str = "efficientnet_lite0"
    ckpt: str | None = None  # local weights, for teachers that load a file (dinov2_*: the official .pth)
    views: int = 2
    render: int = 112  # depth render px (then resized to input_size)
    input_size: int = 224


class FrozenEncoders:
    """The frozen text and image teachers, loaded on first use (a plain object: not part of the state dict)."""

    def __init__(self, text: TextEncoderConfig, image: ImageEncoderConfig, kinds: Sequence[str]) -> None:
        self.text_cfg, self.image_cfg, self.kinds = text, image, tuple(kinds)
        self._text: Teacher | None = None
        self._image: Teacher | None = None
        self._captions: dict[str, Tensor] = {}

    def text(self) -> Teacher:
        if self._text is None:
            self._text = load_teacher(self.text_cfg.name)
            _require_kind(self._text, "text", "method.text_encoder")
        return self._text

    def image(self) -> Teacher:
        if self._image is None:
            cfg = self.image_cfg
            self._image = load_teacher(cfg.name) if cfg.ckpt is None else load_teacher_file(cfg.name, cfg.ckpt)
            _require_kind(self._image, "image", "method.image_encoder")
        return self._image

    def caption_embeddings(self, captions: Sequence[str]) -> Tensor:
        """(n, dim) on the CPU, embedding each distinct caption once per process."""
        todo = sorted({c for c in captions if c not in self._captions})
        if todo:
            for caption, row in zip(todo, self.text().cpu().embed(todo).float().cpu(), strict=True):
                self._captions[caption] = row
        return torch.stack([self._captions[c] for c in captions])

    def image_tokens(self, depth: Tensor) -> Tensor:
        """(B, V, H, W) depth images -> (B, V * P, dim) tokens of the frozen image encoder."""
        teacher = self.image().to(depth.device)
        images = to_teacher_input(depth, self.image_cfg.input_size, teacher.input_mean, teacher.input_std)
        tokens = teacher.tokens(images)
        return tokens.reshape(depth.shape[0], -1, tokens.shape[-1]).float()

    def describe(self) -> dict:
        """Provenance of the encoders the conditions use, from their registered specs (nothing is loaded)."""
        out = {}
        if "text" in self.kinds:
            out["text_encoder"] = _spec_record(self.text_cfg.name)
        if "image" in self.kinds:
            image = self.image_cfg
            out["image_encoder"] = {**_spec_record(image.name, image.ckpt), "ckpt": image.ckpt,
                                    "views": self.image_cfg.views, "render_px": self.image_cfg.render,
                                    "input_px": self.image_cfg.input_size}
        return out


def _spec_record(name: str, ckpt: str | None = None) -> dict:
    """name, kind, dim, source, sha256 (pinned; of the local file when one is given; RANDOM_SOURCE for the random
    stand-ins) and is_test_teacher."""
    spec = TEACHERS.get(name)
    sha = spec.sha256 or (_file_sha256(ckpt) if ckpt else RANDOM_SOURCE if spec.is_test_teacher else None)
    return {"name": spec.name, "kind": spec.kind, "dim": spec.dim, "source": spec.source, "sha256": sha,
            "is_test_teacher": spec.is_test_teacher}


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str) -> str | None:
    return sha256_of(Path(path)) if Path(path).is_file() else None


def load_teacher_file(name: str, ckpt: str) -> Teacher:
    """A teacher from a local weight file (``method.image_encoder.ckpt``): the registered spec must accept one."""
    spec = TEACHERS.get(name)
    loader = getattr(spec, "load_file", None)
    if loader is None:
        raise ConfigError(f'method.image_encoder.ckpt={ckpt!r}: teacher "{name}" loads its own packaged weights and '
                          "takes no file; a file needs a teacher that loads one (e.g. dinov2_vits14).")
    return loader(ckpt)


def _require_kind(teacher: Teacher, kind: str, key: str) -> None:
    if teacher.spec.kind != kind:
        raise ConfigError(f'{key}.name="{teacher.spec.name}" is a {teacher.spec.kind} encoder; {key} needs a '
                          f"{kind} one.")


class ConditionEncoder(nn.Module):
    """One condition kind per call -> (AdaLN vector, prefix tokens or None); see the module docstring."""

    def __init__(self, width: int, num_classes: int, kinds: Sequence[str], text: TextEncoderConfig,
                 image: ImageEncoderConfig, text_dim: int, image_dim: int, null_tokens: int) -> None:  # fmt: skip
        super().__init__()
        self.num_classes, self.kinds = num_classes, tuple(kinds)
        self.frozen = FrozenEncoders(text, image, kinds)
        self.class_embed = nn.Embedding(num_classes + 1, width)
        nn.init.trunc_normal_(self.class_embed.weight, std=0.02)
        if "text" in kinds:
            self.text_proj = nn.Linear(text_dim, width)
        if "image" in kinds:
            self.image_proj = nn.Linear(image_dim, width)
            self.null_prefix = nn.Parameter(torch.zeros(1, null_tokens, image_dim))
            nn.init.trunc_normal_(self.null_prefix, std=0.02)

    def null(self, n: int, device) -> Tensor:
        return self.class_embed(torch.full((n,), self.num_classes, dtype=torch.long, device=device))

    def forward(self, kind: str | None, n: int, device, labels: Tensor | None = None,
                captions: Sequence[str] | None = None, depth: Tensor | None = None,
                drop: Tensor | None = None) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """``kind`` None: unconditional. ``drop`` (n,) bool: samples given the null condition instead."""
        null = self.null(n, device)
        drop = torch.zeros(n, dtype=torch.bool, device=device) if drop is None else drop.to(device)
        if kind is None:
            return null, None
        if kind not in self.kinds:
            raise ConfigError(f"this model was built for the conditions {', '.join(self.kinds)} (method.conditions); "
                              f"it cannot take a {kind!r} condition.")
        if kind == "class":
            labels = labels.long().to(device)
            return self.class_embed(torch.where(drop, torch.full_like(labels, self.num_classes), labels)), None
        if kind == "text":
            emb = self.text_proj(self.frozen.caption_embeddings(list(captions)).to(device))
            return torch.where(drop[:, None], null, emb), None
        tokens = self.frozen.image_tokens(depth.to(device).float())
        prefix = torch.where(drop[:, None, None], self.null_prefix_like(tokens), tokens)
        cond = torch.where(drop[:, None], null, self.image_proj(tokens.mean(dim=1)))
        return cond, prefix

    def null_prefix_like(self, tokens: Tensor) -> Tensor:
        """The learned null prefix, repeated to the token count of ``tokens`` (V views x P tokens)."""
        reps = -(-tokens.shape[1] // self.null_prefix.shape[1])
        return self.null_prefix.repeat(1, reps, 1)[:, : tokens.shape[1]].expand(tokens.shape[0], -1, -1)


def condition_inputs(condition: Condition, views: int, render: int) -> dict:
    """A harness :class:`~bench.api.Condition` -> keyword arguments of :meth:`ConditionEncoder.forward`: images
    (n, V, C, H, W) become (n, V, H, W) depth (channel 0); V must match the model's views."""
    if condition.kind == "class":
        return {"labels": condition.labels}
    if condition.kind == "text":
        return {"captions": list(condition.texts)}
    if condition.kind == "image":
        images = condition.images
        if images.dim() != 5 or images.shape[1] != views:
            raise ConfigError(f"an image condition needs (n, {views}, C, H, W) images (method.image_encoder.views="
                              f"{views}), got {tuple(images.shape)}")
        return {"depth": images[:, :, 0]}
    raise ConfigError(f"condition kind {condition.kind!r} is not one of {', '.join(CONDITIONS)}")


def training_captions(labels: Tensor, class_names: Sequence[str],
                      generator: torch.Generator | None = None) -> list[str]:
    """One caption per sample: a template drawn uniformly from :data:`CAPTION_TEMPLATES` with its class name."""
    picks = torch.randint(len(CAPTION_TEMPLATES), (len(labels),), generator=generator)
    return [CAPTION_TEMPLATES[int(t)].format(class_names[int(c)]) for t, c in zip(picks, labels.cpu(), strict=True)]

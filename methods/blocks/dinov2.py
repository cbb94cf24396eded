"""DINOv2 image encoders from a LOCAL official checkpoint (``method.image_encoder.ckpt=<file>``), via timm.

G3PT conditions on DINOv2 ViT-L/14 tokens (generation.md 3.2). Nothing is downloaded: the weights are the file the
user gives, in the layout of the official ``dinov2_vit{s,b,l}14_pretrain.pth`` (facebookresearch/dinov2: keys
``cls_token``, ``pos_embed`` (1, 1 + 37 x 37, C) for 518 px, ``mask_token``, ``patch_embed.proj.*``,
``blocks.<i>.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm.*``). timm's
``vit_*_patch14_dinov2`` models use the same names; the only official key timm lacks is ``mask_token`` (used in
DINOv2's masked pre-training, not at inference), which is dropped; every other key must load strictly. The
position embedding is interpolated to the input size at run time (``dynamic_img_size``).

``tokens``: the patch tokens after the final norm, (n, (size / 14)^2, C), 256 at 224 px; ``embed``: the l2-normalised
cls token. Input normalisation: ImageNet mean / std (DINOv2's transforms). The file's sha256 is computed and
recorded (no checksum is pinned: the file is the user's). timm is in the ``teachers`` extra.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import CheckpointError, ConfigError
from bench.registry import TEACHERS
from methods.blocks.teachers import EXTRA_HINT, Teacher, TeacherSpec, TeacherUnavailableError, sha256_of

#: teacher name -> (timm architecture, width)
DINOV2_MODELS = {"dinov2_vits14": ("vit_small_patch14_dinov2", 384), "dinov2_vitb14": ("vit_base_patch14_dinov2", 768),
                 "dinov2_vitl14": ("vit_large_patch14_dinov2", 1024)}
DROPPED_KEYS = ("mask_token",)


class DINOv2Teacher(Teacher):
    """A frozen timm DINOv2 ViT holding the official weights (see the module docstring)."""

    batch_size = 32

    def __init__(self, spec: TeacherSpec, net: torch.nn.Module, sha256: str) -> None:
        super().__init__(spec)
        self.net, self.file_sha256 = net, sha256

    @torch.no_grad()
    def tokens(self, inputs: Tensor) -> Tensor:
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, len(inputs), self.batch_size):
            features = self.net.forward_features(inputs[i : i + self.batch_size].to(device).float())
            out.append(features[:, self.net.num_prefix_tokens :])
        return torch.cat(out)

    @torch.no_grad()
    def embed(self, inputs: Tensor) -> Tensor:
        device = next(self.net.parameters()).device
        features = self.net.forward_features(inputs.to(device).float())
        return F.normalize(features[:, 0], dim=-1)


def load_dinov2_file(name: str, path: str) -> DINOv2Teacher:
    """Build ``name``'s timm architecture and load the official state dict from ``path`` strictly (after dropping
    :data:`DROPPED_KEYS`); a missing file, package, or misfit raises naming it."""
    try:
        import timm
    except ImportError:
        raise TeacherUnavailableError(f'teacher "{name}" needs timm: {EXTRA_HINT}') from None
    except Exception as exc:  # noqa: BLE001 (e.g. a torchvision built for another torch fails at import)
        raise TeacherUnavailableError(f'teacher "{name}" needs timm, which is installed but does not import '
                                      f"({type(exc).__name__}: {str(exc).splitlines()[0]}); reinstall it with "
                                      f"a torchvision that matches this torch ({EXTRA_HINT})") from None
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"method.image_encoder.ckpt={path!r}: no such file (a local {name} checkpoint).")
    arch, _ = DINOV2_MODELS[name]
    net = timm.create_model(arch, pretrained=False, dynamic_img_size=True, num_classes=0)
    state = torch.load(file, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if k not in DROPPED_KEYS}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{file}: not an official {name} checkpoint: {exc}") from None
    teacher = DINOv2Teacher(TEACHERS.get(name), net, sha256_of(file))
    return teacher.freeze()


def _needs_file(name: str):
    def load() -> Teacher:
        raise ConfigError(f'teacher "{name}" has no packaged weights: give a local official checkpoint with '
                          f"method.image_encoder.ckpt=<file> (nothing is downloaded).")

    return load


def _file_loader(name: str):
    def load_file(path: str) -> Teacher:
        return load_dinov2_file(name, path)

    return load_file


for _name, (_arch, _dim) in DINOV2_MODELS.items():
    TEACHERS.add(_name, TeacherSpec(_name, "image", _dim, f"local file (timm {_arch})", _needs_file(_name),
                                    requires=("timm",), load_file=_file_loader(_name)))

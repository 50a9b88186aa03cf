"""The auxiliary classifier of cell networks (pdas §4.1: weight 0.4, connected from the second reduction cell).

The DARTS/NASNet CIFAR head pools 8x8 maps with a 5x5 window and stride 3 down to 2x2. Fashion-MNIST's
28x28 images give 7x7 maps there, which that pooling turns into 1x1 and the following 2x2 convolution
cannot take; :class:`AuxiliaryPool` keeps the CIFAR pooling where it yields 2x2 and pools adaptively to
2x2 otherwise. The parameter count does not depend on the input size.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['AuxiliaryPool', 'AuxiliaryHead']


class AuxiliaryPool(nn.Module):
    """5x5 average pooling with stride 3 when that gives 2x2 maps (CIFAR: 8x8), else adaptive pooling to 2x2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h >= 5 and w >= 5 and (h - 5) // 3 + 1 == 2 and (w - 5) // 3 + 1 == 2:
            return F.avg_pool2d(x, 5, stride=3, padding=0, count_include_pad=False)
        return F.adaptive_avg_pool2d(x, 2)


class AuxiliaryHead(nn.Module):
    """ReLU, pool to 2x2, 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear classifier."""

    def __init__(self, channels: int, num_classes: int, affine: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False), AuxiliaryPool(),
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128, affine=affine), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768, affine=affine), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))

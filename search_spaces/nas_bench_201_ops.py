"""Operations of the NAS-Bench-201 cell and macro skeleton (Dong & Yang 2020; advantagenas Appendix D)."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ['OPERATIONS', 'ReLUConvBN', 'ResidualReduction', 'Zero', 'make_operation']

OPERATIONS = ('none', 'skip_connect', 'conv_1x1', 'conv_3x3', 'avg_pool_3x3')
"""Candidate names, in NNI's hub order (``none`` is the zero operation)."""


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BatchNorm, the NAS-Bench-201 convolution."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    """The ``none`` operation: an all-zero tensor shaped like the input (no gradient path to the weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.)


def make_operation(name: str, channels: int) -> nn.Module:
    """A cell edge operation on ``channels`` channels, stride 1 (cells never change shape)."""
    if name == 'none':
        return Zero()
    if name == 'skip_connect':
        return nn.Identity()
    if name == 'conv_1x1':
        return ReLUConvBN(channels, channels, 1)
    if name == 'conv_3x3':
        return ReLUConvBN(channels, channels, 3)
    if name == 'avg_pool_3x3':
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f'unknown NAS-Bench-201 operation {name!r}; known: {list(OPERATIONS)}')


class ResidualReduction(nn.Module):
    """The basic residual block between stages: halves the resolution, ``c_in`` -> ``c_out`` channels.

    Main path ReLU-Conv3x3(stride 2)-BN -> ReLU-Conv3x3-BN; shortcut AvgPool(2) -> Conv1x1 (as NAS-Bench-201).
    The pooling uses ``ceil_mode`` so odd sizes (e.g. 7x7) match the strided convolution; for even sizes this
    is exactly NAS-Bench-201's block.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True),
                                      nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))

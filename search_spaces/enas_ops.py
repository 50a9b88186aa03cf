"""Operations of the ENAS micro (cell) space (asng-nas §3.2, pdas §4.1).

Five candidates per edge: ``identity``, ``sep_conv_3x3``, ``sep_conv_5x5`` (separable convolutions applied
twice, each ReLU-Conv-BN), ``avg_pool_3x3`` and ``max_pool_3x3``. With stride 2 (reduction cell, edges
from the cell inputs) the identity becomes a :class:`FactorizedReduce` and the others stride their first
layer. All keep the channel count; odd resolutions give ``ceil(H / 2)`` everywhere.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['ENAS_OPERATIONS', 'ReLUConvBN', 'SepConv', 'FactorizedReduce', 'make_operation', 'drop_path']

ENAS_OPERATIONS = ('identity', 'sep_conv_3x3', 'sep_conv_5x5', 'avg_pool_3x3', 'max_pool_3x3')


class ReLUConvBN(nn.Sequential):
    """ReLU, ``k x k`` convolution without bias, BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1, affine: bool = True):
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, bias=False),
                         nn.BatchNorm2d(c_out, affine=affine))


class SepConv(nn.Sequential):
    """Separable convolution applied twice, each as ReLU, depthwise ``k x k``, pointwise 1x1, BN (pdas §4.1)."""

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, affine: bool = True):
        layers: list[nn.Module] = []
        for i in range(2):
            layers += [nn.ReLU(inplace=False),
                       nn.Conv2d(channels, channels, kernel_size, stride if i == 0 else 1, kernel_size // 2,
                                 groups=channels, bias=False),
                       nn.Conv2d(channels, channels, 1, bias=False),
                       nn.BatchNorm2d(channels, affine=affine)]
        super().__init__(*layers)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two stride-2 1x1 convs on the input and on it shifted by one.

    ``c_out`` may be odd (the second conv gives the larger half); odd input sizes are padded so both
    halves have ``ceil(H / 2)`` rows and columns.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True):
        super().__init__()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def make_operation(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    """The candidate ``name`` of :data:`ENAS_OPERATIONS` on ``channels`` channels with ``stride`` 1 or 2."""
    if stride not in (1, 2):
        raise ValueError(f'stride must be 1 or 2, got {stride!r}')
    if name == 'identity':
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine)
    if name in ('sep_conv_3x3', 'sep_conv_5x5'):
        return SepConv(channels, 3 if name == 'sep_conv_3x3' else 5, stride, affine)
    if name == 'avg_pool_3x3':
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == 'max_pool_3x3':
        return nn.MaxPool2d(3, stride=stride, padding=1)
    raise ValueError(f'unknown ENAS operation {name!r}; allowed: {list(ENAS_OPERATIONS)}')


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole examples of ``x`` with probability ``drop_prob`` and rescale the rest (ScheduledDropPath)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep

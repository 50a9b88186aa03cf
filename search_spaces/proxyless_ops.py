"""Building blocks of the ProxylessNAS mobile space (multi-complexity-importance-sampling §4.2).

MBConv (MobileNetV2 inverted residual): 1x1 expansion to ``round(c_in x e)`` channels, BN, ReLU6;
depthwise ``k x k`` (stride), BN, ReLU6; 1x1 projection, BN. The searchable layer (:class:`MobileLayer`)
chooses among MBConvs with kernel {3, 5, 7} x expansion {3, 6} and, where it has an identity shortcut
(all but the first layer of a stage), ``zero``: the layer is then skipped (ProxylessNAS's zero op).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from nni.nas.nn.pytorch import LayerChoice

__all__ = ['make_divisible', 'candidate_names', 'ConvBNReLU6', 'MBConv', 'Zero', 'MobileLayer']


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (at least ``min_value``), never 10% below ``value``."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def candidate_names(kernel_sizes=(3, 5, 7), expand_ratios=(3, 6)) -> list[str]:
    """``['k3e3', 'k5e3', 'k7e3', 'k3e6', 'k5e6', 'k7e6']`` (NNI hub ``ProxylessNAS`` naming)."""
    return [f'k{k}e{e}' for e in expand_ratios for k in kernel_sizes]


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias), BN, ReLU6 (``activation=False``: no ReLU6)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 activation: bool = True):
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, groups=groups,
                                             bias=False), nn.BatchNorm2d(c_out)]
        if activation:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Sequential):
    """Inverted bottleneck: expand (skipped when ``expand_ratio == 1``), depthwise, linear projection."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, expand_ratio: int, stride: int = 1):
        hidden = int(round(c_in * expand_ratio))
        layers: list[nn.Module] = [] if expand_ratio == 1 else [ConvBNReLU6(c_in, hidden, 1)]
        layers += [ConvBNReLU6(hidden, hidden, kernel_size, stride, groups=hidden),
                   ConvBNReLU6(hidden, c_out, 1, activation=False)]
        super().__init__(*layers)


class Zero(nn.Module):
    """The ``zero`` candidate: no output, so a layer with an identity shortcut passes its input unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class MobileLayer(nn.Module):
    """One searchable layer: ``LayerChoice`` ``label`` over MBConvs (+ ``zero``), identity shortcut if ``residual``.

    ``residual`` requires ``stride == 1`` and ``c_in == c_out``; only then may ``zero`` be a candidate.
    """

    def __init__(self, label: str, c_in: int, c_out: int, stride: int, residual: bool, include_zero: bool,
                 kernel_sizes=(3, 5, 7), expand_ratios=(3, 6)):
        super().__init__()
        if residual and (stride != 1 or c_in != c_out):
            raise ValueError('an identity shortcut needs stride 1 and equal input/output channels')
        candidates: dict[str, nn.Module] = {
            f'k{k}e{e}': MBConv(c_in, c_out, k, e, stride) for e in expand_ratios for k in kernel_sizes}
        if residual and include_zero:
            candidates['zero'] = Zero()
        self.residual = residual
        self.op = LayerChoice(candidates, label=label)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.op, Zero):          # fixed network with the layer skipped
            return x
        y = self.op(x)
        return x + y if self.residual else y

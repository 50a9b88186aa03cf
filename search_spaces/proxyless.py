"""The ProxylessNAS mobile search space (Cai et al. 2019) used by multi-complexity search (§4.2).

Network: stem 3x3 conv (32 channels, ReLU6), a fixed depthwise-separable block (16 channels), six
stages of searchable layers (24, 40, 80, 96, 192, 320 channels; 4, 4, 4, 4, 4, 1 layers), a 1x1
feature-mix conv (1280 channels), global average pooling, dropout, linear classifier. Channels scale
with ``width_mult`` (multiples of 8, as ProxylessNAS). Each layer ``stage{s}/layer{l}`` chooses an
MBConv with kernel {3, 5, 7} x expansion {3, 6}; layers other than a stage's first have an identity
shortcut and may also choose ``zero`` (skip the layer). With the default stages that is 21 variables,
6 with 6 categories and 15 with 7: sum K = 141 (multi-complexity §4.2: eta_theta = 1/141).

Why our own and not NNI's hub ``ProxylessNAS``: the hub's stem takes 3 channels only and always has
stride 2, its stage widths, depths and strides are fixed (ImageNet: 32x downsampling, 1x1 maps at
28 px), and it searches depth with ``Repeat`` (``s{i}_depth``) instead of a zero op per layer, which is
the paper's encoding of 21 categorical variables. This module is small and has none of those limits:
``stages`` sets (channels, layers, stride) per stage and ``stem_stride`` the stem, so 28x28 and 32x32
inputs keep useful resolutions (:data:`SMALL_IMAGE_STAGES`: 8x downsampling), and
:data:`IMAGENET_STAGES` with ``stem_stride=2`` is the original network.

Fixed networks: ``space.freeze(arch)`` (weights of the chosen candidates) or
``build_proxyless_network(arch, ...)`` / ``nni.nas.space.model_context(arch)`` (fresh weights);
NNI's ``RandomOneShot``, ``DARTS``, ``GumbelDARTS`` and ``Proxyless`` run on the space.
"""
from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from nni.mutable import Categorical, Mutable, label_scope
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import current_model, model_context

from .proxyless_ops import ConvBNReLU6, MBConv, MobileLayer, candidate_names, make_divisible
from .arch_value_checks import positive_int
from .validation import InvalidArchitectureError, validate_architecture

__all__ = ['IMAGENET_STAGES', 'SMALL_IMAGE_STAGES', 'ProxylessSpace', 'build_proxyless_network',
           'proxyless_mutables', 'validate_proxyless_architecture', 'InvalidArchitectureError']

SPACE_NAME = 'ProxylessNAS space'

IMAGENET_STAGES = ((24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
"""(channels, layers, stride) of ProxylessNAS's mobile space; with ``stem_stride=2``: 224 px -> 7 px."""

SMALL_IMAGE_STAGES = ((24, 4, 1), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1))
"""As :data:`IMAGENET_STAGES` without the first stage's stride; with ``stem_stride=1``: 32 px -> 4 px."""


def _checked_stages(stages: Any) -> tuple[tuple[int, int, int], ...]:
    try:
        result = tuple(tuple(int(v) for v in stage) for stage in stages)
    except (TypeError, ValueError):
        result = ()
    if not result or any(len(s) != 3 or s[0] < 1 or s[1] < 1 or s[2] not in (1, 2) for s in result):
        raise ValueError(f'stages must be a non-empty sequence of (channels >= 1, layers >= 1, stride 1 or 2), '
                         f'got {stages!r}')
    return result


def proxyless_mutables(stages: Sequence[Sequence[int]] = SMALL_IMAGE_STAGES, include_zero: bool = True,
                       kernel_sizes=(3, 5, 7), expand_ratios=(3, 6)) -> dict[str, Mutable]:
    """The space's variables without building it: ``{'stage1/layer0': Categorical([...]), ...}``."""
    names = candidate_names(kernel_sizes, expand_ratios)
    mutables: list[Mutable] = []
    for s, (_, layers, _) in enumerate(_checked_stages(stages), start=1):
        with label_scope(f'stage{s}'):
            for layer in range(layers):
                values = names + (['zero'] if include_zero and layer > 0 else [])
                mutables.append(Categorical(values, label=f'layer{layer}'))
    return {m.label: m for m in mutables}


def validate_proxyless_architecture(arch: Any, stages: Sequence[Sequence[int]] = SMALL_IMAGE_STAGES,
                                    include_zero: bool = True, kernel_sizes=(3, 5, 7),
                                    expand_ratios=(3, 6)) -> dict[str, Any]:
    """The architecture restricted to the space's labels; errors name the label and its allowed values."""
    return validate_architecture(proxyless_mutables(stages, include_zero, kernel_sizes, expand_ratios), arch,
                                 SPACE_NAME)


class ProxylessSpace(ModelSpace):
    """ProxylessNAS mobile space (multi-complexity §4.2), sized by ``width_mult`` and ``stages``.

    Parameters
    ----------
    num_classes, in_channels
        Classes and image channels (1 for Fashion-MNIST, 3 for CIFAR-10). Any resolution works.
    width_mult
        Multiplies every width (rounded to multiples of 8); the head stays 1280 for ``width_mult <= 1``
        unless ``head_channels`` is given.
    stages
        ``(channels, layers, stride)`` per stage: :data:`SMALL_IMAGE_STAGES` (default) or
        :data:`IMAGENET_STAGES`.
    stem_stride
        Stride of the stem conv (1 for 28/32 px images, 2 for ImageNet).
    include_zero
        Offer ``zero`` (skip the layer) on layers with an identity shortcut.
    head_channels
        Channels of the feature-mix conv (default: ProxylessNAS's 1280 rule).
    dropout
        Dropout before the classifier.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                 stages: Sequence[Sequence[int]] = SMALL_IMAGE_STAGES, stem_stride: int = 1, include_zero: bool = True,
                 head_channels: int | None = None, dropout: float = 0.0,
                 kernel_sizes: Sequence[int] = (3, 5, 7), expand_ratios: Sequence[int] = (3, 6)):
        super().__init__()
        for name, value in (('num_classes', num_classes), ('in_channels', in_channels)):
            positive_int(name, value)
        if not (isinstance(width_mult, numbers.Real) and width_mult > 0):
            raise ValueError(f'width_mult must be a positive number, got {width_mult!r}')
        if stem_stride not in (1, 2):
            raise ValueError(f'stem_stride must be 1 or 2, got {stem_stride!r}')
        self.init_kwargs = dict(num_classes=int(num_classes), in_channels=int(in_channels), width_mult=float(width_mult),
                                stages=_checked_stages(stages), stem_stride=int(stem_stride),
                                include_zero=bool(include_zero), head_channels=head_channels, dropout=float(dropout),
                                kernel_sizes=tuple(int(k) for k in kernel_sizes),
                                expand_ratios=tuple(int(e) for e in expand_ratios))
        arch = current_model()
        if arch is None:
            self._build(**self.init_kwargs)
        else:
            with model_context(self._validate(arch)):
                self._build(**self.init_kwargs)

    def _validate(self, arch: Any) -> dict[str, Any]:
        kw = self.init_kwargs
        return validate_proxyless_architecture(arch, kw['stages'], kw['include_zero'], kw['kernel_sizes'],
                                               kw['expand_ratios'])

    def _build(self, num_classes: int, in_channels: int, width_mult: float, stages, stem_stride: int,
               include_zero: bool, head_channels: int | None, dropout: float, kernel_sizes, expand_ratios) -> None:
        c_stem = make_divisible(32 * width_mult)
        c_first = make_divisible(16 * width_mult)
        if head_channels is None:
            head_channels = make_divisible(1280 * width_mult) if width_mult > 1.0 else 1280
        self.stem = ConvBNReLU6(in_channels, c_stem, 3, stem_stride)
        self.first_block = MBConv(c_stem, c_first, 3, 1)
        layers: list[MobileLayer] = []
        c_in = c_first
        for s, (channels, depth, stride) in enumerate(stages, start=1):
            c_out = make_divisible(channels * width_mult)
            with label_scope(f'stage{s}'):
                for i in range(depth):
                    layers.append(MobileLayer(f'layer{i}', c_in if i == 0 else c_out, c_out, stride if i == 0 else 1,
                                              residual=i > 0, include_zero=include_zero,
                                              kernel_sizes=kernel_sizes, expand_ratios=expand_ratios))
            c_in = c_out
        self.layers = nn.ModuleList(layers)
        self.feature_mix = ConvBNReLU6(c_in, int(head_channels), 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(int(head_channels), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        for layer in self.layers:
            x = layer(x)
        x = self.pool(self.feature_mix(x)).flatten(1)
        return self.classifier(self.dropout(x))

    def freeze(self, sample: Mapping[str, Any]) -> 'ProxylessSpace':
        """The fixed network of ``sample``, with this (super)net's weights of the chosen candidates."""
        arch = self._validate(sample)
        with model_context(arch):
            fixed = ProxylessSpace(**self.init_kwargs)
        with torch.no_grad():
            for name in ('stem', 'first_block', 'feature_mix', 'classifier'):
                getattr(fixed, name).load_state_dict(getattr(self, name).state_dict())
            for target, source in zip(fixed.layers, self.layers):
                target.op.load_state_dict(source.op[arch[source.op.label]].state_dict())
        return fixed


def build_proxyless_network(arch: Mapping[str, Any], **space_kwargs: Any) -> ProxylessSpace:
    """The fixed network of ``arch`` with fresh weights; ``space_kwargs`` as for :class:`ProxylessSpace`."""
    probe = dict(stages=SMALL_IMAGE_STAGES, include_zero=True, kernel_sizes=(3, 5, 7), expand_ratios=(3, 6))
    probe.update({k: v for k, v in space_kwargs.items() if k in probe})
    arch = validate_proxyless_architecture(arch, **probe)
    with model_context(arch):
        return ProxylessSpace(**space_kwargs)

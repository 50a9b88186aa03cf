"""Symmetric convolutional autoencoder (CAE) search space for inpainting (asng-nas §3.3, pdas §4.2 + App. D).

``CAESpace`` is a plain NNI ``ModelSpace``: N_c hidden (encoder) layers with level-back b; per layer a type
(kernel {1,3,5} x skip connection, 6 types that share no weights), output channels and a connection to one
of the previous b nodes; the output layer reads one of the last b layers; the decoder mirrors the active
layers. Two encodings (``variant``):

* ``'cat'`` -- ASNG-NAS (Cat): ``layer_i/type`` (6 values), ``layer_i/channels`` in {64, 128, 256};
* ``'int'`` -- ASNG-NAS (Int): ``layer_i/kernel`` = ``nni.quniform(.., 1, 3, 1)`` (1x1, 3x3, 5x5),
  ``layer_i/skip`` in {False, True}, ``layer_i/channels`` = ``nni.quniform(.., 64, 256, 1)``;

plus ``layer_i/input`` (i >= 2) and ``output/input`` (node ids; 0 is the input image). Labels, values and
decoding: :mod:`search_spaces.cae_genotype`; layers: :mod:`search_spaces.cae_layers`.

Fixed networks::

    net = space.freeze(arch)                 # inherits the space's (super)net weights
    net = build_cae_network(arch, in_channels=3, width=1.0, variant='cat')   # fresh weights
    with nni.nas.space.model_context(arch):  # same as build_cae_network (NNI's retraining idiom)
        net = CAESpace(in_channels=3)

One-shot: sampling strategies (NNI ``RandomOneShot``, nni-asng's) get :class:`PathSamplingCAE` through
:meth:`CAESpace.extra_oneshot_hooks`. NNI ``DARTS`` / ``GumbelDARTS`` / ``Proxyless`` are refused with an
explanation: the connections change depth and decoder, which a weighted sum of candidates cannot express.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from nni.nas.nn.pytorch import ModelSpace

from .cae_genotype import OUTPUT_LABEL, CAEConfig, LayerGene, decode_architecture
from .cae_layers import CAENetwork, SharedCAEWeights
from .cae_supernet import CAEBody, PathSamplingCAE

__all__ = ['CAESpace', 'CAEConfig', 'CAENetwork', 'LayerGene', 'OUTPUT_LABEL', 'PathSamplingCAE',
           'SharedCAEWeights', 'build_cae_network', 'decode_architecture']


def _config(in_channels: int = 3, num_layers: int = 20, level_back: int = 5, variant: str = 'cat',
            width: float = 1.0, kernel_sizes=(1, 3, 5), channel_choices=(64, 128, 256),
            channel_range=(64, 256)) -> CAEConfig:
    return CAEConfig(in_channels=in_channels, num_layers=num_layers, level_back=level_back, variant=variant,
                     width=width, kernel_sizes=tuple(kernel_sizes), channel_choices=tuple(channel_choices),
                     channel_range=tuple(channel_range))


def build_cae_network(arch: Mapping[str, Any], in_channels: int = 3, num_layers: int = 20, level_back: int = 5,
                      variant: str = 'cat', width: float = 1.0, kernel_sizes=(1, 3, 5),
                      channel_choices=(64, 128, 256), channel_range=(64, 256)) -> CAENetwork:
    """The fixed CAE of ``arch`` (an exported dict of a :class:`CAESpace` with the same arguments), fresh weights.

    Only the active layers are built, with their exact (width-scaled) channel counts. Invalid dicts raise
    :class:`~search_spaces.arch_value_checks.InvalidArchitectureError` naming the label and allowed values.
    """
    config = _config(in_channels, num_layers, level_back, variant, width, kernel_sizes, channel_choices,
                     channel_range)
    return CAENetwork(decode_architecture(arch, config), config.in_channels)


class CAESpace(ModelSpace):
    """The CAE inpainting space (see module docstring). Input and output: images with ``in_channels`` channels.

    Parameters
    ----------
    in_channels
        Image channels C (1 for grey, 3 for RGB); any H x W works.
    num_layers
        N_c, the number of hidden (encoder) layers (20 in the papers).
    level_back
        b: layer i reads one of the nodes max(0, i - b) .. i - 1; the output one of the last b layers (5).
    variant
        ``'cat'`` (categorical type and channels) or ``'int'`` (integer kernel index and channels).
    width
        Multiplier of all channel counts (e.g. 1/16 for CPU tests).
    kernel_sizes, channel_choices, channel_range
        Kernel sizes, categorical channel values (``'cat'``) and integer channel range (``'int'``).
    """

    def __init__(self, in_channels: int = 3, num_layers: int = 20, level_back: int = 5, variant: str = 'cat',
                 width: float = 1.0, kernel_sizes=(1, 3, 5), channel_choices=(64, 128, 256),
                 channel_range=(64, 256)):
        super().__init__()
        self.config = _config(in_channels, num_layers, level_back, variant, width, kernel_sizes, channel_choices,
                              channel_range)
        self.body = CAEBody(self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def freeze(self, sample: Mapping[str, Any]) -> CAENetwork:
        """The fixed child network of ``sample``, with the current (super)net weights sliced into it."""
        return self.body.freeze(sample)

    @classmethod
    def create_fixed_module(cls, sample: dict, *args, **kwargs) -> CAENetwork:
        """``with model_context(arch): CAESpace(...)`` builds the fixed network (fresh weights)."""
        return build_cae_network(sample, *args, **kwargs)

    def extra_oneshot_hooks(self, strategy) -> list:
        """Path sampling for sampling strategies; differentiable NNI strategies are refused with the reason."""
        from nni.nas.strategy import DARTS
        if isinstance(strategy, DARTS):       # also GumbelDARTS and Proxyless
            raise TypeError(
                f'{type(strategy).__name__} is not supported on the CAE space: its connections select which '
                'layers are active, which fixes the depth, the resolutions and the mirrored decoder, so there is '
                'no per-choice weighted sum for a differentiable relaxation. Use a sampling strategy '
                '(nni RandomOneShot, or the ASNG / PDAS / SNG strategies of nni-asng).')
        return [PathSamplingCAE.mutate]

    @property
    def active_layers(self) -> list[LayerGene]:
        """Active layers of the architecture the body currently runs."""
        return self.body.active_layers

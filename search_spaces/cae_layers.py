"""Weights and forward passes of the symmetric CAE (pdas §4.2; asng-nas §3.3).

Each active hidden layer is Conv(k, stride 1 with skip / 2 without) -> ReLU; the decoder mirrors the active
layers in reverse order with deconvolutions of the same kernel and stride, whose output is added to the
mirrored encoder output when the layer has a skip connection, then ReLU. The deconvolution mirroring the
j-th active layer maps the channels of the (j+1)-th (the last one: its own) to its own channels; the output
layer is a 3x3 stride-1 deconvolution to the image channels without activation. No biases, no batch norm
(as in Suganuma et al. 2018 and the ASNG-NAS code). Deconvolutions restore the exact spatial size of the
mirrored layer's input, so images of any HxW work (28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28). A downsampling layer
on a 1-pixel map keeps it at 1 pixel (the ASNG-NAS code skips such layers at run time instead; here the
active set depends on the genotype only, not on the image size).

* :class:`SharedCAEWeights` holds the supernet's max-size weights (one conv + one deconv per layer and
  type; channel counts share weights by slicing, like NNI's ``MixedConv2d``) and runs any architecture.
* :class:`CAENetwork` is a fixed child: only the active layers, exact channel counts.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cae_genotype import CAEConfig, LayerGene

__all__ = ['CAENetwork', 'SharedCAEWeights', 'inherit_weights']


def _deconv_output_padding(in_size: int, target: int, kernel: int, stride: int) -> int:
    """Output padding that makes a transposed convolution (padding k // 2) produce ``target`` pixels."""
    padding = kernel // 2
    return target - ((in_size - 1) * stride - 2 * padding + kernel)


def _init_(weight: torch.Tensor) -> None:
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))      # PyTorch's default for conv weights


class _LayerWeights(nn.Module):
    """Max-size weights of one hidden layer: a conv and a deconv per type (types share nothing)."""

    def __init__(self, config: CAEConfig, conv_in: int):
        super().__init__()
        c = config.max_channels
        self.conv = nn.ParameterDict()
        self.deconv = nn.ParameterDict()
        for name in config.type_names:
            k, _ = config.type_of(name)
            self.conv[name] = nn.Parameter(torch.empty(c, conv_in, k, k))      # Conv2d layout (out, in, k, k)
            self.deconv[name] = nn.Parameter(torch.empty(c, c, k, k))          # ConvTranspose2d (in, out, k, k)
            _init_(self.conv[name])
            _init_(self.deconv[name])


class SharedCAEWeights(nn.Module):
    """All weights of the CAE supernet; :meth:`forward` runs the architecture given as active layer genes."""

    def __init__(self, config: CAEConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(
            _LayerWeights(config, max(config.node_max_channels(n) for n in config.input_candidates(i)))
            for i in range(1, config.num_layers + 1))
        # The output layer reads the decoder's last state: the first active layer's channels, or the
        # image itself when the output may connect to the input (N_c < b).
        candidates = config.output_candidates()
        out_in = max([config.max_channels] * any(n > 0 for n in candidates) + [config.in_channels] * (0 in candidates))
        self.output = nn.Parameter(torch.empty(out_in, config.in_channels, 3, 3))
        _init_(self.output)

    def forward(self, x: torch.Tensor, genes: Sequence[LayerGene]) -> torch.Tensor:
        h, channels = x, x.shape[1]
        in_sizes, features = [], []
        for gene in genes:
            weight = self.layers[gene.index - 1].conv[gene.type_name][:gene.channels, :channels]
            in_sizes.append(tuple(h.shape[-2:]))
            h = F.relu(F.conv2d(h, weight, stride=gene.stride, padding=gene.kernel // 2))
            features.append(h)
            channels = gene.channels
        for j in reversed(range(len(genes))):
            gene = genes[j]
            weight = self.layers[gene.index - 1].deconv[gene.type_name][:channels, :gene.channels]
            padding = tuple(_deconv_output_padding(s, t, gene.kernel, gene.stride)
                            for s, t in zip(h.shape[-2:], in_sizes[j]))
            h = F.conv_transpose2d(h, weight, stride=gene.stride, padding=gene.kernel // 2, output_padding=padding)
            h = F.relu(h + features[j]) if gene.skip else F.relu(h)
            channels = gene.channels
        return F.conv_transpose2d(h, self.output[:channels], padding=1)


class CAENetwork(nn.Module):
    """A fixed CAE: the active layers of one architecture with their exact channel counts.

    ``genes`` lists the active hidden layers in encoder order (see
    :func:`~search_spaces.cae_genotype.decode_architecture`); ``decoder[j]`` mirrors ``encoder[j]``.
    """

    def __init__(self, genes: Sequence[LayerGene], in_channels: int):
        super().__init__()
        self.genes = tuple(genes)
        self.in_channels = in_channels
        widths = [in_channels] + [g.channels for g in self.genes]
        self.encoder = nn.ModuleList(
            nn.Conv2d(widths[j], g.channels, g.kernel, stride=g.stride, padding=g.kernel // 2, bias=False)
            for j, g in enumerate(self.genes))
        decoder_in = [g.channels for g in self.genes[1:]] + widths[-1:]
        self.decoder = nn.ModuleList(
            nn.ConvTranspose2d(decoder_in[j], g.channels, g.kernel, stride=g.stride, padding=g.kernel // 2,
                               bias=False)
            for j, g in enumerate(self.genes))
        self.output = nn.ConvTranspose2d(widths[1] if self.genes else in_channels, in_channels, 3, padding=1,
                                         bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        in_sizes, features = [], []
        for conv in self.encoder:
            in_sizes.append(list(h.shape[-2:]))
            h = F.relu(conv(h))
            features.append(h)
        for j in reversed(range(len(self.genes))):
            h = self.decoder[j](h, output_size=in_sizes[j])
            h = F.relu(h + features[j]) if self.genes[j].skip else F.relu(h)
        return self.output(h)

    def extra_repr(self) -> str:
        layers = ', '.join(f'{g.index}:{g.type_name}/{g.channels}' for g in self.genes)
        return f'active layers [{layers}]'


@torch.no_grad()
def inherit_weights(network: CAENetwork, weights: SharedCAEWeights) -> CAENetwork:
    """Copy the slices of the supernet weights that ``network``'s layers use (same forward, no unused weights)."""
    channels = network.in_channels
    genes = network.genes
    for j, gene in enumerate(genes):
        layer = weights.layers[gene.index - 1]
        network.encoder[j].weight.copy_(layer.conv[gene.type_name][:gene.channels, :channels])
        channels = gene.channels
    for j, gene in enumerate(genes):
        dec_in = genes[j + 1].channels if j + 1 < len(genes) else genes[-1].channels
        network.decoder[j].weight.copy_(weights.layers[gene.index - 1].deconv[gene.type_name][:dec_in, :gene.channels])
    out_in = genes[0].channels if genes else network.in_channels
    network.output.weight.copy_(weights.output[:out_in])
    return network

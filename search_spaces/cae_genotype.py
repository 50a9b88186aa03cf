"""Genotype of the symmetric convolutional autoencoder (CAE) inpainting space: labels, values, decoding.

The encoding is that of pdas §4.2 (Appendix D, figure 2) and asng-nas §3.3, after Suganuma et al. (2018).
Node 0 is the input image and nodes 1..N_c the hidden (encoder) layers. Each hidden layer i has

* a type: kernel {1x1, 3x3, 5x5} x skip connection yes/no (6 types with separate weights), and
* an output channel count ({64, 128, 256}), and
* a connection to one of the nodes max(0, i - b) .. i - 1 (level-back b); layer 1 always reads the input.

The output layer (3x3 deconvolution to the image channels) reads one of the last b nodes. Layers not on the
path from the output back to the input are inactive. Two variants:

* ``'cat'`` (ASNG-NAS (Cat)): type and channels are categorical -> n_theta = sum(K - 1) = 214 at N_c=20, b=5;
* ``'int'`` (ASNG-NAS (Int)): kernel index in [1, 3] and channels in [64, 256] are integers (NNI ``Numerical``
  with quantize 1, one Gaussian each, 2 parameters), skip is a binary categorical -> n_theta = 174.

Labels with a single possible value (layer 1's connection, every connection when b = 1) are omitted.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import nni
from nni.mutable import Mutable, label_scope

from .arch_value_checks import check_mapping, checked_choice, checked_integer, positive_int

__all__ = ['CAEConfig', 'LayerGene', 'OUTPUT_LABEL', 'coerce_sample', 'decode_architecture', 'make_mutables']

SPACE_NAME = 'CAE space'
OUTPUT_LABEL = 'output/input'
VARIANTS = ('cat', 'int')


def type_name(kernel: int, skip: bool) -> str:
    """Name of a layer type, e.g. ``'3x3'`` or ``'5x5_skip'``."""
    return f'{kernel}x{kernel}' + ('_skip' if skip else '')


@dataclass(frozen=True)
class LayerGene:
    """One active hidden layer: its index (1-based), kernel size, skip flag and (scaled) output channels."""

    index: int
    kernel: int
    skip: bool
    channels: int

    @property
    def type_name(self) -> str:
        return type_name(self.kernel, self.skip)

    @property
    def stride(self) -> int:
        """Layers without a skip connection downsample by 2 (pdas §4.2: "either a skip connection or a
        downsampling"); their mirrored deconvolutions upsample by 2."""
        return 1 if self.skip else 2


@dataclass(frozen=True)
class CAEConfig:
    """Shape of a CAE space; ``width`` scales every channel count (``max(1, round(c * width))``)."""

    in_channels: int = 3
    num_layers: int = 20
    level_back: int = 5
    variant: str = 'cat'
    width: float = 1.0
    kernel_sizes: tuple = (1, 3, 5)
    channel_choices: tuple = (64, 128, 256)
    channel_range: tuple = (64, 256)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f'variant must be one of {list(VARIANTS)}, got {self.variant!r}')
        for name in ('in_channels', 'num_layers', 'level_back'):
            positive_int(name, getattr(self, name))
        if not (isinstance(self.width, (int, float)) and self.width > 0):
            raise ValueError(f'width must be a positive number, got {self.width!r}')
        if not self.kernel_sizes or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ValueError(f'kernel_sizes must be odd positive integers, got {self.kernel_sizes!r}')
        if not self.channel_choices or any(c < 1 for c in self.channel_choices):
            raise ValueError(f'channel_choices must be positive integers, got {self.channel_choices!r}')
        low, high = self.channel_range
        if not 1 <= low < high:
            raise ValueError(f'channel_range must be (low, high) with 1 <= low < high, got {self.channel_range!r}')

    # ------------------------------------------------------------------ labels
    @staticmethod
    def type_label(i: int) -> str:
        return f'layer_{i}/type'

    @staticmethod
    def kernel_label(i: int) -> str:
        return f'layer_{i}/kernel'

    @staticmethod
    def skip_label(i: int) -> str:
        return f'layer_{i}/skip'

    @staticmethod
    def channels_label(i: int) -> str:
        return f'layer_{i}/channels'

    @staticmethod
    def input_label(i: int) -> str:
        return f'layer_{i}/input'

    # ------------------------------------------------------------------ values
    @property
    def type_names(self) -> list[str]:
        return [type_name(k, s) for s in (False, True) for k in self.kernel_sizes]

    def type_of(self, name: str) -> tuple[int, bool]:
        """(kernel, skip) of a type name."""
        return {type_name(k, s): (k, s) for s in (False, True) for k in self.kernel_sizes}[name]

    def input_candidates(self, i: int) -> list[int]:
        """Nodes layer i may read: max(0, i - b) .. i - 1 (0 is the input image)."""
        return list(range(max(0, i - self.level_back), i))

    def output_candidates(self) -> list[int]:
        """Nodes the output layer may read: the last b nodes."""
        return list(range(max(0, self.num_layers + 1 - self.level_back), self.num_layers + 1))

    def scaled(self, channels: int) -> int:
        return max(1, int(round(channels * self.width)))

    @property
    def max_channels(self) -> int:
        """Largest (scaled) output channel count of a hidden layer."""
        top = max(self.channel_choices) if self.variant == 'cat' else self.channel_range[1]
        return self.scaled(top)

    def node_max_channels(self, node: int) -> int:
        return self.in_channels if node == 0 else self.max_channels

    def labels(self) -> list[str]:
        """All labels of the space, in the order the mutables are created."""
        return [m.label for m in make_mutables(self)]


def make_mutables(config: CAEConfig) -> list[Mutable]:
    """The NNI mutables of the space (``nni.choice`` / ``nni.quniform``), layer by layer, then the output.

    NNI forbids ``/`` in a label name, so the hierarchical labels are built with ``label_scope``.
    """
    mutables: list[Mutable] = []
    for i in range(1, config.num_layers + 1):
        with label_scope(f'layer_{i}'):
            if config.variant == 'cat':
                mutables.append(nni.choice('type', config.type_names))
                mutables.append(nni.choice('channels', list(config.channel_choices)))
            else:
                # quantize given as a float: NNI warns on an int quantize; the Numerical is the same.
                mutables.append(nni.quniform('kernel', 1, len(config.kernel_sizes), 1.))
                mutables.append(nni.choice('skip', [False, True]))
                mutables.append(nni.quniform('channels', *config.channel_range, 1.))
            candidates = config.input_candidates(i)
            if len(candidates) > 1:
                mutables.append(nni.choice('input', candidates))
    if len(config.output_candidates()) > 1:
        with label_scope('output'):
            mutables.append(nni.choice('input', config.output_candidates()))
    return mutables


def _connection(arch: Mapping[str, Any], label: str, candidates: list[int]) -> int:
    if len(candidates) == 1:
        return candidates[0]
    return checked_choice(arch, label, candidates, SPACE_NAME)


def _layer_gene(arch: Mapping[str, Any], config: CAEConfig, i: int) -> LayerGene:
    if config.variant == 'cat':
        kernel, skip = config.type_of(checked_choice(arch, config.type_label(i), config.type_names, SPACE_NAME))
        channels = checked_choice(arch, config.channels_label(i), list(config.channel_choices), SPACE_NAME)
    else:
        kernel = config.kernel_sizes[checked_integer(arch, config.kernel_label(i), 1, len(config.kernel_sizes),
                                                     SPACE_NAME) - 1]
        skip = checked_choice(arch, config.skip_label(i), [False, True], SPACE_NAME)
        channels = checked_integer(arch, config.channels_label(i), *config.channel_range, SPACE_NAME)
    return LayerGene(index=i, kernel=kernel, skip=bool(skip), channels=config.scaled(channels))


def decode_architecture(arch: Mapping[str, Any], config: CAEConfig) -> list[LayerGene]:
    """The active hidden layers of ``arch`` in encoder order (pdas §4.2: follow the output's connection back).

    Every label of the space is checked (also those of inactive layers), so an invalid dict fails whatever
    its active path; errors name the label and its allowed values.
    """
    check_mapping(arch, SPACE_NAME)
    genes = {i: _layer_gene(arch, config, i) for i in range(1, config.num_layers + 1)}
    sources = {i: _connection(arch, config.input_label(i), config.input_candidates(i))
               for i in range(1, config.num_layers + 1)}
    node = _connection(arch, OUTPUT_LABEL, config.output_candidates())
    active = []
    while node != 0:
        active.append(genes[node])
        node = sources[node]
    return active[::-1]


def coerce_sample(sample: Mapping[str, Any], config: CAEConfig) -> dict[str, Any]:
    """Clip and round integer variables of a (possibly real-valued) sample (asng-nas §3.3, evaluation only)."""
    result = dict(sample)
    if config.variant == 'int':
        bounds = {}
        for i in range(1, config.num_layers + 1):
            bounds[config.kernel_label(i)] = (1, len(config.kernel_sizes))
            bounds[config.channels_label(i)] = config.channel_range
        for label, (low, high) in bounds.items():
            value = result.get(label)
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
                result[label] = int(min(max(round(float(value)), low), high))
    return result

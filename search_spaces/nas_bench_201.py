"""The NAS-Bench-201 cell search space (Dong & Yang 2020) as used by AdvantageNAS (advantagenas §5.2, App. D).

A cell has 4 nodes (0 input, 3 output) and an edge i -> j for every i < j (6 edges); node j is the sum of its
incoming edges. Each edge is a ``LayerChoice`` among ``skip_connect``, ``conv_1x1``, ``conv_3x3`` (ReLU-Conv-BN),
``avg_pool_3x3`` and, with ``include_zero=True``, ``none`` (zero). The macro skeleton is a stem conv, three
stages of N cells with C, 2C, 4C channels separated by a residual block that halves the resolution, then
BN-ReLU, global average pooling and a linear classifier. All cells share one architecture: the labels are
``cell/0_1`` ... ``cell/2_3`` as in NNI's hub ``NasBench201``.

Fixed networks::

    net = space.freeze(arch)                       # inherits the space's (super)net weights
    net = build_nas_bench_201_network(arch, ...)   # fresh weights
    with nni.nas.space.model_context(arch):        # fresh weights, NNI's retraining idiom
        net = NasBench201Space(...)

and the benchmark's architecture strings, ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...~0|...~1|...~2|``:
:func:`arch_to_nb201_string` and :func:`nb201_string_to_arch`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from nni.mutable import label_scope
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from nni.nas.space import model_context

from .arch_value_checks import InvalidArchitectureError, check_mapping, checked_choice, positive_int
from .nas_bench_201_ops import OPERATIONS, ResidualReduction, make_operation

__all__ = ['EDGES', 'LABELS', 'NasBench201Space', 'OPERATIONS', 'arch_to_nb201_string',
           'build_nas_bench_201_network', 'nb201_string_to_arch']

SPACE_NAME = 'NAS-Bench-201 space'
NUM_NODES = 4
EDGES = tuple((i, j) for j in range(1, NUM_NODES) for i in range(j))
"""(from, to) of the 6 edges, in the order of the benchmark string."""
LABELS = tuple(f'cell/{i}_{j}' for i, j in EDGES)

# Operation names in the benchmark's strings and in this space (NNI hub naming).
_TO_STRING = {'none': 'none', 'skip_connect': 'skip_connect', 'conv_1x1': 'nor_conv_1x1',
              'conv_3x3': 'nor_conv_3x3', 'avg_pool_3x3': 'avg_pool_3x3'}
_FROM_STRING = {**{v: k for k, v in _TO_STRING.items()}, **{k: k for k in _TO_STRING}}


def _operations(include_zero: bool, operations: Sequence[str] | None = None) -> list[str]:
    """The candidate operations of every edge, in :data:`OPERATIONS` order."""
    if operations is None:
        return list(OPERATIONS) if include_zero else [op for op in OPERATIONS if op != 'none']
    if isinstance(operations, str) or not all(isinstance(op, str) for op in operations):
        raise InvalidArchitectureError(f'operations must be a list of operation names, got {operations!r}')
    chosen = [_FROM_STRING.get(op, op) for op in operations]
    unknown = [op for op in chosen if op not in OPERATIONS]
    if unknown:
        raise InvalidArchitectureError(f'unknown operation(s) {unknown} in operations; choose from {list(OPERATIONS)}')
    if len(set(chosen)) < 2:
        raise InvalidArchitectureError(f'operations must name at least two different operations, got {operations!r}')
    return [op for op in OPERATIONS if op in chosen]


class NasBench201Cell(nn.Module):
    """One cell: ``LayerChoice`` per edge, labelled ``cell/{i}_{j}`` (shared by all cells of the network)."""

    def __init__(self, channels: int, operations: list[str]):
        super().__init__()
        self.edges = nn.ModuleDict()
        with label_scope('cell'):
            for i, j in EDGES:
                candidates = {op: make_operation(op, channels) for op in operations}
                self.edges[f'{i}_{j}'] = LayerChoice(candidates, label=f'{i}_{j}')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, NUM_NODES):
            nodes.append(sum(self.edges[f'{i}_{j}'](nodes[i]) for i in range(j)))
        return nodes[-1]


class NasBench201Space(ModelSpace):
    """NAS-Bench-201 macro skeleton with one shared searchable cell (advantagenas Appendix D).

    Parameters
    ----------
    channels
        C, the channels of the first stage (then 2C, 4C); 16 in NAS-Bench-201.
    num_cells
        N, cells per stage (5: 15 cells in all).
    num_classes
        Outputs of the linear classifier.
    in_channels
        Image channels (3 for CIFAR-10, 1 for Fashion-MNIST); any resolution works (32x32, 28x28, ...).
    include_zero
        Add the ``none`` (zero) operation to every edge, as in the benchmark (5 candidates). AdvantageNAS's main
        search (§5.2) removes it (4 candidates), its Table 4 keeps it.
    operations
        A subset of the operations (this space's or the benchmark's names) instead of ``include_zero``'s
        choice, e.g. ``['skip_connect', 'conv_1x1', 'conv_3x3']`` for a 3^6 = 729-architecture table.
    """

    def __init__(self, channels: int = 16, num_cells: int = 5, num_classes: int = 10, in_channels: int = 3,
                 include_zero: bool = True, operations: Sequence[str] | None = None):
        super().__init__()
        for name, value in (('channels', channels), ('num_cells', num_cells), ('num_classes', num_classes),
                            ('in_channels', in_channels)):
            positive_int(name, value)
        self.operations = _operations(include_zero, operations)
        self.init_kwargs = dict(channels=channels, num_cells=num_cells, num_classes=num_classes,
                                in_channels=in_channels, include_zero=bool(include_zero),
                                operations=None if operations is None else list(self.operations))
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c_prev = channels
        for stage in range(3):
            c = channels * 2 ** stage
            if stage > 0:
                layers.append(ResidualReduction(c_prev, c))
            layers.extend(NasBench201Cell(c, self.operations) for _ in range(num_cells))
            c_prev = c
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x)
        return self.classifier(self.pool(self.lastact(x)).flatten(1))

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """The fixed network of ``sample`` with the weights of this (super)net's chosen operations."""
        arch = validate_architecture(sample, self.init_kwargs['include_zero'], self.operations)
        with model_context(arch):
            fixed = NasBench201Space(**self.init_kwargs)
        _inherit_weights(fixed, self, arch)
        return fixed


def validate_architecture(arch: Mapping[str, Any], include_zero: bool = True,
                          operations: Sequence[str] | None = None) -> dict[str, str]:
    """``{label: op}`` for the 6 edges; errors name the label and the allowed operations."""
    check_mapping(arch, SPACE_NAME)
    operations = _operations(include_zero, operations)
    return {label: checked_choice(arch, label, operations, SPACE_NAME) for label in LABELS}


def build_nas_bench_201_network(arch: Mapping[str, Any], channels: int = 16, num_cells: int = 5,
                                num_classes: int = 10, in_channels: int = 3, include_zero: bool = True,
                                operations: Sequence[str] | None = None) -> nn.Module:
    """The fixed network of ``arch`` (only the chosen operation on every edge), fresh weights."""
    arch = validate_architecture(arch, include_zero, operations)
    with model_context(arch):
        return NasBench201Space(channels=channels, num_cells=num_cells, num_classes=num_classes,
                                in_channels=in_channels, include_zero=include_zero, operations=operations)


@torch.no_grad()
def _inherit_weights(fixed: NasBench201Space, space: NasBench201Space, arch: Mapping[str, str]) -> None:
    for name in ('stem', 'lastact', 'classifier'):
        getattr(fixed, name).load_state_dict(getattr(space, name).state_dict())
    for target, source in zip(fixed.cells, space.cells):
        if isinstance(target, NasBench201Cell):
            for key, edge in target.edges.items():
                edge.load_state_dict(source.edges[key][arch[f'cell/{key}']].state_dict())
        else:
            target.load_state_dict(source.state_dict())


# ---------------------------------------------------------------------------------------------- benchmark strings
def arch_to_nb201_string(arch: Mapping[str, Any]) -> str:
    """``{'cell/0_1': 'conv_3x3', ...}`` -> ``'|nor_conv_3x3~0|+|...~0|...~1|+|...~0|...~1|...~2|'``."""
    arch = validate_architecture(arch, include_zero=True)
    nodes = []
    for j in range(1, NUM_NODES):
        nodes.append('|' + '|'.join(f'{_TO_STRING[arch[f"cell/{i}_{j}"]]}~{i}' for i in range(j)) + '|')
    return '+'.join(nodes)


def nb201_string_to_arch(string: str, include_zero: bool = True) -> dict[str, str]:
    """Parse a NAS-Bench-201 architecture string into this space's ``{label: op}`` dict.

    Accepts the benchmark's names (``nor_conv_3x3``) and this space's (``conv_3x3``); every node j in 1..3
    must list each predecessor 0..j-1 exactly once. Malformed strings and unknown operations raise
    :class:`~search_spaces.arch_value_checks.InvalidArchitectureError`; ``none`` is refused when
    ``include_zero`` is false.
    """
    if not isinstance(string, str):
        raise InvalidArchitectureError(f'a NAS-Bench-201 string must be a str, got {type(string).__name__}')
    nodes = string.strip().split('+')
    if len(nodes) != NUM_NODES - 1:
        raise InvalidArchitectureError(f'malformed NAS-Bench-201 string {string!r}: expected {NUM_NODES - 1} '
                                       f"nodes separated by '+', found {len(nodes)}")
    allowed = _operations(include_zero)
    arch: dict[str, str] = {}
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or not (node.startswith('|') and node.endswith('|')):
            raise InvalidArchitectureError(f"malformed NAS-Bench-201 string {string!r}: node {j} {node!r} must be "
                                           "'|op~i|...|' (starting and ending with '|')")
        entries = node[1:-1].split('|')
        if len(entries) != j:
            raise InvalidArchitectureError(f'malformed NAS-Bench-201 string {string!r}: node {j} must have {j} '
                                           f'input(s) (from nodes 0..{j - 1}), found {len(entries)}')
        for entry in entries:
            op, sep, source = entry.partition('~')
            if not sep or not source.isdigit() or not 0 <= int(source) < j:
                raise InvalidArchitectureError(f'malformed NAS-Bench-201 string {string!r}: entry {entry!r} of node '
                                               f"{j} must be 'op~i' with i in 0..{j - 1}")
            label = f'cell/{int(source)}_{j}'
            if label in arch:
                raise InvalidArchitectureError(f'malformed NAS-Bench-201 string {string!r}: node {j} lists input '
                                               f'{int(source)} twice')
            if op not in _FROM_STRING or _FROM_STRING[op] not in allowed:
                names = sorted({_TO_STRING[o] for o in allowed} | set(allowed))
                raise InvalidArchitectureError(f'unknown operation {op!r} for label {label!r} in NAS-Bench-201 '
                                               f'string {string!r}; allowed values: {names}')
            arch[label] = _FROM_STRING[op]
    return {label: arch[label] for label in LABELS}

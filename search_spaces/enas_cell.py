"""The ENAS micro (cell) search space of ASNG-NAS and PDAS (asng-nas §3.2, pdas §4.1 and Appendix D).

Network: stem (3x3 conv to ``stem_multiplier x C`` channels, BN), three stages of N normal cells with
C, 2C, 4C channels, a reduction cell (stride 2, channels doubled) before stages 2 and 3, then ReLU,
global average pooling, dropout and a linear classifier. The paper's search size is N=2, C=16
(8 cells, 2 of them reductions); its retraining size N=6 with C chosen for a parameter budget
(~4M in asng-nas §3.2, ~3M in pdas §4.1), an auxiliary head on the second reduction cell,
drop-path and affine BatchNorm.

Architecture: normal and reduction cells each have B=5 nodes with 4 categorical variables,
``{kind}/node{n}/input{k}`` (``InputChoice``, values ``[0] .. [n-1]``: states 0/1 are the two cell
inputs, state n >= 2 is node n) and ``{kind}/node{n}/op{k}`` (``LayerChoice`` over
:data:`ENAS_OPERATIONS`), for ``kind`` in ``normal``/``reduce``, ``n`` in 2..6 and ``k`` in 0/1:
40 variables, sum K_i = 180 and sum (K_i - 1) = 140 (pdas: "dimension of θ 180"; asng-nas: n_θ = 140).
All cells of one kind share the architecture. See :mod:`.enas_cell_layers` for the cell, its loose ends
and how it reads the choices under fixed networks, path sampling (``RandomOneShot``, nni-asng) and
dense mixtures (``DARTS``, ``GumbelDARTS``: soft loose-end mask).

NNI's ``Proxyless`` strategy is not supported: its input choice back-propagates through every
candidate input, whose resolutions differ in the reduction cell.

Why not NNI's hub ``ENAS`` space: its one-shot supernets treat ``loose_end`` as ``all`` (they concatenate
every node, so the supernet and the child compute different functions and have different shapes), its
``freeze`` rebuilds the network without the supernet's weights, its stem takes 3 channels only and its
classifier 10 classes (``dataset='cifar'``), and it concatenates loose ends instead of ENAS's 1x1 conv.

Fixed networks::

    net = space.freeze(arch)            # inherits the (super)net's weights; search-size network
    net = build_enas_network(arch)      # retraining network: N=6, aux head, drop-path, affine BN
    net = build_enas_network(arch, target_params=4e6)   # C from channels_for_budget
    with nni.nas.space.model_context(arch):             # NNI's idiom, fresh weights (for retraining
        net = ENASCellSpace(..., affine=True)           # pass affine=True, auxiliary=True, drop_path_prob)

``channels_for_budget(arch, target_params)`` picks C for a parameter budget (auxiliary head excluded).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.mutable import Categorical, CategoricalMultiple, Mutable, label_scope
from nni.nas.nn.pytorch import ModelSpace
from nni.nas.space import current_model, model_context

from nni_asng.model_size import count_parameters

from .aux_head import AuxiliaryHead
from .enas_cell_layers import NUM_CELL_INPUTS, ENASCell, PerSourceOperation
from .enas_ops import ENAS_OPERATIONS
from .arch_value_checks import positive_int
from .validation import InvalidArchitectureError, validate_architecture

__all__ = ['ENAS_OPERATIONS', 'ENASCellSpace', 'build_enas_network', 'channels_for_budget', 'count_parameters',
           'enas_labels', 'enas_mutables', 'validate_enas_architecture', 'InvalidArchitectureError']

SPACE_NAME = 'ENAS cell space'
CELL_KINDS = ('normal', 'reduce')


# ---------------------------------------------------------------------------------------------- labels
def enas_mutables(num_nodes: int = 5) -> dict[str, Mutable]:
    """The space's variables without building it: ``{label: Categorical | CategoricalMultiple}``."""
    mutables: list[Mutable] = []
    for kind in CELL_KINDS:
        for n in range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + num_nodes):
            with label_scope(kind), label_scope(f'node{n}'):
                for k in range(2):
                    mutables.append(CategoricalMultiple(list(range(n)), n_chosen=1, label=f'input{k}'))
                    mutables.append(Categorical(list(ENAS_OPERATIONS), label=f'op{k}'))
    return {m.label: m for m in mutables}


def enas_labels(num_nodes: int = 5) -> list[str]:
    return list(enas_mutables(num_nodes))


def validate_enas_architecture(arch: Any, num_nodes: int = 5) -> dict[str, Any]:
    """The architecture in NNI's form (input choices as ``[i]``; a bare ``i`` is accepted).

    Raises :class:`InvalidArchitectureError` naming the label and its allowed values.
    """
    return validate_architecture(enas_mutables(num_nodes), arch, SPACE_NAME)



# ---------------------------------------------------------------------------------------------- space
class ENASCellSpace(ModelSpace):
    """ENAS micro search space (asng-nas §3.2, pdas §4.1).

    Parameters
    ----------
    channels
        C, channels of the first stage's cells (16 in the papers' search).
    cells_per_stage
        N normal cells per stage (2 in search, 6 in retraining); 3N + 2 cells in all.
    num_nodes
        B, nodes per cell (5).
    in_channels, num_classes
        Image channels (3 CIFAR-10, 1 Fashion-MNIST) and classes. Any resolution works
        (fully convolutional; odd sizes are reduced to ``ceil(H/2)``): 32x32 and 28x28 included.
    affine
        Learnable BatchNorm scale/shift; off during search (pdas §4.1), on for retraining.
    stem_multiplier
        The stem has ``stem_multiplier x C`` channels (3 as in ENAS/DARTS).
    auxiliary
        Add the auxiliary classifier on the second reduction cell; in training mode the network
        then returns ``(logits, aux_logits)``.
    drop_path_prob
        Drop-path probability of the fixed network's operations (not identities); change it with
        :meth:`set_drop_path_prob`. Only for fixed networks.
    dropout
        Dropout before the classifier.
    """

    def __init__(self, channels: int = 16, cells_per_stage: int = 2, num_nodes: int = 5, in_channels: int = 3,
                 num_classes: int = 10, affine: bool = False, stem_multiplier: int = 3, auxiliary: bool = False,
                 drop_path_prob: float = 0.0, dropout: float = 0.0):
        super().__init__()
        self.init_kwargs = dict(
            channels=positive_int('channels', channels), cells_per_stage=positive_int('cells_per_stage', cells_per_stage),
            num_nodes=positive_int('num_nodes', num_nodes), in_channels=positive_int('in_channels', in_channels),
            num_classes=positive_int('num_classes', num_classes), affine=bool(affine),
            stem_multiplier=positive_int('stem_multiplier', stem_multiplier), auxiliary=bool(auxiliary),
            drop_path_prob=float(drop_path_prob), dropout=float(dropout))
        if not 0.0 <= drop_path_prob < 1.0:
            raise ValueError(f'drop_path_prob must be in [0, 1), got {drop_path_prob!r}')
        arch = current_model()
        if arch is None:
            if drop_path_prob > 0:
                raise ValueError('drop_path_prob is a setting of fixed (retraining) networks; build one with '
                                 'build_enas_network(arch, ...) or space.freeze(arch)')
            self._build(**self.init_kwargs)
        else:
            # Inside model_context(arch): check it, and give NNI the normalised form (e.g. 3 -> [3]).
            with model_context(validate_enas_architecture(arch, num_nodes)):
                self._build(**self.init_kwargs)

    def _build(self, channels: int, cells_per_stage: int, num_nodes: int, in_channels: int, num_classes: int,
               affine: bool, stem_multiplier: int, auxiliary: bool, drop_path_prob: float, dropout: float) -> None:
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_stem, affine=affine))
        cells: list[ENASCell] = []
        c_prev_prev, c_prev, previous_reduced = c_stem, c_stem, False
        c = channels
        self.aux_cell_index: int | None = None
        for stage in range(3):
            kinds = (['reduce'] if stage > 0 else []) + ['normal'] * cells_per_stage
            if stage > 0:
                c *= 2
            for kind in kinds:
                cells.append(ENASCell(kind, num_nodes, c_prev_prev, c_prev, c, previous_reduced, affine))
                c_prev_prev, c_prev, previous_reduced = c_prev, c, kind == 'reduce'
                if stage == 2 and kind == 'reduce':
                    self.aux_cell_index = len(cells) - 1
        self.cells = nn.ModuleList(cells)
        self.is_fixed = all(cell.is_fixed for cell in cells)
        self.auxiliary_head = AuxiliaryHead(c_prev, num_classes, affine) if auxiliary else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(c_prev, num_classes)
        if drop_path_prob:
            self.set_drop_path_prob(drop_path_prob)

    def forward(self, x: torch.Tensor):
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_cell_index and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(self.dropout(F.adaptive_avg_pool2d(F.relu(s1), 1).flatten(1)))
        return (logits, aux_logits) if aux_logits is not None else logits

    def set_drop_path_prob(self, drop_prob: float) -> None:
        """Drop-path probability of every operation output (ScheduledDropPath: raise it over the epochs)."""
        if drop_prob > 0 and not self.is_fixed:
            raise ValueError('drop-path is only applied in fixed networks, not in the search space')
        for cell in self.cells:
            cell.drop_path_prob = float(drop_prob)

    # ------------------------------------------------------------------ fixed network
    def freeze(self, sample: Mapping[str, Any]) -> 'ENASCellSpace':
        """The fixed network of ``sample`` (search-size config) with this (super)net's weights of its choices.

        Only the chosen operation of each edge, built for its chosen input, and the loose ends' slice of
        each cell's 1x1 conv remain. Works on the raw space and on NNI's path-sampling or differentiable
        supernets made from it.
        """
        if self.is_fixed:
            raise RuntimeError('this is already a fixed network; freeze() the search space instead')
        arch = validate_enas_architecture(sample, self.init_kwargs['num_nodes'])
        with model_context(arch):
            fixed = ENASCellSpace(**self.init_kwargs)
        _inherit_weights(fixed, self, arch)
        return fixed


@torch.no_grad()
def _inherit_weights(fixed: ENASCellSpace, space: ENASCellSpace, arch: Mapping[str, Any]) -> None:
    fixed.stem.load_state_dict(space.stem.state_dict())
    fixed.classifier.load_state_dict(space.classifier.state_dict())
    if fixed.auxiliary_head is not None:
        fixed.auxiliary_head.load_state_dict(space.auxiliary_head.state_dict())
    for target, source in zip(fixed.cells, space.cells):
        target.preprocess0.load_state_dict(source.preprocess0.state_dict())
        target.preprocess1.load_state_dict(source.preprocess1.state_dict())
        for t_node, s_node in zip(target.nodes, source.nodes):
            for slot in range(2):
                prefix = f'{target.kind}/node{t_node.index}'
                op_name = arch[f'{prefix}/op{slot}']
                bank = s_node.edge(slot)[1][op_name]
                if not isinstance(bank, PerSourceOperation):
                    raise TypeError(f'{prefix}/op{slot}: expected the supernet candidate, got {type(bank).__name__}')
                t_node.edge(slot)[1].load_state_dict(bank.banks[t_node.fixed_sources[slot]].state_dict())
        c = source.channels
        columns = [j for n in target.loose_ends for j in range((n - NUM_CELL_INPUTS) * c, (n - NUM_CELL_INPUTS + 1) * c)]
        target.combine.conv.weight.copy_(source.combine.conv.weight[:, columns])
        target.combine.bn.load_state_dict(source.combine.bn.state_dict())


# ---------------------------------------------------------------------------------------------- retraining
def build_enas_network(arch: Mapping[str, Any], channels: int = 36, cells_per_stage: int = 6, num_nodes: int = 5,
                       in_channels: int = 3, num_classes: int = 10, affine: bool = True, stem_multiplier: int = 3,
                       auxiliary: bool = True, drop_path_prob: float = 0.2, dropout: float = 0.0,
                       target_params: float | None = None) -> ENASCellSpace:
    """The fixed retraining network of ``arch`` with fresh weights (asng-nas §3.2, pdas §4.1).

    Defaults are the retraining setting: N=6, affine BN, auxiliary head, drop-path. With
    ``target_params`` the channel count is :func:`channels_for_budget` (``channels`` is then ignored).
    """
    arch = validate_enas_architecture(arch, num_nodes)
    if target_params is not None:
        channels = channels_for_budget(arch, target_params, cells_per_stage=cells_per_stage, num_nodes=num_nodes,
                                       in_channels=in_channels, num_classes=num_classes,
                                       stem_multiplier=stem_multiplier)
    with model_context(arch):
        return ENASCellSpace(channels=channels, cells_per_stage=cells_per_stage, num_nodes=num_nodes,
                             in_channels=in_channels, num_classes=num_classes, affine=affine,
                             stem_multiplier=stem_multiplier, auxiliary=auxiliary, drop_path_prob=drop_path_prob,
                             dropout=dropout)


def channels_for_budget(arch: Mapping[str, Any], target_params: float = 4e6, cells_per_stage: int = 6,
                        num_nodes: int = 5, in_channels: int = 3, num_classes: int = 10, stem_multiplier: int = 3,
                        max_channels: int = 2048) -> int:
    """C whose fixed network of ``arch`` (affine BN, no auxiliary head) has a parameter count closest to
    ``target_params`` (asng-nas §3.2: ~4M; pdas §4.1: ~3M).

    Every weight is a product of at most two channel counts proportional to C, so the count is a quadratic
    in C: it is fitted on C = 1, 2, 3, checked at C = 4 and at the answer (a bisection over built networks
    is the fallback should the check ever fail).
    """
    arch = validate_enas_architecture(arch, num_nodes)
    if not target_params > 0 or not math.isfinite(target_params):
        raise ValueError(f'target_params must be a positive number, got {target_params!r}')

    def params(c: int) -> int:
        with model_context(arch), torch.device('meta'):       # shapes only: no memory, no initialisation
            net = ENASCellSpace(channels=c, cells_per_stage=cells_per_stage, num_nodes=num_nodes,
                                in_channels=in_channels, num_classes=num_classes, affine=True,
                                stem_multiplier=stem_multiplier)
        return count_parameters(net)

    p1, p2, p3, p4 = (params(c) for c in (1, 2, 3, 4))
    a2 = p3 - 2 * p2 + p1                                      # 2a
    if a2 > 0 and p4 - 2 * p3 + p2 == a2:
        a = a2 / 2
        b = p2 - p1 - 3 * a
        d = p1 - a - b

        def poly(c: int) -> float:
            return a * c * c + b * c + d

        root = (-b + math.sqrt(max(b * b - 4 * a * (d - target_params), 0.0))) / (2 * a)
        candidates = [c for c in {math.floor(root), math.ceil(root)} if 1 <= c <= max_channels] or [1]
        best = min(sorted(candidates), key=lambda c: abs(poly(c) - target_params))
        if root <= max_channels and params(best) == poly(best):
            return best
    return _bisect_channels(params, target_params, max_channels)


def _bisect_channels(params, target_params: float, max_channels: int) -> int:
    low = 1
    if params(low) >= target_params:
        return low
    high = 2
    while params(high) < target_params:        # exponential search, then bisection
        if high >= max_channels:
            raise ValueError(f'{target_params:g} parameters need more than max_channels={max_channels} channels')
        low, high = high, min(2 * high, max_channels)
    while high - low > 1:                      # params(low) < target <= params(high)
        mid = (low + high) // 2
        if params(mid) < target_params:
            low = mid
        else:
            high = mid
    return low if target_params - params(low) <= params(high) - target_params else high

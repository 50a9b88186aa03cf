"""The ENAS micro cell (asng-nas §3.2, pdas §4.1) as NNI ``InputChoice``/``LayerChoice`` modules.

A cell has two inputs (states 0 and 1: the outputs of the previous two cells) and B nodes (states
2 .. B+1). Node ``n`` has two edges; edge ``k`` picks one earlier state (``InputChoice`` labelled
``{kind}/node{n}/input{k}``, values ``[0] .. [n-1]``) and one of :data:`~.enas_ops.ENAS_OPERATIONS`
(``LayerChoice`` ``{kind}/node{n}/op{k}``); the node is the sum of its two edges. The cell output is
ReLU, 1x1 conv, BN over the concatenated *loose ends*, the nodes no edge of the cell takes as input
(ENAS's final conv), so every cell has C output channels.

How the choices are read (see :mod:`.choice_state`):

* fixed network (``freeze`` / ``model_context``): each edge holds only its chosen operation, built for
  its chosen input; the 1x1 conv has ``len(loose ends) x C`` input channels: no unused weight remains;
* path sampling (``RandomOneShot``, nni-asng's strategies): the edge's ``InputChoice`` module is called
  (so wrappers such as credit gates act), its ``_sampled`` index selects the operation's weights and the
  loose ends; the 1x1 conv uses the slice of its weight that belongs to the loose ends, which equals
  multiplying the used nodes by 0 before a conv over all B nodes;
* dense mixture (``DARTS``, ``GumbelDARTS``): edge ``k`` of node ``n`` is ``sum_i w_i op(state_i)``
  with ``w = softmax(alpha)`` of its input choice and ``op`` NNI's mixed operation (the DARTS relaxation
  of both choices, as NNI's own differentiable cell); node ``m`` enters the 1x1 conv multiplied by its
  *soft loose-end mask* ``prod_{edges e after m} (1 - w_e[m])``, the probability that no edge takes it.
  With one-hot weights this is exactly the fixed network.

Weights follow the ENAS code the papers build on (pdas §4.1, footnote 2): in the supernet each
candidate operation of an edge has one weight bank per possible input (:class:`PerSourceOperation`).
In the reduction cell, operations on the cell inputs (states 0, 1) have stride 2 (pdas §4.1), identity
becoming a factorized reduction; operations on nodes have stride 1.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from nni.mutable import Categorical, label_scope
from nni.nas.nn.pytorch import InputChoice, LayerChoice
from nni.nas.nn.pytorch.choice import ChosenInputs
from nni.nas.space import current_model

from .choice_state import selected_inputs, soft_input_weights
from .enas_ops import ENAS_OPERATIONS, FactorizedReduce, ReLUConvBN, drop_path, make_operation

__all__ = ['PerSourceOperation', 'LooseEndCombine', 'ENASNode', 'ENASCell', 'edge_stride']

NUM_CELL_INPUTS = 2


def edge_stride(reduction: bool, source: int) -> int:
    """Stride of an edge from state ``source``: 2 in a reduction cell on the cell inputs, else 1 (pdas §4.1)."""
    return 2 if reduction and source < NUM_CELL_INPUTS else 1


class SourceSelector:
    """The input index the cell is about to feed into one edge's operation (shared by that edge's candidates)."""

    def __init__(self) -> None:
        self.source = 0


class PerSourceOperation(nn.Module):
    """One candidate operation with a separate weight bank per possible input state (ENAS's weight sharing)."""

    def __init__(self, op_name: str, channels: int, strides: Sequence[int], affine: bool, selector: SourceSelector):
        super().__init__()
        self.op_name = op_name
        self.banks = nn.ModuleList(make_operation(op_name, channels, s, affine) for s in strides)
        self._selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.banks[self._selector.source](x)


class LooseEndCombine(nn.Module):
    """ReLU, 1x1 conv, BN over concatenated node outputs, weight in blocks of C input channels per node."""

    def __init__(self, num_blocks: int, channels: int, affine: bool):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(num_blocks * channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels, affine=affine)

    def forward(self, nodes: Sequence[torch.Tensor], blocks: Sequence[int] | None = None) -> torch.Tensor:
        """Combine ``nodes``; ``blocks`` (weight block of each node) defaults to all blocks in order."""
        x = F.relu(torch.cat(list(nodes), dim=1))
        if blocks is None or len(blocks) * self.channels == self.conv.in_channels:
            return self.bn(self.conv(x))
        c = self.channels
        columns = torch.cat([torch.arange(b * c, (b + 1) * c, device=x.device) for b in blocks])
        return self.bn(F.conv2d(x, self.conv.weight.index_select(1, columns)))


class ENASNode(nn.Module):
    """Node ``index`` (>= 2) of a cell: two edges, each an ``InputChoice`` and a ``LayerChoice``."""

    def __init__(self, index: int, channels: int, reduction: bool, affine: bool):
        super().__init__()
        self.index = index
        self.selectors = [SourceSelector(), SourceSelector()]
        sources: list[int | None] = []
        with label_scope(f'node{index}'):
            for slot in range(2):
                inp = InputChoice(index, n_chosen=1, reduction='sum', label=f'input{slot}')
                if isinstance(inp, ChosenInputs):
                    # Fixed network: only the chosen operation, built for the chosen input. (A LayerChoice would
                    # build all candidates and return the chosen one; reading the choice directly is the same.)
                    source = int(inp.chosen[0])
                    op_name = Categorical(list(ENAS_OPERATIONS), label=f'op{slot}').freeze(current_model())
                    op: nn.Module = make_operation(op_name, channels, edge_stride(reduction, source), affine)
                else:
                    source = None
                    strides = [edge_stride(reduction, s) for s in range(index)]
                    op = LayerChoice({name: PerSourceOperation(name, channels, strides, affine, self.selectors[slot])
                                      for name in ENAS_OPERATIONS}, label=f'op{slot}')
                setattr(self, f'input{slot}', inp)
                setattr(self, f'op{slot}', op)
                sources.append(source)
        self.fixed_sources: list[int] | None = None if None in sources else [int(s) for s in sources]

    def edge(self, slot: int) -> tuple[nn.Module, nn.Module]:
        return getattr(self, f'input{slot}'), getattr(self, f'op{slot}')


class ENASCell(nn.Module):
    """Normal (``kind='normal'``) or reduction (``kind='reduce'``) cell with ``num_nodes`` nodes and C channels.

    ``c_prev_prev`` / ``c_prev`` are the channels of the two inputs; ``reduce_input0`` says the first input
    has twice the resolution of the second (the previous cell was a reduction cell), so it is brought
    down by a factorized reduction; inputs with other channel counts get a 1x1 ReLU-Conv-BN.
    """

    def __init__(self, kind: str, num_nodes: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduce_input0: bool, affine: bool):
        super().__init__()
        if kind not in ('normal', 'reduce'):
            raise ValueError(f"kind must be 'normal' or 'reduce', got {kind!r}")
        self.kind = kind
        self.reduction = kind == 'reduce'
        self.num_nodes = num_nodes
        self.channels = channels
        self.drop_path_prob = 0.0
        if reduce_input0:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels, affine)
        elif c_prev_prev != channels:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, affine)
        else:
            self.preprocess0 = nn.Identity()
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, affine) if c_prev != channels else nn.Identity()
        with label_scope(kind):
            self.nodes = nn.ModuleList(ENASNode(NUM_CELL_INPUTS + b, channels, self.reduction, affine)
                                       for b in range(num_nodes))
        self.is_fixed = all(node.fixed_sources is not None for node in self.nodes)
        if self.is_fixed:
            used = {s for node in self.nodes for s in node.fixed_sources}
            self.loose_ends = [n for n in range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + num_nodes) if n not in used]
            self.combine = LooseEndCombine(len(self.loose_ends), channels, affine)
        else:
            self.loose_ends = None
            self.combine = LooseEndCombine(num_nodes, channels, affine)

    # ------------------------------------------------------------------ forward
    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        # Probability that node state n is a loose end: 1.0 / 0.0 (python floats) while every choice is hard.
        loose: list[Any] = [1.0] * (NUM_CELL_INPUTS + self.num_nodes)
        for node in self.nodes:
            total = None
            for slot in range(2):
                out, usage = self._edge(node, slot, states)
                total = out if total is None else total + out
                if isinstance(usage, int):
                    loose[usage] = 0.0
                else:   # soft weights over states 0 .. n-1
                    for n in range(NUM_CELL_INPUTS, node.index):
                        loose[n] = loose[n] * (1 - usage[n])
            states.append(total)
        node_ids = range(NUM_CELL_INPUTS, NUM_CELL_INPUTS + self.num_nodes)
        if self.is_fixed:
            return self.combine([states[n] for n in self.loose_ends])
        if all(isinstance(loose[n], float) for n in node_ids):
            ends = [n for n in node_ids if loose[n] == 1.0]
            return self.combine([states[n] for n in ends], [n - NUM_CELL_INPUTS for n in ends])
        return self.combine([states[n] * loose[n] for n in node_ids])

    def _edge(self, node: ENASNode, slot: int, states: list[torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """Output of one edge, and its usage: the chosen state index, or the soft weights over states."""
        inp, op = node.edge(slot)
        selector = node.selectors[slot]
        chosen = selected_inputs(inp)
        if chosen is None:                      # DARTS-style dense mixture over all inputs
            weights = soft_input_weights(inp)
            out = None
            for i, state in enumerate(states):
                selector.source = i
                term = weights[i] * op(state)
                out = term if out is None else out + term
            return out, weights
        if len(chosen) != 1:
            raise RuntimeError(f'{self.kind}/node{node.index}/input{slot}: expected one chosen input, got {chosen}')
        x = inp(states)                          # call the module: wrappers (credit gates, Proxyless) act here
        selector.source = chosen[0]
        out = op(x)
        if self.is_fixed and self.training and self.drop_path_prob > 0 and not isinstance(op, nn.Identity):
            out = drop_path(out, self.drop_path_prob)
        return out, chosen[0]

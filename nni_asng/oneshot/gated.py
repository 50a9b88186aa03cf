"""Sparse-propagation supermodules with credit gates (advantagenas §4.3, Eq. 7).

Each subclass of NNI's path-sampling supermodule runs only the sampled candidate, like its
parent, and multiplies the candidate's output by its label's gate a_i (a scalar 1 that requires
grad, see :mod:`.gates`) while a θ step is evaluated. One backward pass then yields ∂r/∂a_i for
every gated label; outside θ steps no gate is open and the forward pass is exactly NNI's.
Supermodules sharing a label (e.g. the 15 cells of NAS-Bench-201) share its gate, so the
credit sums over all places the choice is used.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, cast

import torch
import torch.nn as nn
from nni.nas.nn.pytorch.cell import preprocess_cell_inputs
from nni.nas.oneshot.pytorch.supermodule.sampling import PathSamplingInput, PathSamplingLayer

from .gates import CreditGates
from .sampling import CachedPathSamplingCell


class CreditGatedMixin:
    """Mixin: a reference to the supernet's :class:`CreditGates` and the labels it can gate."""

    _gates: CreditGates | None = None

    def bind_gates(self, gates: CreditGates) -> None:
        self._gates = gates
        gates.register(self.credit_labels())

    def credit_labels(self) -> list[str]:
        return [self.label]

    def _gated(self, tensor: torch.Tensor, label: str) -> torch.Tensor:
        gate = self._gates.get(label) if self._gates is not None else None
        return tensor if gate is None else tensor * gate


class GatedPathSamplingLayer(CreditGatedMixin, PathSamplingLayer):
    """``LayerChoice``: output of the chosen candidate × a_label."""

    def forward(self, *args, **kwargs):
        return self._gated(super().forward(*args, **kwargs), self.label)


class GatedPathSamplingInput(CreditGatedMixin, PathSamplingInput):
    """``InputChoice``: the reduced chosen input(s) × a_label."""

    def forward(self, input_tensors):
        return self._gated(super().forward(input_tensors), self.label)


class GatedPathSamplingCell(CreditGatedMixin, CachedPathSamplingCell):
    """NNI ``Cell``: every op output × a_(op label) and every chosen input × a_(input label)."""

    def credit_labels(self) -> list[str]:
        return [f'{self.label}/{kind}_{i}_{k}' for i in range(self.num_predecessors, self.num_nodes + self.num_predecessors)
                for k in range(self.num_ops_per_node) for kind in ('op', 'input')]

    def forward(self, *inputs):
        raw_inputs = preprocess_cell_inputs(self.num_predecessors, *inputs)
        states: List[torch.Tensor] = self.preprocessor(raw_inputs)
        for i, edges in enumerate(cast(Sequence[Sequence[Dict[str, nn.Module]]], self.ops),
                                  start=self.num_predecessors):
            node = []
            for k in range(self.num_ops_per_node):
                source = self._sampled[f'{self.label}/input_{i}_{k}'][0]
                op_name = self._sampled[f'{self.label}/op_{i}_{k}']
                x = self._gated(states[source], f'{self.label}/input_{i}_{k}')
                node.append(self._gated(edges[source][op_name](x), f'{self.label}/op_{i}_{k}'))
            states.append(sum(node))
        return self.postprocessor(torch.cat(states[self.num_predecessors:], self.concat_dim), raw_inputs)


GATED_HOOKS = [GatedPathSamplingLayer.mutate, GatedPathSamplingInput.mutate, GatedPathSamplingCell.mutate]

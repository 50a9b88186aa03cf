"""The CAE space's searchable body and its path-sampling supernet module for NNI one-shot strategies.

:class:`CAEBody` holds the space's mutables and the shared max-size weights. NNI's one-shot strategies only
call ``resample(memo)`` / ``export(memo)`` on ``BaseSuperNetModule``\\ s, so the mutation hook
:meth:`PathSamplingCAE.mutate` (returned by ``CAESpace.extra_oneshot_hooks``) turns the body into a
:class:`PathSamplingCAE` that keeps the same weights and runs the one architecture of the last sample
(sampling strategies: NNI ``RandomOneShot`` and nni-asng's ASNG / PDAS / REINFORCE ...).

A dense (DARTS-style) mixture is not offered: connections decide which layers are active and thereby the
depth, the resolutions and the mirrored decoder, so there is no per-edge weighted sum to relax.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from nni.nas.nn.pytorch import MutableModule
from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

from .cae_genotype import CAEConfig, LayerGene, coerce_sample, decode_architecture, make_mutables
from .cae_layers import CAENetwork, SharedCAEWeights, inherit_weights

__all__ = ['CAEBody', 'PathSamplingCAE']


class CAEBody(MutableModule):
    """Mutables + shared weights of a CAE space; runs one architecture (the mutables' defaults until set)."""

    def __init__(self, config: CAEConfig, weights: SharedCAEWeights | None = None, mutables: list | None = None):
        super().__init__()
        self.config = config
        if mutables is None:
            for mutable in make_mutables(config):
                self.add_mutable(mutable)
        else:                                   # taking over a body: its mutables are registered already
            self._mutables = list(mutables)
        self.weights = weights if weights is not None else SharedCAEWeights(config)
        self._genes: list[LayerGene] | None = None
        self._sample: dict[str, Any] = {}
        if mutables is None:
            self.set_architecture({m.label: m.default() for m in self.mutables})

    # ------------------------------------------------------------------ architecture
    def set_architecture(self, sample: Mapping[str, Any]) -> list[LayerGene]:
        """Run ``sample`` from now on (integer variables are clipped and rounded); returns its active layers."""
        sample = coerce_sample({m.label: sample[m.label] for m in self.mutables if m.label in sample}, self.config)
        self._genes = decode_architecture(sample, self.config)
        self._sample = sample
        return self._genes

    @property
    def active_layers(self) -> list[LayerGene]:
        if self._genes is None:
            raise RuntimeError('no architecture has been sampled yet: call resample(memo) first')
        return list(self._genes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights(x, self.active_layers)

    def freeze(self, sample: Mapping[str, Any]) -> CAENetwork:
        """The fixed child of ``sample`` with the (sliced) current weights: same output, no unused weights."""
        genes = decode_architecture(sample, self.config)
        return inherit_weights(CAENetwork(genes, self.config.in_channels), self.weights)


class PathSamplingCAE(CAEBody, BaseSuperNetModule):
    """The CAE body inside a one-shot supernet: ``resample(memo)`` selects the path of one architecture.

    Values for the body's labels are read from ``memo``; missing ones are drawn with ``mutable.random()``
    (uniform, as NNI's path-sampling modules do). Real values of integer variables (NNI's ``Numerical``
    gives floats, Gaussian samplers give reals) are clipped to the range and rounded (asng-nas §3.3).
    """

    @classmethod
    def from_body(cls, body: CAEBody) -> 'PathSamplingCAE':
        return cls(body.config, weights=body.weights, mutables=body.mutables)

    @classmethod
    def mutate(cls, module, name, memo, mutate_kwargs):
        """NNI mutation hook: replace a :class:`CAEBody` by a :class:`PathSamplingCAE` sharing its weights."""
        if type(module) is CAEBody:
            return cls.from_body(module)
        return None

    def resample(self, memo: dict[str, Any]) -> dict[str, Any]:
        self.set_architecture({m.label: memo[m.label] if m.label in memo else m.random() for m in self.mutables})
        return dict(self._sample)

    def export(self, memo: dict[str, Any]) -> dict[str, Any]:
        return {m.label: m.random() for m in self.mutables if m.label not in memo}

    def export_probs(self, memo: dict[str, Any]) -> dict[str, Any]:
        return {}

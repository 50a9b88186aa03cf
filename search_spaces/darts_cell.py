"""The DARTS cell search space: a thin wrapper over NNI's hub ``nni.nas.hub.pytorch.DARTS``.

NNI's hub space serves: its cells (4 nodes, 2 inputs and 2 operations per node among 7 candidates,
output = concatenation of all nodes), its one-shot supermodules (``PathSamplingCell``,
``DifferentiableMixedCell``) and its fixed networks are what DARTS defines, and our strategies must run
on it unchanged. It only fixes what the hub cannot do:

* input channels: the hub's CIFAR stem is a 3-channel conv; the wrapper replaces it by an
  ``in_channels`` conv of the same width, so 1x28x28 Fashion-MNIST works (28 -> 14 -> 7 is fine);
* classes: the hub's ``dataset='cifar'`` classifier has 10 outputs; the wrapper's has ``num_classes``;
* auxiliary head on 28x28 inputs: the hub pools the 7x7 maps to 1x1, too small for its 2x2 conv;
  :class:`~.aux_head.AuxiliaryPool` keeps the CIFAR pooling on 8x8 maps and pools 7x7 to 2x2;
* ``freeze``: the hub's ``NDS.freeze`` rebuilds a plain ``NDS`` (3-channel stem, 10 classes); the
  wrapper rebuilds this class and first checks the dict (errors name the label and allowed values).

Like the hub's, ``freeze`` gives fresh weights: the one-shot supernet keeps one operation per (node,
input) pair inside NNI's cell supermodules, which the hub's fixed cell does not mirror.

Labels (NNI's): ``{normal,reduce}/op_{i}_{k}`` over :data:`DARTS_OPERATIONS` and
``{normal,reduce}/input_{i}_{k}`` (values ``[0] .. [i-1]``) for nodes ``i`` in 2..5 and ``k`` in 0/1:
32 variables. ``num_cells`` counts all cells; ``8`` is the DARTS search network (2 reductions), ``20``
its retraining network.

NNI strategies: ``RandomOneShot``, ``DARTS`` and ``GumbelDARTS`` run; ``Proxyless`` does not (its
cell input choice back-propagates through candidate inputs of different resolutions in reduction
cells; docs/design.md §2).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch.nn as nn
from nni.mutable import Categorical, CategoricalMultiple, Mutable, label_scope
from nni.nas.hub.pytorch import DARTS
from nni.nas.space import current_model, model_context

from .aux_head import AuxiliaryPool
from .arch_value_checks import positive_int
from .validation import InvalidArchitectureError, validate_architecture

__all__ = ['DARTS_OPERATIONS', 'DARTSCellSpace', 'build_darts_network', 'darts_mutables',
           'validate_darts_architecture', 'InvalidArchitectureError']

SPACE_NAME = 'DARTS cell space'
DARTS_OPERATIONS = tuple(DARTS.DARTS_OPS)
NUM_NODES = 4


def darts_mutables() -> dict[str, Mutable]:
    """The space's 32 variables without building it."""
    mutables: list[Mutable] = []
    for kind in ('normal', 'reduce'):
        with label_scope(kind):
            for i in range(2, 2 + NUM_NODES):
                for k in range(2):
                    mutables.append(Categorical(list(DARTS_OPERATIONS), label=f'op_{i}_{k}'))
                    mutables.append(CategoricalMultiple(list(range(i)), n_chosen=1, label=f'input_{i}_{k}'))
    return {m.label: m for m in mutables}


def validate_darts_architecture(arch: Any) -> dict[str, Any]:
    """The architecture in NNI's form; :class:`InvalidArchitectureError` names a wrong label and its values."""
    return validate_architecture(darts_mutables(), arch, SPACE_NAME)



class DARTSCellSpace(DARTS):
    """NNI's hub DARTS space with any input channels and classes (pdas §4.1 compares with DARTS).

    Parameters
    ----------
    channels
        C, the hub's ``width`` (16 in the DARTS search, 36 in retraining).
    num_cells
        Cells in all (the hub's ``num_cells``), split over 3 stages; 8 in search, 20 in retraining.
    in_channels, num_classes
        Image channels and classes; any resolution works (32x32, 28x28).
    auxiliary
        Auxiliary head (fixed networks only); the network returns ``(logits, aux_logits)`` in training.
    drop_path_prob
        Drop-path probability (fixed networks; the hub's ``set_drop_path_prob`` changes it).
    """

    def __init__(self, channels: int = 16, num_cells: int = 8, in_channels: int = 3, num_classes: int = 10,
                 auxiliary: bool = False, drop_path_prob: float = 0.0):
        init_kwargs = dict(channels=positive_int('channels', channels),
                           num_cells=positive_int('num_cells', num_cells),
                           in_channels=positive_int('in_channels', in_channels),
                           num_classes=positive_int('num_classes', num_classes),
                           auxiliary=bool(auxiliary), drop_path_prob=float(drop_path_prob))
        hub_kwargs = dict(width=int(channels), num_cells=int(num_cells), dataset='cifar',
                          auxiliary_loss=bool(auxiliary), drop_path_prob=float(drop_path_prob))
        arch = current_model()
        if arch is None:
            if auxiliary:
                raise ValueError('the auxiliary head is a setting of fixed (retraining) networks; use '
                                 'build_darts_network(arch, auxiliary=True) or model_context(arch)')
            super().__init__(**hub_kwargs)
        else:
            with model_context(validate_darts_architecture(arch)):
                super().__init__(**hub_kwargs)
        self.init_kwargs = init_kwargs
        stem_conv = self.stem[0]
        self.stem[0] = nn.Conv2d(in_channels, stem_conv.out_channels, 3, padding=1, bias=False)
        self.classifier = nn.Linear(self.classifier.in_features, num_classes)
        self.num_labels = num_classes
        if auxiliary:
            self.auxiliary_head.features[1] = AuxiliaryPool()
            self.auxiliary_head.classifier = nn.Linear(self.auxiliary_head.classifier.in_features, num_classes)

    def freeze(self, sample: Mapping[str, Any]) -> 'DARTSCellSpace':
        """The fixed network of ``sample`` with this space's settings (fresh weights, like the hub's)."""
        arch = validate_darts_architecture(sample)
        with model_context(arch):
            return DARTSCellSpace(**self.init_kwargs)


def build_darts_network(arch: Mapping[str, Any], channels: int = 36, num_cells: int = 20, in_channels: int = 3,
                        num_classes: int = 10, auxiliary: bool = True, drop_path_prob: float = 0.2) -> DARTSCellSpace:
    """The fixed retraining network of ``arch`` (DARTS: C=36, 20 cells, auxiliary head, drop-path), fresh weights."""
    arch = validate_darts_architecture(arch)
    with model_context(arch):
        return DARTSCellSpace(channels=channels, num_cells=num_cells, in_channels=in_channels,
                              num_classes=num_classes, auxiliary=auxiliary, drop_path_prob=drop_path_prob)

"""Which inputs an ``InputChoice`` picked, whatever NNI turned it into.

A cell whose output depends on the chosen connections (ENAS's loose ends, stride-2 edges from the cell
inputs of a reduction cell) needs to know the choice at forward time. NNI replaces an ``InputChoice`` by

* ``ChosenInputs`` in a fixed network (``space.freeze(arch)``, ``nni.nas.space.model_context(arch)``):
  attribute ``chosen``;
* a path-sampling supermodule (``RandomOneShot``, ENAS; ``PathSamplingInput`` and its subclasses,
  including nni-asng's gated ones) or ``ProxylessMixedInput``: attribute ``_sampled`` set by ``resample()``;
* a dense mixture (``DARTS``, ``GumbelDARTS``; ``DifferentiableMixedInput``): no single choice, but
  weights ``_softmax(_arch_alpha)`` over all candidates;

and leaves it an ``InputChoice`` in the raw space, whose dry-run forward takes ``_dry_run_choice``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from nni.nas.nn.pytorch import InputChoice
from nni.nas.nn.pytorch.choice import ChosenInputs

__all__ = ['selected_inputs', 'soft_input_weights']


def _as_list(value: Any) -> list[int]:
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def selected_inputs(module: nn.Module) -> list[int] | None:
    """Indices of the inputs ``module`` passes on, or ``None`` when it mixes all of them with soft weights."""
    if isinstance(module, ChosenInputs):
        return _as_list(module.chosen)
    if hasattr(module, '_sampled'):
        sampled = getattr(module, '_sampled')
        if sampled is None:
            label = getattr(module, 'label', type(module).__name__)
            raise RuntimeError(f'input choice {label!r}: no input has been sampled yet; call resample() before forward')
        return _as_list(sampled)
    if hasattr(module, '_arch_alpha'):
        return None
    if isinstance(module, InputChoice):
        return _as_list(module._dry_run_choice)
    raise TypeError(f'{type(module).__name__} is not an NNI input choice (expected InputChoice, ChosenInputs, '
                    'a path-sampling module with `_sampled` or a differentiable one with `_arch_alpha`)')


def soft_input_weights(module: nn.Module) -> torch.Tensor:
    """Mixture weights of a differentiable input choice (``DARTS``: softmax of α; ``GumbelDARTS``: a Gumbel sample)."""
    return module._softmax(module._arch_alpha)

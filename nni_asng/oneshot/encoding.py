"""Encoding between an NNI model space and the variables of a distribution.

``space.simplify()`` lists the space's independent mutables by label. Each becomes one variable:

* ``Categorical`` (``LayerChoice``, ``nni.choice``, ``Repeat`` depth, cell ops) → a categorical
  variable over its values;
* ``CategoricalMultiple`` with ``n_chosen = k`` (``InputChoice``, cell inputs) → a categorical
  variable over the C(n, k) subsets, each a sorted list as NNI expects (``[v]`` when k = 1);
* ``Numerical`` with finite bounds (``nni.uniform``, ``nni.quniform``) → a Gaussian variable,
  rounded to its quantum only when the architecture is evaluated (asng-nas §2.4, §3.3).

A sample row of the distribution (categorical indices first, then real values) maps to NNI's
architecture dict, the ``memo`` NNI's path-sampling supermodules and ``space.freeze`` take.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from nni.mutable import Categorical, CategoricalMultiple, Mutable, Numerical

from ..distributions import (STD_MIN_FRACTION, CategoricalDistribution, GaussianDistribution, ProductDistribution,
                             scaled_std_min)


class UnsupportedSpaceError(TypeError):
    """The space holds a mutable that our strategies cannot sample."""


class ArchitectureError(ValueError):
    """An architecture dict does not belong to the space."""


@dataclass
class Variable:
    """One searchable variable: its NNI label and how its values are encoded."""

    label: str
    kind: str                                  # 'categorical' or 'numerical'
    values: list = field(default_factory=list)  # categorical: NNI values, in category order
    low: float = 0.0
    high: float = 0.0
    quantize: float | None = None

    @property
    def num_categories(self) -> int:
        return len(self.values)


class SearchSpaceEncoding:
    """Variables of a model space, the distribution over them, and conversions to NNI samples.

    Parameters
    ----------
    mutables
        A ``ModelSpace`` (or any NNI ``Mutable``) or the dict its ``simplify()`` returns.
    """

    def __init__(self, mutables: Mutable | Mapping[str, Mutable]):
        if isinstance(mutables, Mutable):
            mutables = mutables.simplify()
        if not mutables:
            raise UnsupportedSpaceError('the model space has no architecture choices (no LayerChoice, InputChoice, '
                                        'nni.choice or Repeat depth): there is nothing to search')
        # NNI labels are a str subclass; plain str keeps checkpoints loadable with weights_only=True.
        self.mutables = {str(label): m for label, m in mutables.items()}
        variables = [self._variable(label, mutable) for label, mutable in self.mutables.items()]
        self.categorical = [v for v in variables if v.kind == 'categorical']
        self.numerical = [v for v in variables if v.kind == 'numerical']
        self.variables = self.categorical + self.numerical
        self.labels = [v.label for v in self.variables]
        if not self.numerical and all(v.num_categories == 1 for v in self.categorical):
            raise UnsupportedSpaceError(f'every choice of the space has a single value ({self.labels}): '
                                        'there is nothing to search')

    # ------------------------------------------------------------------ distributions
    @property
    def num_categories(self) -> list[int]:
        return [v.num_categories for v in self.categorical]

    def distribution(self, theta_min: str | float = 'paper',
                     sigma_min_fraction: float = STD_MIN_FRACTION) -> ProductDistribution:
        """The maximum-entropy start over all variables (asng-nas §2.4).

        Numerical variables get σ_min = quantum/4, or ``sigma_min_fraction`` × (high − low) when
        continuous (:func:`~nni_asng.distributions.scaled_std_min`).
        """
        parts = []
        if self.categorical:
            parts.append(CategoricalDistribution(self.num_categories, theta_min=theta_min))
        if self.numerical:
            low, high = [v.low for v in self.numerical], [v.high for v in self.numerical]
            std_min = scaled_std_min(low, high, [v.quantize for v in self.numerical], sigma_min_fraction)
            parts.append(GaussianDistribution(low, high, integer=False, std_min=std_min))
        return ProductDistribution(parts)

    def category_offsets(self) -> np.ndarray:
        """Start of each categorical variable in a flat per-category vector."""
        return np.concatenate([[0], np.cumsum(self.num_categories)]).astype(int)

    # ------------------------------------------------------------------ rows <-> NNI samples
    def to_architecture(self, row: np.ndarray) -> dict[str, Any]:
        """One sample row (categorical indices, then real values) → NNI architecture dict."""
        row = np.asarray(row, dtype=float).reshape(-1)
        if row.size != len(self.variables):
            raise ValueError(f'expected a row of {len(self.variables)} values, got {row.size}')
        arch = {}
        for value, var in zip(row, self.variables):
            if var.kind == 'categorical':
                arch[var.label] = var.values[int(round(value))]
            else:
                arch[var.label] = _quantized(value, var)
        return arch

    def to_row(self, arch: Mapping[str, Any]) -> np.ndarray:
        """NNI architecture dict → sample row; errors name the label and its allowed values."""
        self.validate(arch)
        row = []
        for var in self.variables:
            value = arch[var.label]
            if var.kind == 'categorical':
                row.append(var.values.index(_normalised(value, var)))
            else:
                row.append(float(value))
        return np.array(row, dtype=float)

    def validate(self, arch: Mapping[str, Any]) -> None:
        """Raise :class:`ArchitectureError` naming the first wrong label and its allowed values."""
        if not isinstance(arch, Mapping):
            raise ArchitectureError(f'an architecture must be a dict {{label: value}}, got {type(arch).__name__}')
        missing = [v.label for v in self.variables if v.label not in arch]
        if missing:
            raise ArchitectureError(f'architecture is missing label(s) {missing}; the space has labels {self.labels}')
        unknown = [k for k in arch if k not in self.mutables]
        if unknown:
            raise ArchitectureError(f'architecture has unknown label(s) {unknown}; the space has labels {self.labels}')
        for var in self.variables:
            value = arch[var.label]
            if var.kind == 'categorical':
                if _normalised(value, var) not in var.values:
                    raise ArchitectureError(f'label {var.label!r}: value {value!r} is not one of the allowed values '
                                            f'{var.values}')
            elif isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not var.low <= float(value) <= var.high:
                raise ArchitectureError(f'label {var.label!r}: value {value!r} must be a number in '
                                        f'[{var.low}, {var.high}]' + (f' (multiple of {var.quantize})'
                                                                      if var.quantize else ''))

    def describe(self) -> str:
        """One line per variable, for logs and error messages."""
        lines = []
        for v in self.variables:
            what = f'{v.num_categories} choices {v.values}' if v.kind == 'categorical' else \
                f'number in [{v.low}, {v.high}]' + (f' step {v.quantize}' if v.quantize else '')
            lines.append(f'  {v.label}: {what}')
        return '\n'.join(lines)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _variable(label: str, mutable: Mutable) -> Variable:
        if isinstance(mutable, Categorical):
            return Variable(label, 'categorical', list(mutable.values))
        if isinstance(mutable, CategoricalMultiple):
            if mutable.n_chosen is None:
                raise UnsupportedSpaceError(
                    f'label {label!r}: CategoricalMultiple / InputChoice with n_chosen=None (any subset) cannot be '
                    'sampled by this strategy; give it a fixed n_chosen (e.g. InputChoice(..., n_chosen=1))')
            subsets = [sorted(c) for c in itertools.combinations(mutable.values, mutable.n_chosen)]
            return Variable(label, 'categorical', subsets)
        if isinstance(mutable, Numerical):
            low, high = float(mutable.low), float(mutable.high)
            if not (math.isfinite(low) and math.isfinite(high)) or mutable.log_distributed:
                raise UnsupportedSpaceError(
                    f'label {label!r}: Numerical needs finite low/high and a linear scale to be searched '
                    f'(got low={mutable.low}, high={mutable.high}, log_distributed={mutable.log_distributed}); '
                    'use nni.uniform / nni.quniform with bounds')
            return Variable(label, 'numerical', low=low, high=high, quantize=mutable.quantize)
        raise UnsupportedSpaceError(
            f'label {label!r}: {type(mutable).__name__} cannot be sampled by this strategy; supported are '
            'Categorical (LayerChoice, nni.choice, Repeat depth), CategoricalMultiple with fixed n_chosen '
            '(InputChoice) and bounded Numerical (nni.uniform / nni.quniform)')


def _normalised(value: Any, var: Variable) -> Any:
    """InputChoice values are lists; accept tuples / unsorted lists / a bare index for n_chosen = 1."""
    if var.values and isinstance(var.values[0], list):
        if isinstance(value, (list, tuple)):
            return sorted(value)
        return [value]
    return value


def _quantized(value: float, var: Variable) -> float | int:
    """Clip to [low, high] and round to the quantum, only for evaluation (asng-nas §3.3)."""
    value = min(max(float(value), var.low), var.high)
    if var.quantize:
        value = min(max(round(value / var.quantize) * var.quantize, var.low), var.high)
        if float(var.quantize).is_integer() and float(var.low).is_integer():
            return int(round(value))
    return value

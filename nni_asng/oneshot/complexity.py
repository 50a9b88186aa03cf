"""Complexity of each choice of an NNI space, measured on frozen child networks.

multi-complexity Eq. 6 needs c_{d,k}, the complexity (number of weight parameters, or FLOPs)
that choosing category k of variable d adds. We measure it instead of asking for it, in one of two
ways:

* ``'marginal'``: with a base architecture b (first category everywhere),
  c_{d,k} = R(b with d ← k) − R(b) — Σ_d K_d frozen children;
* ``'regression'``: least-squares main effects over random architectures, i.e. the best additive
  model R(M) ≈ R₀ + Σ_d c_{d,M_d} under the uniform distribution.

Where the space is additive both are exact: R(M) = R₀ + Σ_d c_{d,M_d}. Where choices interact (loose-end
concatenation in the ENAS cell, active layers depending on connections in the CAE) the marginal
table is a linearisation around b and the regression table the closest additive model;
:meth:`ComplexityTable.additivity_error` measures how far either is from the exact count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..model_size import count_flops, count_parameters

from .encoding import SearchSpaceEncoding

METRICS = ('params', 'flops')
METHODS = ('marginal', 'regression')


class ComplexityError(ValueError):
    """The complexity of a choice could not be measured."""


@dataclass
class ComplexityTable:
    """R(b) and c_{d,k} (flat, variable-major like θ) of a space, with the metric they measure."""

    encoding: SearchSpaceEncoding
    metric: str
    base: float
    per_category: np.ndarray

    def predict(self, arch: dict[str, Any]) -> float:
        """R(b) + Σ_d c_{d, M_d}: exact where the space is additive."""
        row = self.encoding.to_row(arch)
        offsets = self.encoding.category_offsets()[:-1]
        return float(self.base + self.per_category[offsets + row[:len(offsets)].astype(int)].sum())

    def normalised(self, scale: str | float = 'max') -> np.ndarray:
        """c / s for the regulariser: ``'max'`` makes the largest spread max_k c_{d,k} − min_k c_{d,k}
        over all variables equal 1, so ε is comparable across spaces; a number divides by it
        (e.g. 1e6 for millions of parameters)."""
        if scale == 'max':
            offsets = self.encoding.category_offsets()[:-1]
            spread = np.maximum.reduceat(self.per_category, offsets) - np.minimum.reduceat(self.per_category, offsets)
            s = float(spread.max())
            return self.per_category / s if s > 0 else self.per_category.copy()
        s = float(scale)
        if not s > 0:
            raise ValueError(f"complexity scale must be 'max' or a number > 0, got {scale!r}")
        return self.per_category / s

    def additivity_error(self, space, samples: int = 5, seed: int = 0, input_shape=None) -> float:
        """Largest |R(M) − predict(M)| / R(M) over random architectures (0 for additive spaces)."""
        rng = np.random.default_rng(seed)
        dist = self.encoding.distribution()
        worst = 0.0
        for row in dist.sample(samples, rng):
            arch = self.encoding.to_architecture(row)
            exact = _measure(space, arch, self.metric, input_shape)
            worst = max(worst, abs(exact - self.predict(arch)) / max(exact, 1))
        return worst


def _measure(space, arch: dict[str, Any], metric: str, input_shape) -> float:
    model = space.freeze(arch)
    return count_parameters(model) if metric == 'params' else count_flops(model, input_shape)


def measure_complexity(space, encoding: SearchSpaceEncoding | None = None, metric: str = 'params',
                       input_shape: Sequence[int] | None = None, method: str = 'marginal',
                       samples: int | None = None, seed: int = 0) -> ComplexityTable:
    """Build the :class:`ComplexityTable` of ``space`` (a not-yet-mutated NNI ``ModelSpace``).

    ``metric='flops'`` needs ``input_shape`` (C, H, W). ``method='regression'`` fits main effects to
    ``samples`` random architectures (default 3·Σ_d(K_d − 1) + 10). Raises :class:`ComplexityError`
    naming the label and value whose child network could not be built or measured.
    """
    if metric not in METRICS:
        raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    if metric == 'flops' and input_shape is None:
        raise ValueError("metric='flops' needs input_shape, e.g. (1, 28, 28)")
    encoding = encoding or SearchSpaceEncoding(space)
    if encoding.numerical:
        raise ComplexityError(f'complexity regularisation needs categorical variables; label(s) '
                              f'{[v.label for v in encoding.numerical]} are numerical')
    if method == 'regression':
        return _regression_table(space, encoding, metric, input_shape, samples, seed)
    base_arch = encoding.to_architecture(np.zeros(len(encoding.variables)))
    try:
        base = _measure(space, base_arch, metric, input_shape)
    except Exception as err:   # the space's own error, re-raised with what we were measuring
        raise ComplexityError(f'could not build the base architecture {base_arch} to measure {metric}: {err}') from err
    values = []
    for var in encoding.categorical:
        for k, value in enumerate(var.values):
            if k == 0:
                values.append(0.0)
                continue
            try:
                values.append(_measure(space, {**base_arch, var.label: value}, metric, input_shape) - base)
            except Exception as err:
                raise ComplexityError(f'label {var.label!r}, value {value!r}: the {metric} of this choice could not '
                                      f'be determined ({type(err).__name__}: {err})') from err
    return ComplexityTable(encoding, metric, float(base), np.array(values, dtype=float))


def _regression_table(space, encoding: SearchSpaceEncoding, metric: str, input_shape, samples: int | None,
                      seed: int) -> ComplexityTable:
    """Least-squares main effects: one-hot design without each variable's first category (c_{d,0} = 0)."""
    k = np.asarray(encoding.num_categories)
    n = samples or int(3 * (k - 1).sum() + 10)
    rows = encoding.distribution().sample(n, np.random.default_rng(seed)).astype(int)
    offsets = encoding.category_offsets()[:-1]
    design = np.zeros((n, int(k.sum())))
    design[np.arange(n)[:, None], offsets + rows] = 1.0
    keep = np.ones(int(k.sum()), dtype=bool)
    keep[offsets] = False
    targets = []
    for row in rows:
        arch = encoding.to_architecture(row)
        try:
            targets.append(_measure(space, arch, metric, input_shape))
        except Exception as err:
            raise ComplexityError(f'could not measure the {metric} of architecture {arch}: {err}') from err
    x = np.concatenate([np.ones((n, 1)), design[:, keep]], axis=1)
    coef, *_ = np.linalg.lstsq(x, np.asarray(targets, dtype=float), rcond=None)
    per_category = np.zeros(int(k.sum()))
    per_category[keep] = coef[1:]
    return ComplexityTable(encoding, metric, float(coef[0]), per_category)

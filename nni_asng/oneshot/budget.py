"""A budget a user's hardware sets (parameters, FLOPs or latency on a device), for every strategy.

``budget={'metric': 'latency_ms', 'max': 5.0, 'input_shape': (1, 28, 28)}`` on any nni-asng strategy:

* before the search, the per-choice table of the metric is measured on the space (:mod:`.complexity`); when no
  architecture of the space fits, the search stops at once with a :class:`BudgetError` naming the smallest
  achievable value;
* during the search, the table predicts each sample's cost; samples over budget rank below every sample within
  it (Deb's rule, :func:`~nni_asng.optimizers.budget.feasible_first_losses`; policy-gradient strategies get a
  reward below every feasible one, :class:`~nni_asng.optimizers.budget.BudgetPenalty`);
* the export is the most likely architecture whose *measured* cost fits
  (:func:`~nni_asng.optimizers.budget.most_likely_within`), with that measurement reported.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from ..optimizers.budget import cheapest_row, feasible_first_losses, most_likely_within
from .complexity import METHODS, METRICS, ComplexityError, ComplexityTable, latency_options, measure_complexity
from .encoding import SearchSpaceEncoding
from .latency import LatencyOptions

__all__ = ['Budget', 'BudgetError', 'BudgetGuard']

_logger = logging.getLogger(__name__)

_UNITS = {'params': 'parameters', 'flops': 'FLOPs', 'latency_ms': 'ms'}
MAX_MEASURED = 32          # exports whose prediction fits but whose measurement is tried before giving up


class BudgetError(ValueError):
    """No architecture of the space fits the budget (the message names the smallest achievable value)."""


@dataclass(frozen=True)
class Budget:
    """``metric`` <= ``max``: ``'params'`` (weight parameters), ``'flops'`` (one forward pass, needs
    ``input_shape``) or ``'latency_ms'`` (median forward-pass time on ``latency['device']``, needs
    ``input_shape``). ``method``/``samples`` choose how the per-choice table is measured (``'marginal'``, or
    ``'regression'`` where choices interact); ``latency`` sets the timing (:class:`~.latency.LatencyOptions`:
    device, batch_size, warmup, repeats, threads); ``table`` reuses a :class:`ComplexityTable` measured
    earlier."""

    metric: str
    max: float
    input_shape: tuple | None = None        # flops, latency_ms and lazy modules need it (the app fills it in)
    method: str = 'marginal'
    samples: int | None = None
    latency: LatencyOptions | None = None
    table: ComplexityTable | None = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f'budget metric must be one of {METRICS}, got {self.metric!r}')
        if isinstance(self.max, bool) or not isinstance(self.max, (int, float)) or not 0 < self.max < float('inf'):
            raise ValueError(f'budget max must be a finite number > 0, got {self.max!r}')
        if self.method not in METHODS:
            raise ValueError(f'budget method must be one of {METHODS}, got {self.method!r}')
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            if not shape or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape):
                raise ValueError(f'budget input_shape must be positive integers (C, H, W), got {self.input_shape!r}')
            object.__setattr__(self, 'input_shape', shape)
        if self.table is not None and self.table.metric != self.metric:
            raise ValueError(f'budget table measures {self.table.metric!r}, not {self.metric!r}')
        if self.metric == 'latency_ms':
            object.__setattr__(self, 'latency', latency_options(self.latency))
        elif self.latency is not None:
            raise ValueError(f'budget latency options apply to metric latency_ms, not {self.metric!r}')

    @classmethod
    def parse(cls, value: Budget | Mapping[str, Any] | None) -> Budget | None:
        """A :class:`Budget` from itself or a dict of its fields; None stays None."""
        if value is None or isinstance(value, Budget):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"budget must be a dict such as {{'metric': 'params', 'max': 1e6}}, got {value!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f'unknown budget key(s) {unknown}; known: {known}')
        missing = [k for k in ('metric', 'max') if k not in value]
        if missing:
            raise ValueError(f"budget needs {missing}, e.g. {{'metric': 'latency_ms', 'max': 5.0}}")
        return cls(**value)

    def describe(self, value: float | None = None) -> str:
        return f'{self.metric} {_format(self.max if value is None else value, self.metric)}'


def _format(value: float, metric: str) -> str:
    return f'{value:.4g} ms' if metric == 'latency_ms' else f'{value:,.0f} {_UNITS[metric]}'


class BudgetGuard:
    """A :class:`Budget` on one space: its table predicts costs during the search; exports are measured.

    Raises :class:`BudgetError` at construction when the cheapest architecture the table predicts, measured,
    exceeds the budget (before any training is spent).
    """

    def __init__(self, budget: Budget, space, encoding: SearchSpaceEncoding, seed: int = 0):
        self.budget = budget
        self.space = space
        self.encoding = encoding
        if encoding.numerical:
            raise ComplexityError(f'a budget needs categorical variables; label(s) '
                                  f'{[v.label for v in encoding.numerical]} are numerical')
        table = budget.table
        if table is None or table.encoding.labels != encoding.labels:
            table = measure_complexity(space, encoding, budget.metric, budget.input_shape, method=budget.method,
                                       samples=budget.samples, seed=seed, latency=budget.latency)
        self.table = table
        self._measured: dict[tuple, float] = {}
        self.cheapest = self.encoding.to_architecture(cheapest_row(table.per_category, encoding.num_categories))
        self.smallest = self.measure(self.cheapest)
        """The measured cost of the architecture the table predicts smallest (the smallest achievable)."""
        if self.smallest > budget.max:
            raise BudgetError(
                f'no architecture of this space fits the budget {budget.describe()}: the smallest achievable is '
                f'{_format(self.smallest, budget.metric)} (architecture {self.cheapest}); raise the budget\'s max '
                f'to at least {self.smallest:.6g}')
        _logger.info('budget %s: the smallest architecture measures %s; stability %s', budget.describe(),
                     _format(self.smallest, budget.metric), table.stability or '-')

    @property
    def limit(self) -> float:
        return float(self.budget.max)

    def costs(self, rows: np.ndarray) -> np.ndarray:
        """The table's predicted cost of each row (the per-choice lookup of ProxylessNAS/FBNet)."""
        rows = np.asarray(rows, dtype=float).reshape(-1, len(self.encoding.variables)).astype(int)
        offsets = self.encoding.category_offsets()[:-1]
        return self.table.base + self.table.per_category[offsets + rows].sum(axis=1)

    def ranked_losses(self, rows: np.ndarray, losses: np.ndarray) -> np.ndarray:
        """Losses re-expressed so that samples over budget rank below every sample within it."""
        return feasible_first_losses(losses, self.costs(rows), self.limit)

    def measure(self, arch: dict[str, Any]) -> float:
        """The cost of ``arch`` measured on its frozen network (cached)."""
        key = tuple(sorted((k, repr(v)) for k, v in arch.items()))
        if key not in self._measured:
            self._measured[key] = self.table.measure(self.space, arch)
        return self._measured[key]

    def within(self, row: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """``row`` if its measured cost fits, else the most likely architecture under ``probabilities`` (flat,
        per category) whose predicted and measured costs fit."""
        arch = self.encoding.to_architecture(row)
        if self.costs(row)[0] <= self.limit and self.measure(arch) <= self.limit:
            return np.asarray(row)
        tried = [0]

        def cost(candidate: np.ndarray) -> float:
            predicted = float(self.costs(candidate)[0])
            if predicted > self.limit or tried[0] >= MAX_MEASURED:
                return max(predicted, np.nextafter(self.limit, np.inf))
            tried[0] += 1
            return self.measure(self.encoding.to_architecture(candidate))

        found = most_likely_within(probabilities, self.encoding.num_categories, cost, self.limit)
        if found is not None:
            return found.astype(float)
        if self.smallest <= self.limit:
            return self.encoding.to_row(self.cheapest)[:len(self.encoding.variables)].astype(float)
        raise BudgetError(f'no architecture found within the budget {self.budget.describe()}; the smallest the table '
                          f'predicts measures {_format(self.smallest, self.budget.metric)}')

    def report(self, arch: dict[str, Any]) -> dict[str, Any]:
        """What the outputs say about an export: metric, max, measured and predicted cost."""
        return {'metric': self.budget.metric, 'max': self.limit, 'measured': self.measure(arch),
                'predicted': float(self.costs(self.encoding.to_row(arch)[:len(self.encoding.variables)])[0]),
                'within': self.measure(arch) <= self.limit}

"""Complexity of each choice of an NNI space, measured on frozen child networks.

multi-complexity Eq. 6 needs c_{d,k}, the complexity (number of weight parameters, FLOPs, or the latency of a
forward pass on the user's device) that choosing category k of variable d adds. We measure it instead of asking
for it, in one of two ways:

* ``'marginal'``: with a base architecture b (first category everywhere),
  c_{d,k} = R(b with d ← k) − R(b) — Σ_d K_d frozen children;
* ``'regression'``: least-squares main effects over random architectures, i.e. the best additive
  model R(M) ≈ R₀ + Σ_d c_{d,M_d} under the uniform distribution.

Where the space is additive both are exact: R(M) = R₀ + Σ_d c_{d,M_d}. Where choices interact (loose-end
concatenation in the ENAS cell, active layers depending on connections in the CAE) the marginal
table is a linearisation around b and the regression table the closest additive model;
:meth:`ComplexityTable.additivity_error` measures how far either is from the exact count.

For ``'latency_ms'`` the table is a per-choice latency lookup table as ProxylessNAS (Cai et al. 2019, §3.3) and
FBNet (Wu et al. 2019, Eq. 5) build theirs, measured on whole frozen networks rather than on isolated layers, so
that it covers every kind of NNI mutable; the timing (warm-up, repeats, median, fixed threads) is that of
:mod:`.latency`, its stability is kept in :attr:`ComplexityTable.stability`, and
:meth:`ComplexityTable.check_additivity` times whole sampled networks beside the table's predictions. A space
with lazy modules (``nn.LazyLinear``) is measured after one forward pass with ``input_shape`` materialises them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..model_size import count_flops, count_parameters

from .encoding import SearchSpaceEncoding
from .latency import LatencyOptions, Timing, materialise, time_forward, time_interleaved

METRICS = ('params', 'flops', 'latency_ms')
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
    input_shape: tuple | None = None
    latency: LatencyOptions | None = None           # how 'latency_ms' was timed
    stability: dict[str, float] = field(default_factory=dict)   # 'latency_ms': spread of the timings

    def state(self) -> dict[str, Any]:
        """R(b) and c as plain numbers (a search's state: every rank and a resumed run rank with one table)."""
        return {'metric': self.metric, 'base': float(self.base), 'per_category': [float(v) for v in self.per_category]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take R(b) and c from :meth:`state` (the same metric, the same number of categories)."""
        per_category = np.asarray(state['per_category'], dtype=float)
        if state['metric'] != self.metric or per_category.shape != self.per_category.shape:
            raise ValueError(f"a {state['metric']} table of {per_category.size} categories cannot replace this "
                             f'{self.metric} table of {self.per_category.size}')
        self.base, self.per_category = float(state['base']), per_category

    def smallest(self) -> float:
        """min_M predict(M) = R(b) + Σ_d min_k c_{d,k}."""
        offsets = self.encoding.category_offsets()[:-1]
        return float(self.base + np.minimum.reduceat(self.per_category, offsets).sum())

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

    def measure(self, space, arch: dict[str, Any]) -> float:
        """R(M) of ``arch`` measured on its frozen network, as the table was (same input shape and timing)."""
        return _measure(space, arch, self.metric, self.input_shape, self.latency)

    def check_additivity(self, space, samples: int = 5, seed: int = 0, input_shape=None) -> list[dict[str, Any]]:
        """R(M) measured on random whole architectures beside predict(M): per sample ``architecture``,
        ``measured``, ``predicted`` and ``relative_error`` = |measured − predicted| / measured.

        Latencies are timed together with the base architecture b, interleaved, and scaled by R(b)/T(b), so that
        a change of the machine's load since the table was measured is not counted as an additivity error."""
        rng = np.random.default_rng(seed)
        shape = self.input_shape if input_shape is None else input_shape
        archs = [self.encoding.to_architecture(row) for row in self.encoding.distribution().sample(samples, rng)]
        if self.metric == 'latency_ms':
            base = self.encoding.to_architecture(np.zeros(len(self.encoding.variables)))
            timed, _ = _measure_all(space, [base] + archs, ['the base architecture'] + [f'sample {i}' for i in
                                                                                        range(samples)],
                                    self.metric, shape, self.latency)
            measured = [t * self.base / timed[0] for t in timed[1:]]
        else:
            measured, _ = _measure_all(space, archs, [f'sample {i}' for i in range(samples)], self.metric, shape,
                                       self.latency)
        out = []
        for arch, exact in zip(archs, measured):
            predicted = self.predict(arch)
            out.append({'architecture': arch, 'measured': exact, 'predicted': predicted,
                        'relative_error': abs(exact - predicted) / max(exact, 1e-12 if self.metric == 'latency_ms'
                                                                       else 1)})
        return out

    def additivity_error(self, space, samples: int = 5, seed: int = 0, input_shape=None) -> float:
        """Largest |R(M) − predict(M)| / R(M) over random architectures (0 for additive spaces)."""
        return max(r['relative_error'] for r in self.check_additivity(space, samples, seed, input_shape))


def _measure(space, arch: dict[str, Any], metric: str, input_shape, latency: LatencyOptions | None = None) -> float:
    model = materialise(space.freeze(arch), input_shape)
    if metric == 'params':
        return count_parameters(model)
    if metric == 'flops':
        return count_flops(model, input_shape)
    return time_forward(model, input_shape, latency).ms


def latency_options(value: LatencyOptions | Mapping[str, Any] | None) -> LatencyOptions:
    """:class:`LatencyOptions` from a dict of its fields (a clear error naming an unknown one)."""
    if value is None:
        return LatencyOptions()
    if isinstance(value, LatencyOptions):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f'latency options must be a dict, got {value!r}')
    known = set(LatencyOptions.__dataclass_fields__)
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f'unknown latency option(s) {unknown}; known: {sorted(known)}')
    return LatencyOptions(**value)


def _stability(timings: list[Timing], references: list[Timing]) -> dict[str, float]:
    """How far the timings can be trusted: ``median_spread``/``max_spread``, the relative inter-quartile range of
    the rounds of a measurement (median and worst over all); ``reference_drift``, the largest change of the
    reference network between the first and second half of its rounds and between chunks, relative."""
    spreads = np.array([t.spread for t in timings])
    first = references[0].ms
    halves = [abs(float(np.median(r.rounds_ms[:len(r.rounds_ms) // 2]))
                  - float(np.median(r.rounds_ms[len(r.rounds_ms) // 2:]))) / r.median_ms for r in references]
    drift = halves + [abs(r.ms - first) / first for r in references]
    return {'measurements': len(timings), 'median_spread': float(np.median(spreads)),
            'max_spread': float(spreads.max()), 'reference_drift': float(max(drift))}


def measure_complexity(space, encoding: SearchSpaceEncoding | None = None, metric: str = 'params',
                       input_shape: Sequence[int] | None = None, method: str = 'marginal',
                       samples: int | None = None, seed: int = 0,
                       latency: LatencyOptions | Mapping[str, Any] | None = None) -> ComplexityTable:
    """Build the :class:`ComplexityTable` of ``space`` (a not-yet-mutated NNI ``ModelSpace``).

    ``metric='flops'`` and ``'latency_ms'`` need ``input_shape`` (C, H, W), as does a space with lazy modules;
    ``latency`` sets the timing (:class:`~.latency.LatencyOptions` or a dict: device, batch_size, warmup, repeats,
    threads). ``method='regression'`` fits main effects to ``samples`` random architectures (default
    3·Σ_d(K_d − 1) + 10). Raises :class:`ComplexityError` naming the label and value whose child network could
    not be built or measured.
    """
    if metric not in METRICS:
        raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    if metric in ('flops', 'latency_ms') and input_shape is None:
        raise ValueError(f"metric={metric!r} needs input_shape, e.g. (1, 28, 28)")
    options = latency_options(latency) if metric == 'latency_ms' else None
    shape = None if input_shape is None else tuple(int(v) for v in input_shape)
    encoding = encoding or SearchSpaceEncoding(space)
    if encoding.numerical:
        raise ComplexityError(f'complexity regularisation needs categorical variables; label(s) '
                              f'{[v.label for v in encoding.numerical]} are numerical')
    if method == 'regression':
        return _regression_table(space, encoding, metric, shape, samples, seed, options)
    base_arch = encoding.to_architecture(np.zeros(len(encoding.variables)))
    archs, what = [base_arch], ['the base architecture']
    for var in encoding.categorical:
        for value in var.values[1:]:
            archs.append({**base_arch, var.label: value})
            what.append(f'label {var.label!r}, value {value!r}')
    measured, stability = _measure_all(space, archs, what, metric, shape, options)
    values, i = [], 1
    for var in encoding.categorical:
        values.append(0.0)
        for _ in var.values[1:]:
            values.append(measured[i] - measured[0])
            i += 1
    return ComplexityTable(encoding, metric, float(measured[0]), np.array(values, dtype=float), shape, options,
                           stability)


LATENCY_CHUNK = 16
"""Networks timed together, their rounds interleaved, for a latency table (bounds the memory of frozen copies)."""


def _measure_all(space, archs: list[dict[str, Any]], what: list[str], metric: str, input_shape,
                 options: LatencyOptions | None) -> tuple[list[float], dict[str, float]]:
    """R of every architecture, and for latency the stability of the timings. Latencies are timed in chunks of
    :data:`LATENCY_CHUNK` networks with ``archs[0]`` (the reference) in each, rounds interleaved; a later chunk
    is scaled by the reference's change since the first (another process sharing the core slows every network
    by about the same factor), so that drift of the machine's load between chunks does not enter the
    differences."""
    def network(i: int):
        try:
            return materialise(space.freeze(archs[i]), input_shape)
        except Exception as err:   # the space's own error, re-raised with what we were measuring
            raise ComplexityError(f'{what[i]} ({archs[i]}): could not build the network to measure {metric} '
                                  f'({type(err).__name__}: {err})') from err

    if metric != 'latency_ms':
        out = []
        for i in range(len(archs)):
            model = network(i)
            try:
                out.append(float(count_parameters(model) if metric == 'params' else count_flops(model, input_shape)))
            except Exception as err:
                raise ComplexityError(f'{what[i]}: the {metric} of this choice could not be determined '
                                      f'({type(err).__name__}: {err})') from err
        return out, {}
    out: list[float] = [0.0] * len(archs)
    timings: list[Timing] = []
    references: list[Timing] = []
    for start in range(1, max(len(archs), 2), LATENCY_CHUNK - 1):
        index = [0] + list(range(start, min(start + LATENCY_CHUNK - 1, len(archs))))
        measured = time_interleaved([network(i) for i in index], input_shape, options, seed=start)
        timings.extend(measured)
        references.append(measured[0])
        scale = references[0].ms / measured[0].ms
        for i, timing in zip(index, measured):
            out[i] = timing.ms * (scale if i else 1.0)
    return out, _stability(timings, references)


def _regression_table(space, encoding: SearchSpaceEncoding, metric: str, input_shape, samples: int | None,
                      seed: int, options: LatencyOptions | None = None) -> ComplexityTable:
    """Least-squares main effects: one-hot design without each variable's first category (c_{d,0} = 0)."""
    k = np.asarray(encoding.num_categories)
    n = samples or int(3 * (k - 1).sum() + 10)
    rows = encoding.distribution().sample(n, np.random.default_rng(seed)).astype(int)
    offsets = encoding.category_offsets()[:-1]
    design = np.zeros((n, int(k.sum())))
    design[np.arange(n)[:, None], offsets + rows] = 1.0
    keep = np.ones(int(k.sum()), dtype=bool)
    keep[offsets] = False
    archs = [encoding.to_architecture(row) for row in rows]
    targets, stability = _measure_all(space, archs, [f'sample {i}' for i in range(n)], metric, input_shape, options)
    x = np.concatenate([np.ones((n, 1)), design[:, keep]], axis=1)
    coef, *_ = np.linalg.lstsq(x, np.asarray(targets, dtype=float), rcond=None)
    per_category = np.zeros(int(k.sum()))
    per_category[keep] = coef[1:]
    return ComplexityTable(encoding, metric, float(coef[0]), per_category, input_shape, options, stability)

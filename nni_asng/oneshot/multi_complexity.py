"""Multi-complexity search as an NNI one-shot strategy (Noda, Saito, Shirakawa; Algorithms 1–3)."""
from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any, Sequence

import numpy as np

from ..optimizers.multi_complexity import MultiComplexityOptimizer
from .budget import Budget
from .complexity import METRICS, ComplexityTable, latency_options, measure_complexity
from .encoding import SearchSpaceEncoding
from .latency import LatencyOptions
from .searcher import ArchitectureSearcher, BatchEvaluator, Phase, categorical_probabilities
from .strategy import ProbabilisticOneShotStrategy

_logger = logging.getLogger(__name__)

METHODS = ('importance_sampling', 'separate', 'simultaneous')


class MultiComplexitySearcher(ArchitectureSearcher):
    """The three procedures of the paper over one :class:`MultiComplexityOptimizer`:

    * ``importance_sampling`` (Algorithm 1): T_W epochs train the weights with uniformly sampled
      architectures, then T_θ epochs update all N distributions from mixture samples (Eq. 10);
    * ``separate`` (Method 2, Algorithm 3): the same weight stage, then T_θ epochs per distribution,
      each updated only from its own samples;
    * ``simultaneous`` (Method 1, Algorithm 2, one ε): weights and θ updated together every step.
    """

    def __init__(self, encoding: SearchSpaceEncoding, optimizer: MultiComplexityOptimizer,
                 complexity: ComplexityTable, weight_epochs: int | None, theta_epochs: int | None, method: str):
        super().__init__(encoding)
        self.optimizer = optimizer
        self.complexity = complexity
        self.method = method
        self.stage_settings = (weight_epochs, theta_epochs)
        self.weight_epochs, self.theta_epochs = self._stages(None)          # resolved again by start()
        self._epoch = 0
        self._pending: np.ndarray | None = None

    @property
    def _per_component(self) -> int:
        return self.optimizer.num_distributions if self.method == 'separate' else 1

    def _stages(self, max_epochs: int | None) -> tuple[int, int]:
        """(T_W, T_θ): as given; a None takes what the run's ``max_epochs`` leaves (both None: the weight stage
        is the first half, at least one epoch, and T_θ the rest, shared by the ε for ``separate``)."""
        weight, theta = self.stage_settings
        if self.method == 'simultaneous':           # one stage: weights and θ together
            return 0, (theta if theta is not None else max_epochs or 1)
        if max_epochs is None:                       # before the run's length is known: placeholders
            return (1 if weight is None else weight), (1 if theta is None else theta)
        if weight is None:
            weight = max(1, max_epochs // 2) if theta is None else max(1, max_epochs - self._per_component * theta)
        if theta is None:
            theta = max(1, (max_epochs - weight) // self._per_component)
        return weight, theta

    @property
    def required_epochs(self) -> int:
        if self.method == 'simultaneous':
            return self.theta_epochs
        return self.weight_epochs + self._per_component * self.theta_epochs

    def start(self, total_steps: int | None, steps_per_epoch: int | None) -> None:
        if total_steps is None or steps_per_epoch is None:
            if None in self.stage_settings:
                raise ValueError('MultiComplexity with weight_epochs or theta_epochs None sizes its stages from the '
                                 'run\'s length, but this run has none (max_epochs=-1 and no max_steps): set '
                                 'max_epochs in the evaluator, or both weight_epochs and theta_epochs')
            return                                   # an open-ended run: the stages go by epochs anyway
        epochs = total_steps // max(steps_per_epoch, 1)
        self.weight_epochs, self.theta_epochs = self._stages(epochs)
        if epochs < self.required_epochs:
            raise ValueError(f'MultiComplexity ({self.method}) needs {self.required_epochs} epochs '
                             f'(weight_epochs={self.weight_epochs}, theta_epochs={self.theta_epochs}'
                             f'{", once per ε" if self.method == "separate" else ""}) but the evaluator trains for '
                             f'{epochs}: set max_epochs={self.required_epochs} in the evaluator')
        if epochs > self.required_epochs:
            _logger.warning('the evaluator trains for %d epochs; MultiComplexity needs %d, the rest only repeat '
                            'the last stage', epochs, self.required_epochs)

    def weight_training_epochs(self, max_epochs: int) -> int:
        return max_epochs if self.method == 'simultaneous' else min(self._stages(max_epochs)[0], max_epochs)

    def _component(self) -> int | None:
        if self.method != 'separate':
            return None
        return min((self._epoch - self.weight_epochs) // self.theta_epochs, self.optimizer.num_distributions - 1)

    def phase(self, epoch: int, step: int = 0) -> Phase:
        self._epoch = epoch
        if self.method == 'simultaneous':
            return Phase(True, True)
        in_weight_stage = epoch < self.weight_epochs
        return Phase(train_weights=in_weight_stage, train_architecture=not in_weight_stage)

    def weight_architectures(self, epoch: int) -> np.ndarray:
        if self.method == 'simultaneous':
            self._pending = self.optimizer.ask(component=0)
            return self._pending
        return self.optimizer.ask_uniform()

    def architecture_step(self, evaluator: BatchEvaluator) -> dict[str, float]:
        component = self._component()
        if self._pending is not None:
            rows, self._pending = self._pending, None
        else:
            rows = self.optimizer.ask(component=component)
        losses = evaluator.losses(rows)
        updated = self.optimizer.tell(rows, self.ranked_losses(rows, losses),
                                      components=None if component is None else [component])
        return {'arch_loss': float(np.mean(losses)), 'arch_updated': float(updated)}

    def most_likely_rows(self) -> list[np.ndarray]:
        """One architecture per ε, ordered from the smallest to the largest complexity."""
        return [row for _, row in self._ordered()]

    def _ordered(self) -> list[tuple[int, np.ndarray]]:
        """(n, argmax of distribution n) from the smallest to the largest predicted complexity."""
        rows = [r.astype(float) for r in self.optimizer.most_likely()]
        return sorted(enumerate(rows), key=lambda nr: (self.complexity.predict(self.encoding.to_architecture(nr[1])),
                                                       nr[0]))

    def export_probabilities(self) -> list[np.ndarray]:
        return [self.optimizer.distributions[n].theta for n, _ in self._ordered()]

    def export(self) -> list[dict[str, Any]]:
        """One architecture per ε, within the budget if there is one, from the smallest to the largest."""
        return sorted(super().export(), key=self.complexity.predict)

    def _exported_rows(self) -> list[np.ndarray]:
        """Per ε (in the given order) its argmax, or the most likely architecture within the budget."""
        rows = self.optimizer.most_likely()
        if self.budget is None:
            return rows
        return [self.budget.within(row.astype(float), d.theta) for row, d in zip(rows, self.optimizer.distributions)]

    def export_with_complexity(self) -> list[dict[str, Any]]:
        """For every ε (in the given order): its architecture and predicted complexity."""
        out = []
        for eps, row in zip(self.optimizer.epsilons, self._exported_rows()):
            arch = self.encoding.to_architecture(row)
            out.append({'epsilon': float(eps), 'architecture': arch,
                        self.complexity.metric: self.complexity.predict(arch)})
        return out

    def summary(self) -> dict[str, float]:
        out = {}
        starts = self.optimizer.distributions[0].offsets[:-1]
        for n, dist in enumerate(self.optimizer.distributions):
            out[f'convergence_{n}'] = float(np.maximum.reduceat(dist.theta, starts).mean())
            out[f'expected_{self.complexity.metric}_{n}'] = float(self.complexity.base + dist.expectation(
                self.complexity.per_category))
        out['entropy'] = float(np.mean([d.entropy() for d in self.optimizer.distributions]))
        return out

    def probabilities(self) -> dict[str, dict[str, float]]:
        return categorical_probabilities(self.encoding, self.optimizer.distributions[0].theta)

    def state_dict(self) -> dict:
        return {'optimizer': self.optimizer.state_dict(), 'pending': self._pending, **self.tables_state(),
                'complexity_table': self.complexity.state(),
                'complexity_normalised': [float(v) for v in self.optimizer.complexity]}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state['optimizer'])
        self._pending = state.get('pending')
        self.load_tables_state(state)
        if 'complexity_table' in state:           # the regulariser's c, as rank 0 / the first run measured it
            self.complexity.load_state(state['complexity_table'])
            self.optimizer.complexity = np.asarray(state['complexity_normalised'], dtype=float)


class MultiComplexity(ProbabilisticOneShotStrategy):
    """Several architectures of different sizes from one search (Noda, Saito, Shirakawa).

    One categorical distribution per regularisation coefficient ε_n minimises E[loss] + ε_n E[R(M)],
    with R the number of weight parameters (or FLOPs) of the sampled architecture, measured from
    the space itself. After ``weight_epochs`` of supernet training with uniform sampling, all N
    distributions are updated for ``theta_epochs`` from samples of their mixture, reweighted by
    likelihood ratios (Algorithm 1). ``export_top_models(top_k=N)`` returns the N argmax
    architectures from the smallest to the largest. The evaluator must train for
    ``weight_epochs + theta_epochs`` epochs (``weight_epochs + N·theta_epochs`` for ``separate``) when
    both are given.

    Parameters
    ----------
    epsilons
        ε_1..ε_N >= 0 (e.g. [0.0, 0.1, 0.3, 0.5] as the paper's CIFAR-10 run).
    weight_epochs, theta_epochs
        T_W and T_θ. A None takes the epochs of the evaluator's ``max_epochs`` that the other stage leaves;
        both None (the default) give the weights the first half of the run and θ the second. The paper's
        fixed counts (e.g. ``weight_epochs=1, theta_epochs=1``) remain available; with few epochs they leave
        θ ranking architectures on a barely trained supernet, or θ too few steps to leave the uniform
        distribution, whose argmax is every choice's first candidate (experiments/README.md, "Premature
        decisions").
    lam
        λ, architectures per step (paper: 2 on CIFAR-10, 8 on ImageNet).
    learning_rate
        η (default (Σ_d K_d)⁻¹, the paper's choice).
    complexity
        ``'params'`` (weight parameters, the paper's R), ``'flops'`` or ``'latency_ms'`` (the median forward-pass
        time on ``latency['device']``, a per-choice lookup table as ProxylessNAS/FBNet's); both need
        ``input_shape``, as does a space with lazy modules (one forward pass materialises them).
    latency
        How ``'latency_ms'`` is timed (:class:`~.latency.LatencyOptions` or a dict: device ['cpu'], batch_size
        [1], warmup [10], repeats [30], threads [1]).
    complexity_scale
        ``'max'`` divides c by the largest spread a single choice makes, so that ε means the same
        on any space (the paper does not state its unit); a number divides by it (1e6: millions).
    complexity_method, complexity_samples
        ``'marginal'`` (exact and cheap on additive spaces: NB201, ProxylessNAS) or ``'regression'``
        (least-squares main effects over ``complexity_samples`` random architectures; use it where choices
        interact, e.g. the ENAS cell).
    complexity_table
        A :class:`ComplexityTable` measured earlier for the same space (skips the measurement).
    method
        ``'importance_sampling'`` (Algorithm 1), ``'separate'`` (Method 2) or ``'simultaneous'``
        (Method 1: one ε, weights and θ updated together; run one search per ε).
    """

    def __init__(self, *, epsilons: Sequence[float] = (0.0, 0.1, 0.3, 0.5), weight_epochs: int | None = None,
                 theta_epochs: int | None = None, lam: int = 2, learning_rate: float | None = None, theta_min: str | float = 'paper',
                 complexity: str = 'params', input_shape: Sequence[int] | None = None,
                 complexity_scale: str | float = 'max', complexity_method: str = 'marginal',
                 complexity_samples: int | None = None, complexity_table: ComplexityTable | None = None,
                 method: str = 'importance_sampling', latency: LatencyOptions | dict | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if complexity not in METRICS:
            raise ValueError(f'complexity must be one of {METRICS}, got {complexity!r}')
        self.latency = latency_options(latency) if complexity == 'latency_ms' else None
        if method not in METHODS:
            raise ValueError(f'method must be one of {METHODS}, got {method!r}')
        epsilons = list(epsilons)
        if method == 'simultaneous' and len(epsilons) != 1:
            raise ValueError('method="simultaneous" (Method 1) trains the weights for one ε at a time: pass a single ε '
                             'and run one search per ε')
        # weight_epochs=0 starts the θ stage at once, e.g. from a supernet whose weights were loaded.
        minimum = {'weight_epochs': 0, 'theta_epochs': 1}
        for name, value in [('weight_epochs', weight_epochs), ('theta_epochs', theta_epochs)]:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum[name]:
                raise ValueError(f'{name} must be an integer >= {minimum[name]} for method={method!r}, got {value!r}')
        if complexity_scale != 'max' and not (isinstance(complexity_scale, (int, float)) and complexity_scale > 0):
            raise ValueError(f"complexity_scale must be 'max' or a number > 0, got {complexity_scale!r}")
        self.optimizer_kwargs = dict(epsilons=epsilons, lam=lam, lr=learning_rate, theta_min=theta_min,
                                     importance_sampling=(method == 'importance_sampling'))
        MultiComplexityOptimizer([2, 2], np.zeros(4), **self.optimizer_kwargs)          # fail fast
        self.weight_epochs, self.theta_epochs = weight_epochs, theta_epochs
        self.complexity, self.input_shape = complexity, input_shape
        self.complexity_scale = complexity_scale
        if complexity_method not in ('marginal', 'regression'):
            raise ValueError(f"complexity_method must be 'marginal' or 'regression', got {complexity_method!r}")
        self.complexity_method = complexity_method
        self.complexity_samples = complexity_samples
        self.method = method
        self.complexity_table: ComplexityTable | None = complexity_table

    def build_searcher(self, encoding: SearchSpaceEncoding, model=None) -> MultiComplexitySearcher:
        if model is None:
            raise ValueError('MultiComplexity measures the complexity of each choice on the model space itself')
        if self.complexity_table is None or self.complexity_table.encoding.labels != encoding.labels:
            self.complexity_table = measure_complexity(model, encoding, self.complexity, self.input_shape,
                                                       method=self.complexity_method, samples=self.complexity_samples,
                                                       seed=self.seed or 0, latency=self.latency)
        _logger.info('complexity (%s) of the base architecture: %g; per choice: %s; stability: %s', self.complexity,
                     self.complexity_table.base, self.complexity_table.per_category.tolist(),
                     self.complexity_table.stability or '-')
        optimizer = MultiComplexityOptimizer(encoding.num_categories,
                                             self.complexity_table.normalised(self.complexity_scale),
                                             seed=self.seed, **self.optimizer_kwargs)
        return MultiComplexitySearcher(encoding, optimizer, self.complexity_table, self.weight_epochs,
                                       self.theta_epochs, self.method)

    def budget_for(self, model) -> Budget:
        table = self.complexity_table
        if self.budget.table is None and table is not None and table.metric == self.budget.metric:
            return dataclasses.replace(self.budget, table=table)
        return self.budget

    def list_models(self, sort: bool = True, limit: int | None = None):
        """The N architectures, smallest to largest (``export_top_models(top_k=N)``)."""
        exported = self.searcher.export()
        if len({tuple(sorted((k, str(v)) for k, v in a.items())) for a in exported}) < len(exported):
            warnings.warn('several ε ended on the same architecture: the distributions collapsed; widen the ε range '
                          'or train θ longer', RuntimeWarning)
        return super().list_models(sort=sort, limit=limit)

    def results(self) -> list[dict[str, Any]]:
        """Per ε: the architecture and its predicted complexity (see :class:`ComplexityTable`)."""
        return self.searcher.export_with_complexity()

"""AdvantageNAS and REINFORCE as NNI one-shot strategies (advantagenas Algorithm 1, Appendix C/D)."""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
from nni.nas.nn.pytorch import LayerChoice

from ..optimizers.budget import BudgetPenalty
from ..optimizers.policy_gradient import (AdvantageOptimizer, PolicyGradientOptimizer, ReinforceOptimizer,
                                          SoftmaxCategoricalPolicy)
from .encoding import SearchSpaceEncoding, UnsupportedSpaceError
from .gated import GATED_HOOKS
from .searcher import (DEFAULT_WARMUP, ArchitectureSearcher, BatchEvaluator, Phase, WarmupSchedule,
                       categorical_probabilities, check_warmup)
from .strategy import ProbabilisticOneShotStrategy

_logger = logging.getLogger(__name__)

ZERO_OPERATION_NAMES = frozenset({'none', 'zero'})
EXPORT_MODES = ('argmax', 'process_best')


def zero_operations(encoding: SearchSpaceEncoding, model) -> np.ndarray:
    """Flat mask of the categories that are a zero operation (named 'none'/'zero', or a ``Zero`` module)."""
    layer_choices = {m.label: m for m in model.modules() if isinstance(m, LayerChoice)}
    mask = []
    for var in encoding.categorical:
        choice = layer_choices.get(var.label)
        for value in var.values:
            zero = isinstance(value, str) and value.lower() in ZERO_OPERATION_NAMES
            if choice is not None and not zero:
                zero = type(choice[value]).__name__.lower() in {'zero', 'zeroop', 'zerooperation'}
            mask.append(zero)
    return np.array(mask, dtype=bool)


class PolicyGradientSearcher(ArchitectureSearcher):
    """Algorithm 1 of advantagenas: one sampled architecture trains the weights on a D batch;
    another is evaluated on a V batch and its credit (per-label advantages, or the reward for
    REINFORCE) updates the softmax logits. Exports by ``argmax`` of μ(θ) or by ``process_best``
    (the architecture with the lowest θ-step loss seen), §5.2."""

    def __init__(self, encoding: SearchSpaceEncoding, optimizer: PolicyGradientOptimizer, warmup: float = 0.0,
                 warmup_epochs: int | None = None, export: str = 'argmax', cosine_schedule: bool = True):
        super().__init__(encoding)
        self.optimizer = optimizer
        self.uses_credits = isinstance(optimizer, AdvantageOptimizer)
        self.warmup = WarmupSchedule(warmup, warmup_epochs)
        self.export_mode = export
        self.cosine_schedule = cosine_schedule
        self.best_row: np.ndarray | None = None
        self.best_loss = math.inf
        self._warned_nonfinite = False
        self.penalty: BudgetPenalty | None = None        # made with the budget, at the first θ step

    def _budget_penalty(self, row: np.ndarray, loss: float) -> tuple[float, bool]:
        """(the loss told, whether ``row`` fits the budget): an infeasible sample's loss is raised above every
        loss told so far (:class:`~nni_asng.optimizers.budget.BudgetPenalty`)."""
        if self.budget is None:
            return loss, True
        if self.penalty is None:
            self.penalty = BudgetPenalty(self.budget.limit)
        cost = float(self.budget.costs(row)[0])
        return self.penalty(loss, cost), cost <= self.budget.limit

    def phase(self, epoch: int, step: int = 0) -> Phase:
        return Phase(train_weights=True, train_architecture=not self.warmup.holds(step))

    def start(self, total_steps: int | None, steps_per_epoch: int | None) -> None:
        self.warmup.start(total_steps, steps_per_epoch)
        if self.cosine_schedule and total_steps is not None:
            self.optimizer.set_total_steps(max(1, total_steps - self.warmup.steps))

    def weight_architectures(self, epoch: int) -> np.ndarray:
        return self.optimizer.ask(1)

    def architecture_step(self, evaluator: BatchEvaluator) -> dict[str, float]:
        row = self.optimizer.ask(1)[0]
        feasible = self.budget is None or float(self.budget.costs(row)[0]) <= self.budget.limit
        if self.uses_credits and feasible:
            loss, credits = evaluator.credits(row)
            advantages = [credits.get(var.label, math.nan) for var in self.encoding.categorical]
            updated = self.optimizer.tell(row, self._budget_penalty(row, loss)[0], advantages)
        elif self.uses_credits:
            # Over budget: every label gets the REINFORCE credit r − b of the penalised reward (an unknown
            # advantage, NaN, falls back to it), which pushes all its choices down.
            loss = float(evaluator.losses(row[None])[0])
            updated = self.optimizer.tell(row, self._budget_penalty(row, loss)[0],
                                          [math.nan] * len(self.encoding.categorical))
        else:
            loss = float(evaluator.losses(row[None])[0])
            updated = self.optimizer.tell(row, self._budget_penalty(row, loss)[0])
        if not updated and not self._warned_nonfinite:
            warnings.warn(f'non-finite loss {loss} in an architecture step; θ is kept (warned once)', RuntimeWarning)
            self._warned_nonfinite = True
        if feasible and math.isfinite(loss) and loss < self.best_loss:
            self.best_loss, self.best_row = loss, row.copy()
        return {'arch_loss': loss, 'arch_updated': float(updated)}

    def argmax_row(self) -> np.ndarray:
        return self.optimizer.most_likely().astype(float)

    def process_best_row(self) -> np.ndarray:
        """The architecture with the lowest θ-step loss so far (argmax until one was evaluated)."""
        return self.argmax_row() if self.best_row is None else self.best_row.astype(float)

    def most_likely_rows(self) -> list[np.ndarray]:
        return [self.process_best_row() if self.export_mode == 'process_best' else self.argmax_row()]

    def export_probabilities(self) -> list[np.ndarray]:
        return [self.optimizer.policy.probabilities()]

    def summary(self) -> dict[str, float]:
        p = self.optimizer.policy.probabilities()
        starts = self.optimizer.policy.offsets[:-1]
        return {'convergence': float(np.maximum.reduceat(p, starts).mean()),
                'entropy': self.optimizer.policy.entropy(), 'lr': self.optimizer._current_lr()}

    def probabilities(self) -> dict[str, dict[str, float]]:
        return categorical_probabilities(self.encoding, self.optimizer.policy.probabilities())

    def state_dict(self) -> dict:
        state = {'optimizer': self.optimizer.state_dict(), 'best_row': self.best_row, 'best_loss': self.best_loss,
                 **self.tables_state()}
        if self.penalty is not None:
            state['budget_penalty'] = self.penalty.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state['optimizer'])
        self.best_row, self.best_loss = state['best_row'], float(state['best_loss'])
        self.load_tables_state(state)
        if 'budget_penalty' in state and self.budget is not None:
            self.penalty = BudgetPenalty(self.budget.limit)
            self.penalty.load_state_dict(state['budget_penalty'])


class _PolicyGradientStrategy(ProbabilisticOneShotStrategy):
    """Shared parameters of AdvantageNAS and Reinforce (defaults: advantagenas Appendix D, except the learning
    rate: see :class:`AdvantageNAS`)."""

    def __init__(self, *, learning_rate: float = 0.1, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 3e-3, arch_grad_clip: float | None = 1.0, cosine_schedule: bool = True,
                 gamma: float = 0.05, warmup: float = DEFAULT_WARMUP, warmup_epochs: int | None = None,
                 export: str = 'argmax', exclude_zero: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if export not in EXPORT_MODES:
            raise ValueError(f'export must be one of {EXPORT_MODES}, got {export!r}')
        check_warmup(warmup, warmup_epochs)
        self.warmup = warmup
        self.optimizer_kwargs = dict(lr=learning_rate, betas=tuple(betas), weight_decay=weight_decay,
                                     grad_clip=arch_grad_clip, gamma=gamma)
        PolicyGradientOptimizer(SoftmaxCategoricalPolicy([2]), **self.optimizer_kwargs)   # fail fast
        self.cosine_schedule = cosine_schedule
        self.warmup_epochs = warmup_epochs
        self.export = export
        self.exclude_zero = exclude_zero

    def build_searcher(self, encoding: SearchSpaceEncoding, model=None) -> PolicyGradientSearcher:
        if encoding.numerical:
            raise UnsupportedSpaceError(
                f'{type(self).__name__} samples softmax categoricals only; label(s) '
                f'{[v.label for v in encoding.numerical]} are numerical (nni.uniform / nni.quniform): '
                'use ASNG or PDAS for them, or make them nni.choice')
        zero = zero_operations(encoding, model) if model is not None else np.zeros(sum(encoding.num_categories), bool)
        excluded = zero if self.exclude_zero else None
        if self.exclude_zero:
            named = [v.label for i, v in enumerate(encoding.categorical)
                     if zero[encoding.category_offsets()[i]:encoding.category_offsets()[i + 1]].any()]
            _logger.info('zero operations excluded from the search for labels %s', named)
        policy = SoftmaxCategoricalPolicy(encoding.num_categories, excluded=excluded)
        optimizer = self.make_optimizer(policy, zero)
        return PolicyGradientSearcher(encoding, optimizer, warmup=self.warmup, warmup_epochs=self.warmup_epochs,
                                      export=self.export, cosine_schedule=self.cosine_schedule)

    def make_optimizer(self, policy: SoftmaxCategoricalPolicy, zero: np.ndarray) -> PolicyGradientOptimizer:
        raise NotImplementedError

    def export_architectures(self, mode: str) -> dict[str, Any]:
        """The architecture found, exported by ``'argmax'`` or ``'process_best'`` (advantagenas §5.2)."""
        if mode not in EXPORT_MODES:
            raise ValueError(f'mode must be one of {EXPORT_MODES}, got {mode!r}')
        searcher: PolicyGradientSearcher = self.searcher  # type: ignore[assignment]
        row = searcher.process_best_row() if mode == 'process_best' else searcher.argmax_row()
        if searcher.budget is not None:
            row = searcher.budget.within(row, searcher.export_probabilities()[0])
        return self.encoding.to_architecture(row)


class AdvantageNAS(_PolicyGradientStrategy):
    """AdvantageNAS (Sato, Sakuma, Akimoto, AAAI 2021): policy gradient with per-label credit.

    The θ step evaluates one sampled architecture on a V batch with the chosen candidate of every
    ``LayerChoice``, ``InputChoice`` and cell op/input multiplied by a gate a_i = 1; one backward
    pass gives the first-order advantage A_i = ∂r/∂a_i (Eq. 7), and θ_i ascends A_i(a_i − μ_i(θ_i)).
    Labels that cannot be gated (``Repeat`` depth, ``nni.choice`` inside operators) use the
    REINFORCE credit r − b (unbiased, Appendix C). Zero operations get the worst EMA advantage
    (Appendix B), or are never sampled with ``exclude_zero=True`` (as the paper's §5.2 space).

    Parameters
    ----------
    learning_rate, betas, weight_decay, arch_grad_clip, cosine_schedule
        Adam on θ with cosine annealing to 0 and gradient clipping: 0.1, (0.5, 0.999), 3e-3, 1.0.
        Appendix D's learning rate, 3e-4, is meant for its ~20k θ steps (50 epochs of CIFAR-10); in a search
        of a few hundred θ steps it leaves θ at uniform (mean max probability 0.34 of 0.33 after 310 steps on
        the tabular benchmark); in the sweep 3e-4 … 0.3 there, 0.1 and 0.3 converged θ and exported the best
        architectures (median 80.86 %, 80th percentile, against 79.70 % at 3e-4; experiments/README.md,
        "Sweeps"). Pass ``learning_rate=3e-4`` for the paper's setting on long searches.
    gamma
        EMA decay of the zero-operation advantages and the fallback baseline (0.05).
    warmup, warmup_epochs
        θ is held while the weights train alone: for the first ``warmup`` share of the planned weight steps
        (default 0.5, as Appendix D fixes θ for the first half of the search), or for ``warmup_epochs`` whole
        epochs when given; ``warmup=0`` moves θ from the first step. A share needs the run's planned length.
    export
        ``'argmax'`` (default) or ``'process_best'``; both are available after the search through
        :meth:`export_architectures`.
    exclude_zero
        Never sample zero operations.
    """

    def default_mutation_hooks(self) -> list:
        return GATED_HOOKS + super().default_mutation_hooks()

    def make_optimizer(self, policy, zero) -> AdvantageOptimizer:
        return AdvantageOptimizer(policy, zero=zero, seed=self.seed, **self.optimizer_kwargs)


class Reinforce(_PolicyGradientStrategy):
    """REINFORCE with an EMA baseline on softmax categoricals (advantagenas Eq. 4, Appendix C):
    the baseline AdvantageNAS is compared with; same parameters as :class:`AdvantageNAS`."""

    def make_optimizer(self, policy, zero) -> ReinforceOptimizer:
        return ReinforceOptimizer(policy, seed=self.seed, **self.optimizer_kwargs)

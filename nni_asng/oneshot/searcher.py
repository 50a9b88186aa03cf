"""Architecture searchers: the algorithm half of a strategy, free of Lightning.

A searcher says which architectures train the weights on a D_x batch and how its distribution
learns from architectures evaluated on a D_θ batch. :class:`~.lightning.ProbabilisticOneShotModule`
runs that loop for every searcher, so a new algorithm is one searcher plus a few lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..distributions import STD_MIN_FRACTION
from .budget import BudgetGuard
from .encoding import SearchSpaceEncoding


@dataclass(frozen=True)
class Phase:
    """What one training step does in the current epoch."""

    train_weights: bool = True
    train_architecture: bool = True


DEFAULT_WARMUP = 0.5
"""The share of a search's planned weight steps that hold θ by default (see :class:`WarmupSchedule`)."""


class WarmupSchedule:
    """When θ starts to move: the weights train alone for the first steps, so that θ ranks architectures by
    what the supernet has learned rather than by its initialisation.

    ``warmup`` is the share of the planned weight steps that hold θ (0: θ moves from the first step, as in
    asng-nas Algorithm 1 and pdas Algorithm 1; 0.5: the first half, as advantagenas Appendix D fixes θ).
    ``warmup_epochs``, when given, holds θ for that many whole epochs instead. The share needs the planned
    length: a run without ``max_epochs``/``max_steps`` gets a :class:`ValueError` at its start.
    """

    def __init__(self, warmup: float = 0.0, warmup_epochs: int | None = None):
        check_warmup(warmup, warmup_epochs)
        self.warmup = float(warmup)
        self.warmup_epochs = warmup_epochs
        self.steps: int | None = 0 if (warmup_epochs is None and self.warmup == 0) else None

    def start(self, total_steps: int | None, steps_per_epoch: int | None) -> None:
        """Fix the number of held steps from the run's planned length (None: unknown)."""
        if self.warmup_epochs is not None:
            if steps_per_epoch is None:
                raise ValueError(f'warmup_epochs={self.warmup_epochs} needs the number of batches per epoch, '
                                 'which this run does not know (an iterable loader without a length)')
            self.steps = self.warmup_epochs * steps_per_epoch
        elif self.warmup > 0:
            if total_steps is None:
                raise ValueError(f'warmup={self.warmup} holds θ for that share of the planned weight steps, but this '
                                 'run has no planned length (max_epochs=-1 and no max_steps): set max_epochs or '
                                 'max_steps in the evaluator, or hold θ for whole epochs with warmup_epochs=N, or '
                                 'pass warmup=0 (the papers\' setting: θ moves from the first step)')
            self.steps = int(round(self.warmup * total_steps))

    def holds(self, step: int) -> bool:
        """Whether θ is held at weight step ``step`` (0-based, counted over the whole run)."""
        if self.steps is None:
            raise RuntimeError('WarmupSchedule.start was not called before the first step')
        return step < self.steps


def check_warmup(warmup: float, warmup_epochs: int | None) -> None:
    """Raise a ValueError naming the bad warm-up argument."""
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
        raise ValueError(f'warmup is the share of the planned weight steps that hold θ, a number in [0, 1); got '
                         f'{warmup!r} (0 = the papers\' setting)')
    if warmup_epochs is not None and (isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int)
                                      or warmup_epochs < 0):
        raise ValueError(f'warmup_epochs must be a non-negative integer or None, got {warmup_epochs!r}')


class BatchEvaluator(Protocol):
    """Evaluates architectures on the current D_θ batch (implemented by the Lightning module)."""

    def losses(self, rows: np.ndarray) -> np.ndarray:
        """Loss of each architecture row, without gradients."""

    def credits(self, row: np.ndarray) -> tuple[float, dict[str, float]]:
        """Loss of one architecture and, per label, ∂(−loss)/∂a for its chosen candidate (advantagenas Eq. 7)."""


class ArchitectureSearcher:
    """Base class; subclasses implement the sampling/update rules of one algorithm.

    ``budget`` (a :class:`~.budget.BudgetGuard`, set by the strategy) is honoured by every searcher the same way:
    the θ step tells :meth:`ranked_losses` instead of the losses, and :meth:`export` replaces an architecture
    over budget by the most likely one within it (:meth:`export_probabilities` says how likely each is).
    """

    budget: BudgetGuard | None = None

    def __init__(self, encoding: SearchSpaceEncoding):
        self.encoding = encoding

    def ranked_losses(self, rows: np.ndarray, losses: np.ndarray) -> np.ndarray:
        """The losses the optimizer is told: unchanged without a budget; with one, samples over it rank below
        every sample within it (:func:`~nni_asng.optimizers.budget.feasible_first_losses`)."""
        return losses if self.budget is None else self.budget.ranked_losses(rows, losses)

    def export_probabilities(self) -> list[np.ndarray]:
        """Per exported architecture, the flat categorical probabilities it is the argmax of."""
        raise NotImplementedError(f'{type(self).__name__} cannot export within a budget')

    def tables_state(self) -> dict:
        """The measured tables the search ranks with (part of :meth:`state_dict`): a latency table differs from
        one measurement to the next, so the ranks of a multi-process search take rank 0's and a resumed search
        its own."""
        return {} if self.budget is None else {'budget_table': self.budget.table.state()}

    def load_tables_state(self, state: dict) -> None:
        if self.budget is not None and 'budget_table' in state:
            self.budget.table.load_state(state['budget_table'])

    def phase(self, epoch: int, step: int = 0) -> Phase:
        """What weight step ``step`` (0-based over the run) of ``epoch`` does."""
        return Phase()

    def start(self, total_steps: int | None, steps_per_epoch: int | None) -> None:
        """Called when training starts, with the number of steps it will run (None: unknown)."""

    def weight_training_epochs(self, max_epochs: int) -> int:
        """How many of the ``max_epochs`` train the weights (the length of the weights' lr schedule)."""
        return max_epochs

    def weight_architectures(self, epoch: int) -> np.ndarray:
        """Rows of the architectures whose mean loss trains the weights this step (asng-nas Eq. 9)."""
        raise NotImplementedError

    def architecture_step(self, evaluator: BatchEvaluator) -> dict[str, float]:
        """Update the distribution from architectures evaluated on a D_θ batch; return values to log."""
        raise NotImplementedError

    def most_likely_rows(self) -> list[np.ndarray]:
        """The exported architecture(s) as rows, in the order :meth:`export` returns them."""
        raise NotImplementedError

    def summary(self) -> dict[str, float]:
        """Scalars describing the distribution (entropy, convergence, step size), for the logs."""
        return {}

    def probabilities(self) -> dict[str, dict[str, float]]:
        """P(value) of every categorical label (for ``export_probs``)."""
        return {}

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def export(self) -> list[dict[str, Any]]:
        """The found architecture(s) as NNI architecture dicts (within the budget, if there is one)."""
        rows = self.most_likely_rows()
        if self.budget is not None:
            rows = [self.budget.within(row, p) for row, p in zip(rows, self.export_probabilities())]
        return [self.encoding.to_architecture(row) for row in rows]


def categorical_summary(encoding: SearchSpaceEncoding, theta: np.ndarray) -> dict[str, float]:
    """Convergence (mean max_j θ_ij, asng-nas §3.2) and entropy of the categorical part."""
    if not encoding.categorical:
        return {}
    starts = encoding.category_offsets()[:-1]
    p = theta[:starts[-1] + encoding.num_categories[-1]]
    with np.errstate(divide='ignore', invalid='ignore'):
        entropy = -np.nansum(np.where(p > 0, p * np.log(p), 0.0))
    return {'convergence': float(np.maximum.reduceat(p, starts).mean()), 'entropy': float(entropy)}


def categorical_probabilities(encoding: SearchSpaceEncoding, theta: np.ndarray) -> dict[str, dict[str, float]]:
    offsets = encoding.category_offsets()
    return {var.label: {str(v): float(theta[offsets[i] + j]) for j, v in enumerate(var.values)}
            for i, var in enumerate(encoding.categorical)}


class NaturalGradientSearcher(ArchitectureSearcher):
    """ASNG / SNG / PDAS (asng-nas Algorithm 1, pdas Algorithm 1).

    λ architectures train the weights with their mean gradient on a D_x batch; the same λ
    architectures (pdas Algorithm 1, lines 3–6) are then evaluated on a D_θ batch without
    back-propagation and told to the optimizer. ``resample_for_architecture=True`` draws fresh
    ones for the θ step instead (the i.i.d. reading of asng-nas Eq. 12).
    """

    def __init__(self, encoding: SearchSpaceEncoding, make_optimizer: Callable, theta_min: str | float = 'paper',
                 sigma_min_fraction: float = STD_MIN_FRACTION, warmup: float = 0.0, warmup_epochs: int | None = None,
                 resample_for_architecture: bool = False):
        super().__init__(encoding)
        self.optimizer = make_optimizer(encoding.distribution(theta_min=theta_min,
                                                              sigma_min_fraction=sigma_min_fraction))
        self.warmup = WarmupSchedule(warmup, warmup_epochs)
        self.resample_for_architecture = bool(resample_for_architecture)
        self._pending: np.ndarray | None = None

    def start(self, total_steps: int | None, steps_per_epoch: int | None) -> None:
        self.warmup.start(total_steps, steps_per_epoch)

    def phase(self, epoch: int, step: int = 0) -> Phase:
        return Phase(train_weights=True, train_architecture=not self.warmup.holds(step))

    def weight_architectures(self, epoch: int) -> np.ndarray:
        self._pending = self.optimizer.ask()
        return self._pending

    def architecture_step(self, evaluator: BatchEvaluator) -> dict[str, float]:
        rows = self._pending if (self._pending is not None and not self.resample_for_architecture) \
            else self.optimizer.ask()
        self._pending = None
        losses = evaluator.losses(rows)
        updated = self.optimizer.tell(rows, self.ranked_losses(rows, losses))
        return {'arch_loss': float(np.mean(losses)), 'arch_updated': float(updated)}

    def most_likely_rows(self) -> list[np.ndarray]:
        return [self.optimizer.most_likely()]

    def export_probabilities(self) -> list[np.ndarray]:
        return [self.optimizer.theta[:int(sum(self.encoding.num_categories))]]

    def summary(self) -> dict[str, float]:
        out = categorical_summary(self.encoding, self.optimizer.theta)
        out[self.optimizer.step_size_name] = float(self.optimizer.step_size)
        return out

    def probabilities(self) -> dict[str, dict[str, float]]:
        return categorical_probabilities(self.encoding, self.optimizer.theta)

    def state_dict(self) -> dict:
        return {'optimizer': self.optimizer.state_dict(), 'pending': self._pending, **self.tables_state()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state['optimizer'])
        self._pending = state.get('pending')
        self.load_tables_state(state)

"""The ask/tell skeleton shared by every stochastic-natural-gradient optimizer.

One iteration (asng-nas Eq. 12–13, pdas Eq. 4): ``ask`` λ architectures from p_θ, evaluate
them, ``tell`` their losses; the losses become rank utilities u_i and the estimated natural
gradient is G = (1/λ) Σ u_i (T(c_i) − θ). Subclasses only decide how far to move along G.
"""
from __future__ import annotations

import warnings

import numpy as np

from .utility import ranking_utility


class NaturalGradientOptimizer:
    """Base class: sampling, utility, natural-gradient estimate, invariants and persistence.

    Parameters
    ----------
    distribution
        A family from :mod:`nni_asng.distributions` (categorical, Gaussian or their product).
    lam
        λ, the number of architectures per iteration (>= 2 for a ranking utility).
    seed
        Seed of the optimizer's own random generator (sampling is deterministic given it).
    """

    step_size_name = 'step_size'

    def __init__(self, distribution, lam: int = 2, seed: int | None = None):
        if isinstance(lam, bool) or not isinstance(lam, (int, np.integer)) or lam < 2:
            raise ValueError(f'lam (λ, samples per iteration) must be an integer >= 2, got {lam!r}')
        if distribution.num_parameters == 0:
            raise ValueError('the distribution has no free parameter: every variable has a single choice, '
                             'so there is nothing to search')
        distribution.check_fisher_domain(type(self).__name__)      # every step is measured in F(θ)
        self.distribution = distribution
        self.lam = int(lam)
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self.updates = 0
        self.skipped_nonfinite = 0
        self._warned_nonfinite = False

    # ------------------------------------------------------------------ ask / tell
    def ask(self, n: int | None = None) -> np.ndarray:
        """Sample ``n`` (default λ) architectures: an (n, num_variables) array."""
        return self.distribution.sample(self.lam if n is None else int(n), self.rng)

    def tell(self, samples: np.ndarray, losses: np.ndarray) -> bool:
        """Update θ from the losses of ``samples``; returns whether θ moved.

        θ stays unchanged when a loss is NaN/inf (warned once) or when all utilities are zero
        (ties, asng-nas §2.4: "we skip the update").
        """
        samples, losses = self._checked(samples, losses)
        self.iteration += 1
        if not np.all(np.isfinite(losses)):
            self.skipped_nonfinite += 1
            if not self._warned_nonfinite:
                warnings.warn(f'{type(self).__name__}: non-finite loss {losses.tolist()}; the architecture update '
                              'is skipped and θ kept (warned once; see `skipped_nonfinite`).', RuntimeWarning)
                self._warned_nonfinite = True
            return False
        utility = self.utility(losses)
        if not np.any(utility):
            return False
        gradient = utility @ self.distribution.natural_gradient(samples) / losses.size
        if not self._step(gradient, utility):
            return False
        self.updates += 1
        return True

    def utility(self, losses: np.ndarray) -> np.ndarray:
        """Rank utility of the losses (asng-nas §2.4)."""
        return ranking_utility(losses)

    def _step(self, gradient: np.ndarray, utility: np.ndarray) -> bool:
        """Move θ along the estimated natural gradient; return False to skip."""
        raise NotImplementedError

    # ------------------------------------------------------------------ results
    @property
    def theta(self) -> np.ndarray:
        return self.distribution.theta

    @property
    def step_size(self) -> float:
        raise NotImplementedError

    def most_likely(self) -> np.ndarray:
        """argmax_c p_θ(c) (the exported architecture)."""
        return self.distribution.mode()

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        """Everything needed to continue with the identical trajectory."""
        return {'distribution': self.distribution.state_dict(), 'rng': self.rng.bit_generator.state,
                'iteration': self.iteration, 'updates': self.updates,
                'skipped_nonfinite': self.skipped_nonfinite, **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        self.distribution.load_state_dict(state['distribution'])
        self.rng.bit_generator.state = state['rng']
        self.iteration = int(state['iteration'])
        self.updates = int(state['updates'])
        self.skipped_nonfinite = int(state.get('skipped_nonfinite', 0))
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _checked(self, samples: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        samples = np.asarray(samples, dtype=float)
        losses = np.asarray(losses, dtype=float).reshape(-1)
        if samples.ndim != 2 or samples.shape[1] != self.distribution.num_variables:
            raise ValueError(f'samples must have shape (n, {self.distribution.num_variables}), got {samples.shape}')
        if samples.shape[0] != losses.size:
            raise ValueError(f'{samples.shape[0]} samples but {losses.size} losses')
        if losses.size < 2:
            raise ValueError(f'tell() needs the losses of at least 2 samples, got {losses.size}')
        return samples, losses

"""Several complexity-regularised categorical distributions searched at once (Noda, Saito, Shirakawa).

multi-complexity §2–3: distribution n minimises G(θ⁽ⁿ⁾) = E[L] + ε_n E[R(M)] with
R(M) = Σ_d c_{d, h_d} (Eq. 6). λ architectures are drawn from the mixture N⁻¹ Σ_n P_θ⁽ⁿ⁾ and
every distribution learns from all of them through likelihood ratios r_k⁽ⁿ⁾ = P_θ⁽ⁿ⁾(M_k)/P_θ(M_k):

    θ_d⁽ⁿ⁾ ← θ_d⁽ⁿ⁾ − η((1/λ) Σ_i ŝ_i⁽ⁿ⁾ r_i⁽ⁿ⁾ (m_d⁽ⁱ⁾ − θ_d⁽ⁿ⁾) + ε_n (c_d − Q_d 1) ⊙ θ_d⁽ⁿ⁾)     (Eq. 10)

with ŝ⁽ⁿ⁾ the importance-weighted quantile utility (Eq. 9) and Q_d = Σ_k c_{d,k} θ_{d,k}. With
N = 1 there is no importance weighting and this is the ε-regularised SNG of Eq. 7.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..distributions import CategoricalDistribution
from .utility import quantile_utility


class MultiComplexityOptimizer:
    """ask/tell over N categorical distributions with regularisation coefficients ε_1..ε_N.

    Parameters
    ----------
    num_categories
        K_d of each categorical variable.
    complexity
        c_{d,k}, flat per category (variable-major, like θ); only differences within a variable matter.
    epsilons
        ε_n >= 0, one distribution each.
    lam
        λ, architectures per iteration.
    lr
        η (default (Σ_d K_d)⁻¹, multi-complexity §4.1).
    theta_min
        Domain restriction of each distribution (see :class:`CategoricalDistribution`).
    importance_sampling
        False updates each distribution only from its own samples (r = 1) — used to run the
        distributions one after the other ("Method 2 (Separate)", Algorithm 3).
    """

    def __init__(self, num_categories: Sequence[int], complexity: np.ndarray, epsilons: Sequence[float],
                 lam: int = 2, lr: float | None = None, theta_min: str | float = 'paper',
                 importance_sampling: bool = True, seed: int | None = None):
        eps = np.asarray(list(epsilons), dtype=float)
        if eps.size == 0:
            raise ValueError('epsilons must list at least one regularisation coefficient ε')
        if not np.all(np.isfinite(eps)) or np.any(eps < 0):
            raise ValueError(f'every ε must be a finite number >= 0, got {eps.tolist()}')
        if isinstance(lam, bool) or not isinstance(lam, (int, np.integer)) or lam < 2:
            raise ValueError(f'lam (λ) must be an integer >= 2, got {lam!r}')
        self.distributions = [CategoricalDistribution(num_categories, theta_min=theta_min) for _ in eps]
        self.complexity = np.asarray(complexity, dtype=float).reshape(-1)
        if self.complexity.size != self.distributions[0].theta.size or not np.all(np.isfinite(self.complexity)):
            raise ValueError(f'complexity must hold one finite number per category '
                             f'({self.distributions[0].theta.size}), got {self.complexity.size}')
        self.epsilons = eps
        self.lam = int(lam)
        self.lr = 1.0 / float(np.sum(num_categories)) if lr is None else float(lr)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f'lr (η) must be a finite number > 0, got {lr!r}')
        self.importance_sampling = bool(importance_sampling)
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self.skipped_nonfinite = 0

    @property
    def num_distributions(self) -> int:
        return len(self.distributions)

    # ------------------------------------------------------------------ sampling
    def ask(self, n: int | None = None, component: int | None = None) -> np.ndarray:
        """λ rows from the mixture N⁻¹ Σ_n P_θ⁽ⁿ⁾ (or from one component)."""
        n = self.lam if n is None else int(n)
        if component is not None:
            return self.distributions[component].sample(n, self.rng)
        which = self.rng.integers(0, self.num_distributions, size=n)
        rows = np.empty((n, self.distributions[0].num_variables), dtype=np.int64)
        for c in np.unique(which):
            rows[which == c] = self.distributions[c].sample(int((which == c).sum()), self.rng)
        return rows

    def ask_uniform(self, n: int | None = None) -> np.ndarray:
        """λ rows from the uniform distribution (weight-training stage, Algorithm 1 line 4)."""
        k = self.distributions[0].num_categories
        n = self.lam if n is None else int(n)
        return (self.rng.random((n, k.size)) * k).astype(np.int64)

    def importance_weights(self, rows: np.ndarray) -> np.ndarray:
        """r_k⁽ⁿ⁾ = P_θ⁽ⁿ⁾(M_k) / (N⁻¹ Σ_m P_θ⁽ᵐ⁾(M_k)), shape (N, λ); each column averages to 1 over n."""
        log_p = np.stack([d.log_likelihood(rows) for d in self.distributions])
        log_mix = np.logaddexp.reduce(log_p, axis=0) - math.log(self.num_distributions)
        return np.exp(log_p - log_mix)

    # ------------------------------------------------------------------ update
    def regulariser_gradient(self, n: int) -> np.ndarray:
        """ε_n (c_d − Q_d 1) ⊙ θ_d⁽ⁿ⁾, the natural gradient of ε_n E[R(M)] (below Eq. 6)."""
        dist = self.distributions[n]
        starts = dist.offsets[:-1]
        q = np.add.reduceat(self.complexity * dist.theta, starts)
        return self.epsilons[n] * (self.complexity - np.repeat(q, dist.num_categories)) * dist.theta

    def tell(self, rows: np.ndarray, losses: np.ndarray, components: Sequence[int] | None = None) -> bool:
        """Update every distribution (or ``components``) from the λ evaluated rows (Eq. 9–10)."""
        rows = np.asarray(rows)
        losses = np.asarray(losses, dtype=float).reshape(-1)
        if rows.ndim != 2 or rows.shape[0] != losses.size or losses.size < 2:
            raise ValueError(f'need at least 2 rows with one loss each, got rows {rows.shape} and {losses.size} losses')
        self.iteration += 1
        if not np.all(np.isfinite(losses)):
            self.skipped_nonfinite += 1
            return False
        targets = range(self.num_distributions) if components is None else components
        weights = self.importance_weights(rows) if self.importance_sampling else np.ones((self.num_distributions,
                                                                                          losses.size))
        for n in targets:
            dist = self.distributions[n]
            utility = quantile_utility(losses, weights[n])
            stat = dist.sufficient_statistics(rows) - dist.theta
            likelihood_term = (utility * weights[n]) @ stat / losses.size
            dist.step(-self.lr * (likelihood_term + self.regulariser_gradient(n)))
        return True

    # ------------------------------------------------------------------ results
    def most_likely(self) -> list[np.ndarray]:
        """argmax_M P_θ⁽ⁿ⁾(M) for every n."""
        return [d.mode() for d in self.distributions]

    def expected_complexity(self) -> np.ndarray:
        """E_θ⁽ⁿ⁾[R(M)] = Σ c ⊙ θ⁽ⁿ⁾ (Eq. 6) for every n."""
        return np.array([d.expectation(self.complexity) for d in self.distributions])

    def state_dict(self) -> dict:
        return {'thetas': [d.theta.copy() for d in self.distributions], 'rng': self.rng.bit_generator.state,
                'iteration': self.iteration, 'skipped_nonfinite': self.skipped_nonfinite}

    def load_state_dict(self, state: dict) -> None:
        for d, theta in zip(self.distributions, state['thetas']):
            d.theta = theta
        self.rng.bit_generator.state = state['rng']
        self.iteration = int(state['iteration'])
        self.skipped_nonfinite = int(state['skipped_nonfinite'])

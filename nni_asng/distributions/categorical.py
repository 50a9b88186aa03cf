"""Independent categorical distributions in expectation parameters.

asng-nas §2.4 and pdas Appendix A: for variable i with K_i categories, θ_i holds the
probabilities of all K_i categories; with T(c) the one-hot encoding of c, θ = E[T(c)]
(expectation parameters), so the natural gradient of the log-likelihood is T(c) − θ.
All variables are stored flat: variable i owns ``theta[offsets[i]:offsets[i + 1]]``.
"""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from .base import ExpectationFamily

ThetaMin = Union[str, float]


class CategoricalDistribution(ExpectationFamily):
    """Product of independent categoricals over variables with ``num_categories[i]`` categories.

    Parameters
    ----------
    num_categories
        K_i for each variable (K_i >= 1; a variable with K_i = 1 is fixed and has no parameters).
    theta
        Initial flat probabilities (default: uniform, the maximum-entropy start of asng-nas §2.4).
    theta_min
        Lower bound on every probability. ``'paper'`` is θ_min,i = 1/(n_c(K_i − 1)) of pdas
        Appendix B, with n_c the number of variables with K_i > 1. On tiny spaces that bound
        pins θ_i to uniform (n_c(K_i − 1) <= K_i), so it is capped at 1/(2K_i) to keep a domain
        to search in. A float sets one bound for all variables. 0 allows probabilities of exactly
        0, which only updates without the Fisher metric tolerate (multi-complexity's fixed-η step):
        F_i = diag(θ_i)⁻¹ + … is undefined at θ = 0, so ASNG/SNG/PDAS need θ_min > 0 (asng-nas §2.4).
    """

    def __init__(self, num_categories: Sequence[int], theta: np.ndarray | None = None,
                 theta_min: ThetaMin = 'paper'):
        k = np.asarray(num_categories, dtype=np.int64)
        if k.ndim != 1 or k.size == 0:
            raise ValueError(f'num_categories must be a non-empty 1-D sequence, got {num_categories!r}')
        if np.any(k < 1):
            raise ValueError(f'every variable needs at least one category, got {k.tolist()}')
        self.num_categories = k
        self.offsets = np.concatenate([[0], np.cumsum(k)])
        self._starts = self.offsets[:-1]
        self._variable_of = np.repeat(np.arange(k.size), k)
        self._is_last = np.zeros(int(k.sum()), dtype=bool)
        self._is_last[self.offsets[1:] - 1] = True
        self.theta_min = self._resolve_theta_min(theta_min)
        self._theta = np.repeat(1.0 / k, k) if theta is None else self._validated(theta)

    # ------------------------------------------------------------------ structure
    @property
    def num_variables(self) -> int:
        return int(self.num_categories.size)

    @property
    def num_parameters(self) -> int:
        """n_θ = Σ(K_i − 1), the dimension of the family (asng-nas §3.2: 140 for the ENAS space)."""
        return int((self.num_categories - 1).sum())

    @property
    def theta(self) -> np.ndarray:
        return self._theta

    @theta.setter
    def theta(self, value: np.ndarray) -> None:
        self._theta = self._validated(value)

    def probabilities(self, i: int) -> np.ndarray:
        """θ_i, the probabilities of the categories of variable ``i``."""
        return self._theta[self.offsets[i]:self.offsets[i + 1]]

    # ------------------------------------------------------------------ sampling and likelihood
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` architectures at once: an (n, num_variables) array of category indices."""
        u = rng.random((n, self.num_variables))
        cumulative = self._cumulative()
        below = u[:, self._variable_of] >= cumulative[None, :]
        index = np.add.reduceat(below, self._starts, axis=1)
        return np.minimum(index, self.num_categories - 1)

    def sufficient_statistics(self, x: np.ndarray) -> np.ndarray:
        """T(c): the flat one-hot encoding of each row of category indices."""
        x = self._indices(x)
        out = np.zeros((x.shape[0], self._theta.size))
        out[np.arange(x.shape[0])[:, None], self._starts + x] = 1.0
        return out

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        """ln p_θ(c) = Σ_i ln θ_{i, c_i} for each row."""
        with np.errstate(divide='ignore'):
            return np.log(self._theta[self._starts + self._indices(x)]).sum(axis=1)

    def mode(self) -> np.ndarray:
        """argmax_c p_θ(c): the most likely category of every variable."""
        padded = np.full((self.num_variables, int(self.num_categories.max())), -np.inf)
        padded[self._variable_of, np.arange(self._theta.size) - self._starts[self._variable_of]] = self._theta
        return padded.argmax(axis=1)

    def decode(self, x: np.ndarray) -> list[int]:
        """One row of sample values as Python category indices."""
        return [int(v) for v in self._indices(np.atleast_2d(x))[0]]

    def entropy(self) -> float:
        """H(p_θ) = −Σ θ ln θ (nats), summed over variables."""
        p = self._theta[self._theta > 0]
        return float(-(p * np.log(p)).sum())

    def expectation(self, values: np.ndarray) -> float:
        """E[Σ_i values[i, c_i]] = Σ values ⊙ θ for flat per-category ``values`` (multi-complexity Eq. 6)."""
        return float(np.dot(np.asarray(values, dtype=float), self._theta))

    # ------------------------------------------------------------------ Fisher geometry
    def fisher_sqrt(self, g: np.ndarray) -> np.ndarray:
        """A g with AᵀA = F(θ), in the reduced coordinates (θ_i without its last entry).

        F_i = diag(θ_i)⁻¹ + θ_iK⁻¹ 11ᵀ (pdas Eq. 6); A_i = diag(θ_i)^(-1/2) + √θ_i 1ᵀ/(θ_iK + √θ_iK)
        (pdas Eq. 14), so ‖A g‖² = gᵀ F g is the Fisher norm used by ASNG (Algorithm 1, line 6).
        ``g`` is a flat full-coordinate vector (or a batch of them); last entries are dropped.
        """
        g = np.asarray(g, dtype=float)
        theta = self._theta
        keep = ~self._is_last
        head_sum = np.add.reduceat(np.where(keep, g, 0.0), self._starts, axis=-1)
        last = theta[self.offsets[1:] - 1]
        coef = head_sum / (last + np.sqrt(last))
        out = g / np.sqrt(theta) + np.sqrt(theta) * coef[..., self._variable_of]
        return out[..., keep]

    # ------------------------------------------------------------------ domain
    def check_fisher_domain(self, user: str) -> None:
        """θ_min > 0 for every free variable, so F(θ) stays finite (asng-nas §2.4)."""
        if np.any(self.theta_min[self.num_categories > 1] <= 0):
            raise ValueError(f"{user}: theta_min=0 lets a probability reach 0, where the Fisher metric of the "
                             'categorical distribution is undefined (asng-nas §2.4), and every later update would '
                             "be lost; use theta_min='paper' (1/(n_c(K_i − 1))) or a small positive number")

    def project(self) -> None:
        """Restrict θ to [θ_min, 1 − (K_i − 1)θ_min] with rows summing to 1 (pdas Appendix B, Eq. 11–12)."""
        lo = self.theta_min[self._variable_of]
        theta = np.maximum(self._theta, lo)
        total = np.add.reduceat(theta, self._starts)
        slack = total - self.theta_min * self.num_categories
        excess = (total - 1.0) / np.where(slack > 0, slack, 1.0)
        theta = theta - excess[self._variable_of] * (theta - lo)
        # After a huge step (row sums of 1e16 and more) the line above rounds entries below θ_min, even to 0;
        # clamp again and take each row's rounding residue from its largest entry, so θ >= θ_min exactly.
        theta = np.maximum(theta, lo)
        largest = np.lexsort((-theta, self._variable_of))[self._starts]
        theta[largest] -= np.add.reduceat(theta, self._starts) - 1.0
        self._theta = theta

    # ------------------------------------------------------------------ internals
    def _cumulative(self) -> np.ndarray:
        total = np.cumsum(self._theta)
        before = np.concatenate([[0.0], total])[self._starts]
        return total - before[self._variable_of]

    def _indices(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.num_variables:
            raise ValueError(f'expected samples of shape (n, {self.num_variables}), got {x.shape}')
        idx = np.rint(x).astype(np.int64)
        if np.any(idx < 0) or np.any(idx >= self.num_categories):
            bad = int(np.argwhere((idx < 0) | (idx >= self.num_categories))[0, 1])
            raise ValueError(f'category index out of range for variable {bad} '
                             f'(allowed 0..{self.num_categories[bad] - 1}): {x[:, bad].tolist()}')
        return idx

    def _validated(self, theta: np.ndarray) -> np.ndarray:
        theta = np.array(theta, dtype=float).reshape(-1)
        if theta.size != int(self.num_categories.sum()):
            raise ValueError(f'theta must have {int(self.num_categories.sum())} entries, got {theta.size}')
        if not np.all(np.isfinite(theta)) or np.any(theta < 0):
            raise ValueError('theta must be finite and non-negative')
        sums = np.add.reduceat(theta, self._starts)
        if not np.allclose(sums, 1.0, atol=1e-6):
            raise ValueError(f'theta of every variable must sum to 1, got sums {np.round(sums, 6).tolist()}')
        return theta

    def _resolve_theta_min(self, theta_min: ThetaMin) -> np.ndarray:
        k = self.num_categories
        if isinstance(theta_min, str):
            if theta_min != 'paper':
                raise ValueError(f"theta_min must be 'paper' or a number, got {theta_min!r}")
            n_c = int((k > 1).sum())
            with np.errstate(divide='ignore'):
                paper = np.where(k > 1, 1.0 / (max(n_c, 1) * (k - 1)), 0.0)
            return np.minimum(paper, np.where(k > 1, 0.5 / k, 0.0))
        value = float(theta_min)
        if not 0.0 <= value or np.any(value * k[k > 1] >= 1.0):
            raise ValueError(f'theta_min={value} leaves no domain: it must satisfy 0 <= theta_min < 1/K_i '
                             f'for every variable (K = {sorted(set(k.tolist()))})')
        return np.where(k > 1, value, 0.0)

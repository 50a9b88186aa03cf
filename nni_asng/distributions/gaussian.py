"""Independent Gaussians for integer / ordinal variables in expectation parameters.

asng-nas §2.4: P_θ = N(μ_1, σ_1²) × … with θ = (μ_i, μ_i² + σ_i²) per variable, sufficient
statistic T(c) = (c, c²), so the natural gradient of the log-likelihood is again T(c) − θ.
Samples stay real-valued for the update; clipping to [low, high] and rounding happen only when
an architecture is evaluated (asng-nas §3.3, "ASNG-NAS (Int)"). θ is stored flat as
``[μ_1, m_1, μ_2, m_2, …]`` with m_i = μ_i² + σ_i².
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import ExpectationFamily

STD_MIN_FRACTION = 0.01


def scaled_std_min(low: Sequence[float], high: Sequence[float], quantum: Sequence[float | None] | None = None,
                   fraction: float = STD_MIN_FRACTION) -> np.ndarray:
    """σ_min of each variable, tied to its own scale (asng-nas §2.4 bounds Θ away from degenerate σ = 0).

    A variable with a quantum q (integers: q = 1, ``nni.quniform``) gets q/4, the integer-step bound
    of asng-nas §3.3 "Int": ≈95% of the samples then round to μ's value and its neighbours stay
    reachable. A continuous variable gets ``fraction`` × (high − low); the default 1/100 lets σ shrink
    50-fold from its start (high − low)/2, locating an optimum to a few percent of the range, whereas a
    fixed σ_min ignores the range (σ_min = 0.25 pins σ at σ_max on ``nni.uniform(0, 0.5)``).
    """
    fraction = float(fraction)
    if not 0.0 < fraction < 0.5:
        raise ValueError(f'sigma_min_fraction (σ_min / (high − low) of continuous variables) must lie in (0, 0.5), '
                         f'below σ_max = (high − low)/2; got {fraction!r} (default {STD_MIN_FRACTION})')
    low, high = np.asarray(low, dtype=float).reshape(-1), np.asarray(high, dtype=float).reshape(-1)
    quantum = [None] * low.size if quantum is None else list(quantum)
    return np.array([q / 4.0 if q else fraction * (h - lo) for lo, h, q in zip(low, high, quantum)])


class GaussianDistribution(ExpectationFamily):
    """Product of independent 1-D Gaussians over variables with bounds ``[low_i, high_i]``.

    Parameters
    ----------
    low, high
        Bounds of each variable; evaluation clips to them.
    integer
        Round to the nearest integer on evaluation (True for integer variables such as channels).
    std_min
        Lower bound on σ after each update (one number or one per variable, > 0), so the
        distribution never degenerates; the upper bound is (high − low)/2. Default
        :func:`scaled_std_min`: 1/4 for integer variables, 1/100 of the range for continuous ones.
    mean, std
        Initial parameters; default to the middle of the range and σ = (high − low)/2.
    """

    def __init__(self, low: Sequence[float], high: Sequence[float], integer: bool = True,
                 std_min: float | Sequence[float] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        self.low = np.asarray(low, dtype=float).reshape(-1)
        self.high = np.asarray(high, dtype=float).reshape(-1)
        if self.low.size == 0 or self.low.shape != self.high.shape:
            raise ValueError(f'low and high must be non-empty and of equal length, got {self.low} and {self.high}')
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))) or np.any(self.high <= self.low):
            raise ValueError(f'every variable needs finite bounds with low < high, got low={self.low.tolist()} '
                             f'high={self.high.tolist()}')
        self.integer = bool(integer)
        self.std_max = (self.high - self.low) / 2.0
        if std_min is None:
            std_min = scaled_std_min(self.low, self.high, [1.0 if self.integer else None] * self.low.size)
        std_min = np.broadcast_to(np.asarray(std_min, dtype=float), self.low.shape)
        if not np.all(std_min > 0) or not np.all(np.isfinite(std_min)):
            raise ValueError(f'std_min must be finite and > 0 (σ = 0 is degenerate: F = diag(1/σ², 1/(2σ⁴)) is '
                             f'undefined there), got {std_min.tolist()}')
        self.std_min = np.minimum(std_min, self.std_max)
        mu = (self.low + self.high) / 2.0 if mean is None else np.asarray(mean, dtype=float).reshape(-1)
        sigma = self.std_max if std is None else np.asarray(std, dtype=float).reshape(-1)
        self._theta = np.stack([mu, mu ** 2 + sigma ** 2], axis=1).reshape(-1)
        self.project()

    # ------------------------------------------------------------------ structure
    @property
    def num_variables(self) -> int:
        return int(self.low.size)

    @property
    def num_parameters(self) -> int:
        """n_θ = 2 per variable."""
        return 2 * self.num_variables

    @property
    def theta(self) -> np.ndarray:
        return self._theta

    @theta.setter
    def theta(self, value: np.ndarray) -> None:
        value = np.array(value, dtype=float).reshape(-1)
        if value.size != 2 * self.num_variables or not np.all(np.isfinite(value)):
            raise ValueError(f'theta must be {2 * self.num_variables} finite numbers, got {value}')
        self._theta = value

    @property
    def mean(self) -> np.ndarray:
        return self._theta[0::2]

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self._theta[1::2] - self.mean ** 2, 0.0))

    # ------------------------------------------------------------------ sampling and likelihood
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` real-valued samples: an (n, num_variables) array."""
        return self.mean + self.std * rng.standard_normal((n, self.num_variables))

    def sufficient_statistics(self, x: np.ndarray) -> np.ndarray:
        """T(c) = (c, c²) per variable, interleaved like θ."""
        x = self._values(x)
        return np.stack([x, x ** 2], axis=2).reshape(x.shape[0], -1)

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        x = self._values(x)
        var = self.std ** 2
        return (-0.5 * np.log(2 * np.pi * var) - (x - self.mean) ** 2 / (2 * var)).sum(axis=1)

    def mode(self) -> np.ndarray:
        """The most likely values, μ (real-valued; see :meth:`decode`)."""
        return self.mean.copy()

    def decode(self, x: np.ndarray) -> list:
        """Clip one row to [low, high] and round integer variables, for evaluation only."""
        row = np.clip(np.asarray(x, dtype=float).reshape(-1), self.low, self.high)
        return [int(v) for v in np.rint(row)] if self.integer else [float(v) for v in row]

    def entropy(self) -> float:
        """Differential entropy Σ ½ ln(2πe σ²) (nats)."""
        return float(0.5 * np.log(2 * np.pi * np.e * self.std ** 2).sum())

    # ------------------------------------------------------------------ Fisher geometry
    def fisher_sqrt(self, g: np.ndarray) -> np.ndarray:
        """A g with AᵀA = F(θ), the 2x2 Fisher blocks of asng-nas §2.4.

        F_i = [σ², 2μσ²; 2μσ², 4μ²σ² + 2σ⁴]⁻¹. In (μ, σ²) coordinates the Fisher metric is
        diag(1/σ², 1/(2σ⁴)) and dσ² = dm − 2μ dμ, so A g = (g_μ/σ, (g_m − 2μ g_μ)/(√2 σ²)).
        """
        g = np.asarray(g, dtype=float)
        g_mu, g_m = g[..., 0::2], g[..., 1::2]
        var = self.std ** 2
        out = np.stack([g_mu / np.sqrt(var), (g_m - 2 * self.mean * g_mu) / (np.sqrt(2.0) * var)], axis=-1)
        return out.reshape(*g.shape[:-1], -1)

    # ------------------------------------------------------------------ domain
    def project(self) -> None:
        """μ ∈ [low, high], σ ∈ [std_min, (high − low)/2] (asng-nas §2.4: avoid degenerate distributions)."""
        mu = np.clip(self.mean, self.low, self.high)
        sigma = np.clip(self.std, self.std_min, self.std_max)
        self._theta = np.stack([mu, mu ** 2 + sigma ** 2], axis=1).reshape(-1)

    def _values(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.num_variables:
            raise ValueError(f'expected samples of shape (n, {self.num_variables}), got {x.shape}')
        return x

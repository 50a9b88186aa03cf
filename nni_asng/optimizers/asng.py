"""Adaptive stochastic natural gradient (asng-nas Algorithm 1, §2.3–2.4)."""
from __future__ import annotations

import math

import numpy as np

from .base import NaturalGradientOptimizer


class ASNG(NaturalGradientOptimizer):
    """ASNG: a trust-region step δ_θ = δ⁰/Δ in the Fisher metric, with Δ adapted from the
    accumulated normalised natural gradient s (asng-nas Algorithm 1 and the implementation
    remarks of §2.4: s accumulates F^½G/‖G‖_F and γ tracks its expected squared norm).

    Parameters
    ----------
    alpha
        Threshold α of the signal-to-noise test ‖s‖²/γ ≈ α (paper default 1.5).
    delta_init
        δ⁰ (paper default 1).
    delta_max
        Δ_max, the largest Δ, i.e. the smallest step δ⁰/Δ_max (default ∞ as in the paper).
    """

    step_size_name = 'delta'

    def __init__(self, distribution, lam: int = 2, alpha: float = 1.5, delta_init: float = 1.0,
                 delta_max: float = math.inf, seed: int | None = None):
        super().__init__(distribution, lam, seed)
        if not alpha > 0:
            raise ValueError(f'alpha must be > 0, got {alpha!r}')
        if not (delta_init > 0 and math.isfinite(delta_init)):
            raise ValueError(f'delta_init (δ⁰) must be a finite number > 0, got {delta_init!r}')
        if not delta_max >= 1:
            raise ValueError(f'delta_max (Δ_max) must be >= 1 (Δ starts at 1), got {delta_max!r}')
        self.alpha = float(alpha)
        self.delta_init = float(delta_init)
        self.delta_max = float(delta_max)
        self.Delta = 1.0
        self.gamma = 0.0
        self.s = np.zeros(distribution.num_parameters)
        self.last_epsilon = 0.0

    @property
    def delta(self) -> float:
        """δ_θ = δ⁰/Δ, the current trust-region radius."""
        return self.delta_init / self.Delta

    @property
    def step_size(self) -> float:
        return self.delta

    def _step(self, gradient: np.ndarray, utility: np.ndarray) -> bool:
        scaled = self.distribution.fisher_sqrt(gradient)
        norm = float(np.linalg.norm(scaled))
        if not (norm > 0 and math.isfinite(norm)):
            return False
        delta = self.delta
        # β = δ/√n_θ (Algorithm 1, line 2), capped at 1 so that the decay 1 − β of the
        # accumulation stays >= 0; the cap only binds when δ > √n_θ (tiny spaces, huge δ⁰).
        beta = min(1.0, delta / math.sqrt(self.distribution.num_parameters))
        self.last_epsilon = delta / norm                                       # Eq. 14
        self.distribution.step(self.last_epsilon * gradient)                   # Eq. 13 + projection
        self.s = (1 - beta) * self.s + math.sqrt(beta * (2 - beta)) * scaled / norm   # line 6
        self.gamma = (1 - beta) ** 2 * self.gamma + beta * (2 - beta)                 # line 7
        self.Delta = min(self.delta_max, self.Delta * math.exp(beta * (self.gamma - self.s @ self.s / self.alpha)))
        return True

    def _extra_state(self) -> dict:
        return {'Delta': self.Delta, 'gamma': self.gamma, 's': self.s.copy(), 'last_epsilon': self.last_epsilon}

    def _load_extra_state(self, state: dict) -> None:
        self.Delta = float(state['Delta'])
        self.gamma = float(state['gamma'])
        self.s = np.array(state['s'], dtype=float)
        self.last_epsilon = float(state['last_epsilon'])

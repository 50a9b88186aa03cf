"""PDAS: stochastic natural gradient with the learning-rate adaptation of pdas Appendix C."""
from __future__ import annotations

import math

import numpy as np

from .base import NaturalGradientOptimizer


class PDAS(NaturalGradientOptimizer):
    """θ ← θ + η G (pdas Eq. 4), with η adapted to keep the signal-to-noise ratio of successive
    updates (Nishida et al. 2018; pdas Appendix C, Eq. 13):

        s ← (1 − η)s + sqrt(η(2 − η)) F^½ G / sqrt(Tr(F Cov[G]))
        γ ← (1 − η)²γ + η(2 − η)
        η ← clip(η exp(η(‖s‖²/α − γ)), η_min, η_max)

    Tr(F Cov[G]) is approximated as in the paper assuming utilities and samples uncorrelated:
    n_θ Σu_i²/λ² (= n_θ/2 for λ = 2, u = (1, −1)). η_max = n_θ^(-1/2) and η starts there.
    """

    step_size_name = 'eta'

    def __init__(self, distribution, lam: int = 2, alpha: float = 1.5, eta_min: float = 0.0,
                 eta_max: float | None = None, eta_init: float | None = None, seed: int | None = None):
        super().__init__(distribution, lam, seed)
        default_max = 1.0 / math.sqrt(distribution.num_parameters)
        self.alpha = float(alpha)
        self.eta_min = float(eta_min)
        self.eta_max = default_max if eta_max is None else float(eta_max)
        self.eta = self.eta_max if eta_init is None else float(eta_init)
        if not (alpha > 0 and 0 <= self.eta_min <= self.eta <= self.eta_max <= 1):
            raise ValueError(f'need alpha > 0 and 0 <= eta_min <= eta_init <= eta_max <= 1, got alpha={alpha}, '
                             f'eta_min={self.eta_min}, eta_init={self.eta}, eta_max={self.eta_max}')
        self.gamma = 0.0
        self.s = np.zeros(distribution.num_parameters)

    @property
    def step_size(self) -> float:
        return self.eta

    def _step(self, gradient: np.ndarray, utility: np.ndarray) -> bool:
        eta = self.eta
        scaled = self.distribution.fisher_sqrt(gradient)
        noise = math.sqrt(self.distribution.num_parameters * float(utility @ utility) / utility.size ** 2)
        self.distribution.step(eta * gradient)
        self.s = (1 - eta) * self.s + math.sqrt(eta * (2 - eta)) * scaled / noise
        self.gamma = (1 - eta) ** 2 * self.gamma + eta * (2 - eta)
        growth = eta * (self.s @ self.s / self.alpha - self.gamma)
        # η e^growth >= η_max ⇔ growth >= ln(η_max/η): decided in log space, as F^½G/noise is huge when a
        # category of probability ≈ θ_min wins and e^growth would overflow.
        if eta > 0 and growth >= math.log(self.eta_max / eta):
            self.eta = self.eta_max
        else:
            self.eta = max(self.eta_min, eta * math.exp(growth))
        return True

    def _extra_state(self) -> dict:
        return {'eta': self.eta, 'gamma': self.gamma, 's': self.s.copy()}

    def _load_extra_state(self, state: dict) -> None:
        self.eta = float(state['eta'])
        self.gamma = float(state['gamma'])
        self.s = np.array(state['s'], dtype=float)

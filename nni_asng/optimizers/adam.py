"""Adam on the normalised natural gradient: the step-size baseline of asng-nas §3.1 / Figure 1."""
from __future__ import annotations

import math

import numpy as np

from .base import NaturalGradientOptimizer


class NaturalGradientAdam(NaturalGradientOptimizer):
    """Adam (Kingma & Ba 2015) fed with G/‖G‖_F instead of a raw gradient, as asng-nas §3.1 does
    ("we replace the gradient in Adam with the normalized natural gradient")."""

    step_size_name = 'lr'

    def __init__(self, distribution, lam: int = 2, lr: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, seed: int | None = None):
        super().__init__(distribution, lam, seed)
        if not (lr > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f'need lr > 0 and betas in [0, 1), got lr={lr}, betas={betas}')
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.m = np.zeros_like(distribution.theta)
        self.v = np.zeros_like(distribution.theta)
        self.t = 0

    @property
    def step_size(self) -> float:
        return self.lr

    def _step(self, gradient: np.ndarray, utility: np.ndarray) -> bool:
        norm = self.distribution.fisher_norm(gradient)
        if not (norm > 0 and math.isfinite(norm)):
            return False
        g = gradient / norm
        b1, b2 = self.betas
        self.t += 1
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g ** 2
        m_hat = self.m / (1 - b1 ** self.t)
        v_hat = self.v / (1 - b2 ** self.t)
        self.distribution.step(self.lr * m_hat / (np.sqrt(v_hat) + self.eps))
        return True

    def _extra_state(self) -> dict:
        return {'m': self.m.copy(), 'v': self.v.copy(), 't': self.t}

    def _load_extra_state(self, state: dict) -> None:
        self.m = np.array(state['m'], dtype=float)
        self.v = np.array(state['v'], dtype=float)
        self.t = int(state['t'])

"""What every family in expectation parameters offers the optimizers (asng-nas §2.1, §2.4)."""
from __future__ import annotations

import numpy as np


class ExpectationFamily:
    """Base of the families: θ = E[T(c)], natural gradient T(c) − θ, Fisher factor A (AᵀA = F(θ)).

    Subclasses provide ``theta``, ``sample``, ``sufficient_statistics``, ``log_likelihood``, ``mode``,
    ``decode``, ``entropy``, ``fisher_sqrt`` and ``project``; the shared pieces are below.
    """

    _theta: np.ndarray

    def natural_gradient(self, x: np.ndarray) -> np.ndarray:
        """∇̃ ln p_θ(c) = T(c) − θ (asng-nas §2.1), one row per sample."""
        return self.sufficient_statistics(x) - self.theta

    def fisher_sqrt(self, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check_fisher_domain(self, user: str) -> None:
        """Raise ValueError unless ``project`` keeps θ off the boundary of Θ, where F(θ) is undefined
        (asng-nas §2.4: "Θ should be restricted to avoid degenerated distribution"). ``user`` names the
        optimizer for the message. Families whose bounds are always interior need nothing here."""

    def fisher_norm(self, g: np.ndarray) -> float:
        """‖g‖_F(θ) = sqrt(gᵀ F(θ) g) = ‖A g‖ (the normaliser of asng-nas Eq. 11)."""
        return float(np.linalg.norm(self.fisher_sqrt(g)))

    def step(self, direction: np.ndarray) -> None:
        """θ ← Π(θ + direction): move along a natural-gradient direction, then ``project`` into Θ."""
        self._theta = self._theta + np.asarray(direction, dtype=float).reshape(-1)
        self.project()

    def project(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {'theta': self.theta.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.theta = state['theta']

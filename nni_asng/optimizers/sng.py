"""Stochastic natural gradient with a constant trust region (the SNG ablation of asng-nas §3.1)."""
from __future__ import annotations

import math

import numpy as np

from .base import NaturalGradientOptimizer


class SNG(NaturalGradientOptimizer):
    """θ ← θ + δ G/‖G‖_F with a fixed δ (asng-nas Eq. 13–14 without the adaptation of §2.3)."""

    step_size_name = 'delta'

    def __init__(self, distribution, lam: int = 2, delta: float = 1.0, seed: int | None = None):
        super().__init__(distribution, lam, seed)
        if not (delta > 0 and math.isfinite(delta)):
            raise ValueError(f'delta must be a finite number > 0, got {delta!r}')
        self.delta = float(delta)

    @property
    def step_size(self) -> float:
        return self.delta

    def _step(self, gradient: np.ndarray, utility: np.ndarray) -> bool:
        norm = self.distribution.fisher_norm(gradient)
        if not (norm > 0 and math.isfinite(norm)):
            return False
        self.distribution.step(self.delta / norm * gradient)
        return True

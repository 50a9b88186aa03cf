"""Product of independent families over column blocks of one sample matrix.

asng-nas §2.4: "If C is a product of categorical and ordinal variable spaces, we can use their
product distribution." The Fisher matrix is block-diagonal, so natural gradients, Fisher
factors and projections act part by part. A sample is one float row whose first columns belong
to the first part, the next ones to the second, and so on.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import ExpectationFamily


class ProductDistribution(ExpectationFamily):
    """Joint distribution of independent parts (e.g. a categorical and a Gaussian family)."""

    def __init__(self, parts: Sequence):
        self.parts = [p for p in parts if p is not None]
        if not self.parts:
            raise ValueError('a product distribution needs at least one part')
        self._col = np.cumsum([0] + [p.num_variables for p in self.parts])
        self._par = np.cumsum([0] + [p.theta.size for p in self.parts])

    @property
    def num_variables(self) -> int:
        return int(self._col[-1])

    @property
    def num_parameters(self) -> int:
        return int(sum(p.num_parameters for p in self.parts))

    @property
    def theta(self) -> np.ndarray:
        return np.concatenate([p.theta for p in self.parts])

    @theta.setter
    def theta(self, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=float).reshape(-1)
        if value.size != self._par[-1]:
            raise ValueError(f'theta must have {self._par[-1]} entries, got {value.size}')
        for i, p in enumerate(self.parts):
            p.theta = value[self._par[i]:self._par[i + 1]]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([p.sample(n, rng).astype(float) for p in self.parts], axis=1)

    def sufficient_statistics(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([p.sufficient_statistics(xi) for p, xi in self._split(x)], axis=1)

    def log_likelihood(self, x: np.ndarray) -> np.ndarray:
        return sum(p.log_likelihood(xi) for p, xi in self._split(x))

    def mode(self) -> np.ndarray:
        return np.concatenate([np.asarray(p.mode(), dtype=float) for p in self.parts])

    def decode(self, x: np.ndarray) -> list:
        row = np.asarray(x, dtype=float).reshape(1, -1)
        return [v for p, xi in self._split(row) for v in p.decode(xi)]

    def entropy(self) -> float:
        return float(sum(p.entropy() for p in self.parts))

    def fisher_sqrt(self, g: np.ndarray) -> np.ndarray:
        g = np.asarray(g, dtype=float)
        return np.concatenate([p.fisher_sqrt(g[..., self._par[i]:self._par[i + 1]])
                               for i, p in enumerate(self.parts)], axis=-1)

    def check_fisher_domain(self, user: str) -> None:
        for p in self.parts:
            p.check_fisher_domain(user)

    def step(self, direction: np.ndarray) -> None:
        direction = np.asarray(direction, dtype=float).reshape(-1)
        for i, p in enumerate(self.parts):
            p.step(direction[self._par[i]:self._par[i + 1]])

    def project(self) -> None:
        for p in self.parts:
            p.project()

    def _split(self, x: np.ndarray):
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.num_variables:
            raise ValueError(f'expected samples of shape (n, {self.num_variables}), got {x.shape}')
        return [(p, x[:, self._col[i]:self._col[i + 1]]) for i, p in enumerate(self.parts)]

"""Rank-based utility transformations of losses (smaller loss = better).

Using ranks instead of loss values makes every update invariant to a strictly increasing
transformation of the loss (asng-nas §2.4, pdas §2, IGO of Ollivier et al. 2017).
"""
from __future__ import annotations

import math

import numpy as np


def ranking_utility(losses: np.ndarray, ratio: float = 0.25) -> np.ndarray:
    """+1 for the best ⌈λ·ratio⌉ samples, −1 for the worst ⌈λ·ratio⌉, 0 otherwise (asng-nas §2.4).

    Tied losses share the mean utility of the ranks they occupy, so for λ = 2 a tie gives
    (0, 0) and the caller skips the update.
    """
    losses = np.asarray(losses, dtype=float).reshape(-1)
    lam = losses.size
    if lam < 2:
        raise ValueError(f'a ranking utility needs at least 2 losses, got {lam}')
    mu = math.ceil(lam * ratio)
    slot = np.zeros(lam)
    slot[:mu] = 1.0
    slot[lam - mu:] = -1.0
    order = np.argsort(losses, kind='stable')
    ranked = losses[order]
    utility = np.empty(lam)
    start = 0
    for end in range(1, lam + 1):
        if end == lam or ranked[end] != ranked[start]:
            utility[order[start:end]] = slot[start:end].mean()
            start = end
    return utility


def quantile_utility(losses: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """w(q̄(M_i)) with w(q) = −2 (q ≤ 0.25), 0 (0.25 < q ≤ 0.75), 2 (q > 0.75).

    q̄(M_i) = (1/λ) Σ_k r_k 1{L_k ≤ L_i} is the (importance-weighted) probability of sampling
    a loss no worse than L_i (multi-complexity Eq. 9; r_k = 1 without importance sampling).
    The sign convention is the paper's: the update subtracts utility × natural gradient (Eq. 5).

    Tied losses share the mean of the utilities they would get if ranked one after another (as in
    :func:`ranking_utility` and IGO's treatment of ties, Ollivier et al. 2017), i.e. what random
    tie-breaking gives in expectation. Taken literally, Eq. 9 gives every member of a tie the utility of
    its worst member: with λ = 2 an architecture drawn twice got 2 + 2 instead of the 0 + 2 of any other
    pair, an extra push away from the architectures the distribution already favours.
    """
    losses = np.asarray(losses, dtype=float).reshape(-1)
    lam = losses.size
    r = np.ones(lam) if weights is None else np.asarray(weights, dtype=float).reshape(-1)
    if r.shape != losses.shape:
        raise ValueError(f'{r.size} importance weights for {lam} losses')
    order = np.argsort(losses, kind='stable')
    ranked = losses[order]
    q = np.cumsum(r[order]) / lam                   # q̄ of each sample were the ties broken in this order
    w = np.where(q <= 0.25, -2.0, np.where(q <= 0.75, 0.0, 2.0))
    utility = np.empty(lam)
    start = 0
    for end in range(1, lam + 1):
        if end == lam or ranked[end] != ranked[start]:
            utility[order[start:end]] = w[start:end].mean()
            start = end
    return utility

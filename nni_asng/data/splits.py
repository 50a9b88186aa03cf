"""Deterministic index selection: stratified subsets and the D_x / D_θ search split.

asng-nas §3.2 and pdas §2: "we split the training dataset into halves" D = {D_x, D_θ}
(as DARTS does): weights x are trained on D_x, the architecture distribution θ on D_θ.
We split *stratified* (each class is halved), at random given a seed, so both halves
have the class balance of the whole even on small ``limit`` subsets.
"""
from __future__ import annotations

import numbers
from typing import Optional, Sequence, Tuple, Union

import numpy as np

__all__ = ['Limit', 'resolve_limit', 'stratified_subset', 'split_halves', 'subset_then_halves']

Seed = Union[int, Sequence[int]]
#: ``None`` (all), an ``int`` count or a ``float`` fraction in (0, 1].
Limit = Union[None, int, float]


def resolve_limit(limit: Limit, n: int) -> int:
    """Number of examples that ``limit`` keeps out of ``n``."""
    if limit is None:
        return n
    if isinstance(limit, bool) or not isinstance(limit, numbers.Real):
        raise TypeError(f'limit must be None, an int count or a float fraction, got {limit!r}')
    if isinstance(limit, numbers.Integral):
        if limit < 1:
            raise ValueError(f'limit must be a positive count, got {limit}')
        return min(int(limit), n)
    if not 0.0 < limit <= 1.0:
        raise ValueError(f'a fractional limit must lie in (0, 1], got {limit}')
    return max(1, int(round(limit * n)))


def _class_rank_keys(labels: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """A random permutation and, per permuted example, (rank within its class + 0.5) / class size.

    Taking examples by increasing key draws from every class in proportion to its size.
    """
    perm = rng.permutation(len(labels))
    lab = labels[perm]
    _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind='stable')  # grouped by class, permuted order inside
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(lab), dtype=np.int64)
    rank[order] = np.arange(len(lab)) - np.repeat(starts, counts)
    return perm, (rank + 0.5) / counts[inverse]


def stratified_subset(labels: np.ndarray, limit: Limit, seed: Seed = 0) -> np.ndarray:
    """Sorted indices of ``resolve_limit(limit)`` examples, each class within ±1 of its share."""
    labels = np.asarray(labels)
    k = resolve_limit(limit, len(labels))
    if k == len(labels):
        return np.arange(len(labels))
    perm, keys = _class_rank_keys(labels, np.random.default_rng(seed))
    return np.sort(perm[np.argsort(keys, kind='stable')[:k]])


def split_halves(labels: np.ndarray, seed: Seed = 0, stratified: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into sorted, disjoint halves (D_x, D_θ) of sizes ⌈n/2⌉ and ⌊n/2⌋.

    ``stratified=True`` halves every class (±1); ``False`` is a plain random split.
    Deterministic given ``seed``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    if stratified:
        perm, keys = _class_rank_keys(labels, rng)
        perm = perm[np.argsort(keys, kind='stable')]
    else:
        perm = rng.permutation(n)
    first = (n + 1) // 2
    return np.sort(perm[:first]), np.sort(perm[first:])


def subset_then_halves(labels: np.ndarray, limit: Limit = None, seed: int = 0, stratified: bool = True,
                       half: Optional[str] = None, subset_seed: Optional[int] = None,
                       holdout: Limit = None) -> np.ndarray:
    """Indices of a ``limit`` subset of ``labels``, then (``half`` = 'x' or 'theta') one of its halves.

    The subset is drawn with ``subset_seed`` (default ``seed``), the halves with ``seed``: searches with
    different seeds then split the same images differently (what a tabular benchmark needs, whose table was
    trained on that subset). ``half='holdout'`` gives a stratified ``holdout`` subset of the examples *outside*
    the ``limit`` subset (a validation set disjoint from everything a search sees).
    """
    subset_seed = seed if subset_seed is None else subset_seed
    idx = stratified_subset(labels, limit, seed=(subset_seed, 0))
    if half is None:
        return idx
    if half == 'holdout':
        rest = np.setdiff1d(np.arange(len(labels)), idx, assume_unique=True)
        if len(rest) == 0:
            raise ValueError('no examples outside the limit subset are left for a holdout set; lower the limit')
        return rest[stratified_subset(labels[rest], holdout, seed=(subset_seed, 2))]
    if half not in ('x', 'theta'):
        raise ValueError(f"half must be None, 'x', 'theta' or 'holdout', got {half!r}")
    d_x, d_theta = split_halves(labels[idx], seed=(seed, 1), stratified=stratified)
    return idx[d_x if half == 'x' else d_theta]

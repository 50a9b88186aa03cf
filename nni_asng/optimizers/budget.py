"""Budgets on an architecture's cost (parameters, FLOPs, latency): the ranking rule, the policy-gradient penalty
and the most likely architecture within budget. numpy only.

The ranking rule is Deb's feasibility rule (Deb 2000, "An efficient constraint handling method for genetic
algorithms", §3): a sample within budget beats every sample over it; two samples within budget are compared by
their loss, two over it by how far over they are. The natural-gradient updates see losses only through their
ranks (asng-nas §2.4, pdas Eq. 4, multi-complexity Eq. 9), so losses rewritten to realise this order make every
rank-based utility honour the budget without a penalty weight to tune.
"""
from __future__ import annotations

import heapq
import math
from typing import Callable, Sequence

import numpy as np

__all__ = ['feasible_first_losses', 'BudgetPenalty', 'most_likely_within', 'cheapest_row']


def _checked_limit(limit: float) -> float:
    limit = float(limit)
    if not (limit > 0 and math.isfinite(limit)):
        raise ValueError(f'a budget must be a finite number > 0, got {limit!r}')
    return limit


def feasible_first_losses(losses: np.ndarray, costs: np.ndarray, limit: float) -> np.ndarray:
    """Losses whose order is Deb's rule: every sample with cost <= ``limit`` ranks above every sample over it,
    the feasible ones by their loss, the infeasible ones by their relative excess (cost − limit)/limit.

    Feasible losses are returned unchanged (a non-finite one stays non-finite, so the caller still skips the
    update); an infeasible sample gets worst + s·(1 + excess) with worst the largest finite feasible loss (0 when
    there is none) and s = max(1, |worst|), whatever its own loss (NaN included).
    """
    losses = np.asarray(losses, dtype=float).reshape(-1)
    costs = np.asarray(costs, dtype=float).reshape(-1)
    if losses.shape != costs.shape:
        raise ValueError(f'{losses.size} losses but {costs.size} costs')
    limit = _checked_limit(limit)
    if np.any(np.isnan(costs)):
        raise ValueError(f'costs must be numbers, got {costs.tolist()}')
    feasible = costs <= limit
    out = losses.copy()
    if feasible.all():
        return out
    finite = losses[feasible & np.isfinite(losses)]
    worst = float(finite.max()) if finite.size else 0.0
    scale = max(1.0, abs(worst))
    out[~feasible] = worst + scale * (1.0 + (costs[~feasible] - limit) / limit)
    return out


class BudgetPenalty:
    """The budget for a policy-gradient search, which tells one sample at a time (advantagenas Algorithm 1):
    an infeasible sample's loss becomes ceiling + s·(1 + excess), with ceiling the largest finite loss seen so
    far (feasible or this sample's own) and s = max(1, |ceiling|), so its reward −loss is below that of every
    sample told so far and of every feasible one that does not exceed the ceiling. Feasible losses pass
    unchanged."""

    def __init__(self, limit: float):
        self.limit = _checked_limit(limit)
        self.ceiling: float | None = None

    def __call__(self, loss: float, cost: float) -> float:
        loss = float(loss)
        if math.isfinite(loss):
            self.ceiling = loss if self.ceiling is None else max(self.ceiling, loss)
        if cost <= self.limit:
            return loss
        ceiling = 0.0 if self.ceiling is None else self.ceiling
        return ceiling + max(1.0, abs(ceiling)) * (1.0 + (float(cost) - self.limit) / self.limit)

    def state_dict(self) -> dict:
        return {'ceiling': self.ceiling}

    def load_state_dict(self, state: dict) -> None:
        self.ceiling = state.get('ceiling')


def _blocks(probabilities: np.ndarray, num_categories: Sequence[int]) -> list[np.ndarray]:
    p = np.asarray(probabilities, dtype=float).reshape(-1)
    k = np.asarray(num_categories, dtype=np.int64)
    if p.size != int(k.sum()):
        raise ValueError(f'{p.size} probabilities for {int(k.sum())} categories')
    offsets = np.concatenate([[0], np.cumsum(k)])
    return [p[offsets[i]:offsets[i + 1]] for i in range(k.size)]


def most_likely_within(probabilities: np.ndarray, num_categories: Sequence[int], cost: Callable[[np.ndarray], float],
                       limit: float, max_candidates: int = 20000) -> np.ndarray | None:
    """argmax_M Π_d θ_{d,M_d} subject to cost(M) <= ``limit``: the architectures of a product of categoricals
    in order of decreasing probability (best-first over the per-variable orders: every index tuple has one
    parent, the tuple with its last non-zero position decreased, so no tuple is visited twice), the first whose
    ``cost`` fits. None when none of the ``max_candidates`` most likely fits. ``cost`` may be any function of a
    row (an additive table, or a measurement)."""
    limit = _checked_limit(limit)
    blocks = _blocks(probabilities, num_categories)
    orders = [np.argsort(-b, kind='stable') for b in blocks]
    logs = [np.log(np.maximum(b[o], 1e-300)) for b, o in zip(blocks, orders)]   # a probability 0 stays last
    start = (0,) * len(blocks)
    heap = [(-sum(float(lg[0]) for lg in logs), start, 0)]
    for _ in range(int(max_candidates)):
        if not heap:
            return None
        negative, index, last = heapq.heappop(heap)
        row = np.array([o[i] for o, i in zip(orders, index)], dtype=np.int64)
        if cost(row) <= limit:
            return row
        for d in range(last, len(blocks)):
            if index[d] + 1 < len(logs[d]):
                child = index[:d] + (index[d] + 1,) + index[d + 1:]
                score = negative + float(logs[d][index[d]] - logs[d][index[d] + 1])
                heapq.heappush(heap, (score, child, d))
    return None


def cheapest_row(per_category: np.ndarray, num_categories: Sequence[int]) -> np.ndarray:
    """argmin_M Σ_d c_{d,M_d}: the architecture an additive cost table predicts smallest."""
    return np.array([int(np.argmin(b)) for b in _blocks(per_category, num_categories)], dtype=np.int64)

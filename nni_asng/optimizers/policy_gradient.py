"""Policy-gradient architecture optimizers on softmax categoricals: AdvantageNAS and REINFORCE.

advantagenas §4.1: every variable i follows a categorical with probabilities μ_i(θ_i) =
softmax(θ_i) (Eq. 2), θ initialised to ones. With reward r = −loss, the gradient of ln p_θ(a)
w.r.t. θ_i is a_i − μ_i(θ_i). REINFORCE (Eq. 4, Appendix C) ascends (r − b)(a − μ(θ)) with an
EMA baseline b; AdvantageNAS (Eq. 6–7, Algorithm 1) ascends A_i (a_i − μ_i(θ_i)) per variable
with a per-variable advantage A_i. Either direction is applied by Adam (β = (0.5, 0.999), weight decay,
gradient clipping, cosine-annealed learning rate; advantagenas Appendix D), in numpy (:mod:`.policy_adam`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .policy_adam import PolicyAdam, clip_by_norm


class SoftmaxCategoricalPolicy:
    """Independent softmax categoricals over variables with K_i categories (advantagenas Eq. 2).

    ``excluded`` (flat boolean mask) removes categories: their logit is −∞, so they are never
    sampled (e.g. the zero operation when the user excludes it, advantagenas §5.2).
    """

    def __init__(self, num_categories: Sequence[int], excluded: np.ndarray | None = None, init: float = 1.0):
        k = np.asarray(num_categories, dtype=np.int64)
        if k.ndim != 1 or k.size == 0 or np.any(k < 1):
            raise ValueError(f'num_categories must be a non-empty list of positive ints, got {num_categories!r}')
        self.num_categories = k
        self.offsets = np.concatenate([[0], np.cumsum(k)])
        self._variable_of = np.repeat(np.arange(k.size), k)
        self.excluded = np.zeros(int(k.sum()), dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool)
        if self.excluded.shape != (int(k.sum()),):
            raise ValueError(f'excluded must be a flat mask of {int(k.sum())} entries')
        left = np.add.reduceat(~self.excluded, self.offsets[:-1])
        if np.any(left == 0):
            raise ValueError(f'excluding categories leaves variable(s) {np.flatnonzero(left == 0).tolist()} empty')
        self.logits = np.full(int(k.sum()), float(init), dtype=np.float64)     # θ, flat

    @property
    def num_variables(self) -> int:
        return int(self.num_categories.size)

    def probabilities(self) -> np.ndarray:
        """μ(θ): flat softmax probabilities per variable."""
        logits = self.logits.copy()
        logits[self.excluded] = -np.inf
        shifted = logits - np.maximum.reduceat(logits, self.offsets[:-1])[self._variable_of]
        e = np.exp(shifted)
        return e / np.add.reduceat(e, self.offsets[:-1])[self._variable_of]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows of category indices drawn from μ(θ)."""
        p = self.probabilities()
        cumulative = np.cumsum(p)
        cumulative -= np.concatenate([[0.0], cumulative])[self.offsets[:-1]][self._variable_of]
        u = rng.random((n, self.num_variables))
        index = np.add.reduceat(u[:, self._variable_of] >= cumulative, self.offsets[:-1], axis=1)
        index = np.minimum(index, self.num_categories - 1)
        return self._never_excluded(index, p)

    def score(self, row: np.ndarray) -> np.ndarray:
        """∇_θ ln p_θ(a) = a − μ(θ) (advantagenas §4.2), flat."""
        one_hot = np.zeros(self.logits.size)
        one_hot[self.offsets[:-1] + np.asarray(row, dtype=np.int64).reshape(-1)] = 1.0
        return one_hot - self.probabilities()

    def mode(self) -> np.ndarray:
        """argmax_j μ_i^j(θ_i) for every variable (the ``argmax`` export, advantagenas §5.2)."""
        p = self.probabilities()
        return np.array([int(np.argmax(p[self.offsets[i]:self.offsets[i + 1]])) for i in range(self.num_variables)])

    def entropy(self) -> float:
        p = self.probabilities()
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    def _never_excluded(self, index: np.ndarray, p: np.ndarray) -> np.ndarray:
        # Round-off at a boundary could land on an excluded category; move it to the most likely one.
        flat = self.offsets[:-1] + index
        if np.any(self.excluded[flat]):
            fallback = self.mode()
            index = np.where(self.excluded[flat], fallback, index)
        return index


class PolicyGradientOptimizer:
    """ask/tell skeleton: sample one architecture, turn its evaluation into an ascent direction,
    apply it with Adam (plus optional cosine annealing and gradient clipping; :mod:`.policy_adam`).

    Parameters
    ----------
    policy
        The softmax categorical policy.
    lr, betas, weight_decay
        Adam settings (advantagenas Appendix D: 3e-4, (0.5, 0.999), 3e-3; §5.1 toy: 1e-3, (0.9, 0.999), 0).
    grad_clip
        Clip the norm of the θ gradient (Appendix D: 1.0); None disables.
    total_steps
        Anneal the learning rate to 0 with a cosine schedule over this many updates (None: constant).
    gamma
        EMA decay of the reward baseline and of the zero-operation advantages (Appendix B/C: 0.05).
    seed
        Seed of the sampler.
    """

    def __init__(self, policy: SoftmaxCategoricalPolicy, lr: float = 3e-4, betas: tuple[float, float] = (0.5, 0.999),
                 weight_decay: float = 3e-3, grad_clip: float | None = 1.0, total_steps: int | None = None,
                 gamma: float = 0.05, seed: int | None = None):
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f'lr must be a finite number > 0, got {lr!r}')
        if not 0 < gamma <= 1:
            raise ValueError(f'gamma (EMA decay) must be in (0, 1], got {gamma!r}')
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f'grad_clip must be > 0 or None, got {grad_clip!r}')
        self.policy = policy
        self.lr = float(lr)
        self.grad_clip = grad_clip
        self.gamma = float(gamma)
        self.rng = np.random.default_rng(seed)
        self.adam = PolicyAdam(policy.logits.size, betas=betas, weight_decay=weight_decay)
        self.total_steps = total_steps
        self.baseline: float | None = None
        self.iteration = 0
        self.updates = 0
        self.skipped_nonfinite = 0

    def ask(self, n: int = 1) -> np.ndarray:
        return self.policy.sample(n, self.rng)

    def most_likely(self) -> np.ndarray:
        return self.policy.mode()

    def set_total_steps(self, total_steps: int | None) -> None:
        self.total_steps = total_steps

    def _apply(self, ascent: np.ndarray) -> bool:
        """θ ← Adam step along +ascent (Adam descends along the gradient −ascent); returns whether θ moved.

        A non-finite ascent (r − b overflowed for losses near ±1.8e308) is skipped like a NaN loss.
        """
        ascent = np.asarray(ascent, dtype=np.float64)
        if not np.all(np.isfinite(ascent)):
            self.skipped_nonfinite += 1
            return False
        gradient = -ascent
        if self.grad_clip is not None:
            gradient = clip_by_norm(gradient, self.grad_clip)
        self.adam.step(self.policy.logits, gradient, self._current_lr())
        self.updates += 1
        return True

    def _current_lr(self) -> float:
        if not self.total_steps:
            return self.lr
        progress = min(self.updates, self.total_steps) / self.total_steps
        return 0.5 * self.lr * (1 + math.cos(math.pi * progress))

    def _advance_baseline(self, reward: float) -> float:
        """r − b with b ← b + γ(r − b) afterwards (Appendix C); b starts at the first reward."""
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        if math.isfinite(advantage):              # an overflow leaves b where it was (and skips the step)
            self.baseline += self.gamma * advantage
        return advantage

    def state_dict(self) -> dict:
        return {'logits': self.policy.logits.copy(), 'adam': self.adam.state_dict(),
                'rng': self.rng.bit_generator.state, 'baseline': self.baseline, 'iteration': self.iteration,
                'updates': self.updates, 'skipped_nonfinite': self.skipped_nonfinite, **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        """Also reads a checkpoint written while θ was a torch tensor stepped by torch's Adam (its ``logits``
        tensor and Adam state dict are converted; torch is not imported)."""
        logits = np.array(state['logits'], dtype=np.float64).reshape(-1)
        if logits.shape != self.policy.logits.shape:
            raise ValueError(f'checkpoint θ has {logits.size} entries, the policy {self.policy.logits.size}')
        self.adam.load_state_dict(state['adam'])
        self.policy.logits[:] = logits
        self.rng.bit_generator.state = state['rng']
        self.baseline = state['baseline']
        self.iteration, self.updates = int(state['iteration']), int(state['updates'])
        self.skipped_nonfinite = int(state['skipped_nonfinite'])
        self._load_extra_state(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass

    def _finite(self, loss: float) -> bool:
        self.iteration += 1
        if math.isfinite(loss):
            return True
        self.skipped_nonfinite += 1
        return False


class ReinforceOptimizer(PolicyGradientOptimizer):
    """REINFORCE with an EMA baseline (advantagenas Eq. 4 and Appendix C): ascend (r − b)(a − μ(θ))."""

    def tell(self, row: np.ndarray, loss: float) -> bool:
        if not self._finite(loss):
            return False
        return self._apply(self._advance_baseline(-float(loss)) * self.policy.score(row))


class AdvantageOptimizer(PolicyGradientOptimizer):
    """AdvantageNAS (Algorithm 1, lines 7–10): ascend A_i (a_i − μ_i(θ_i)) for every variable i.

    ``zero`` flags zero-operation categories (Appendix B): when one is chosen its advantage
    (always 0 by Eq. 6) is replaced by the worst EMA advantage of the other categories of that
    variable; EMA(i, j) ← EMA(i, j) + γ(A_i − EMA(i, j)) for the chosen j (Eq. 9). Variables
    whose advantage is unknown (NaN: no gate could be placed, e.g. a Repeat depth) get the
    REINFORCE credit r − b instead, which keeps the estimate unbiased.
    """

    def __init__(self, policy: SoftmaxCategoricalPolicy, zero: np.ndarray | None = None, **kwargs):
        super().__init__(policy, **kwargs)
        self.zero = np.zeros(policy.logits.size, dtype=bool) if zero is None else np.asarray(zero, dtype=bool)
        self.ema = np.zeros(policy.logits.size)

    def tell(self, row: np.ndarray, loss: float, advantages: np.ndarray) -> bool:
        if not self._finite(loss):
            return False
        advantages = np.array(advantages, dtype=float).reshape(-1)
        if advantages.size != self.policy.num_variables:
            raise ValueError(f'expected {self.policy.num_variables} advantages, got {advantages.size}')
        chosen = self.policy.offsets[:-1] + np.asarray(row, dtype=np.int64).reshape(-1)
        known = np.isfinite(advantages)
        learn = np.flatnonzero(known & ~self.zero[chosen])
        with np.errstate(over='ignore'):
            change = advantages[learn] - self.ema[chosen[learn]]
        ok = np.isfinite(change)                  # an overflow leaves that EMA where it was
        self.ema[chosen[learn[ok]]] += self.gamma * change[ok]
        for i in np.flatnonzero(known & self.zero[chosen]):
            block = slice(self.policy.offsets[i], self.policy.offsets[i + 1])
            others = self.ema[block][~self.zero[block] & ~self.policy.excluded[block]]
            advantages[i] = others.min() if others.size else 0.0
        if not known.all():
            advantages[~known] = self._advance_baseline(-float(loss))
        per_category = advantages[self.policy._variable_of]
        return self._apply(per_category * self.policy.score(row))

    def _extra_state(self) -> dict:
        return {'ema': self.ema.copy()}

    def _load_extra_state(self, state: dict) -> None:
        self.ema = np.array(state['ema'], dtype=float)

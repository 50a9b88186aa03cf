"""ASNG, SNG and PDAS as NNI one-shot strategies (asng-nas Algorithm 1, pdas Algorithm 1)."""
from __future__ import annotations

import math
from typing import Any

from .. import optimizers
from ..distributions import STD_MIN_FRACTION, CategoricalDistribution, scaled_std_min
from .encoding import SearchSpaceEncoding
from .searcher import DEFAULT_WARMUP, NaturalGradientSearcher, check_warmup
from .strategy import ProbabilisticOneShotStrategy


class _NaturalGradientStrategy(ProbabilisticOneShotStrategy):
    """Shared constructor checks and searcher for the natural-gradient strategies."""

    def __init__(self, *, theta_min: str | float = 'paper', sigma_min_fraction: float = STD_MIN_FRACTION,
                 warmup: float = DEFAULT_WARMUP, warmup_epochs: int | None = None,
                 resample_for_architecture: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        check_warmup(warmup, warmup_epochs)
        scaled_std_min([0.0], [1.0], fraction=sigma_min_fraction)     # fail fast on a bad sigma_min_fraction,
        self.make_optimizer(CategoricalDistribution([3] * 4, theta_min=theta_min))   # theta_min, hyperparameters
        self.theta_min = theta_min
        self.sigma_min_fraction = sigma_min_fraction
        self.warmup, self.warmup_epochs = warmup, warmup_epochs
        self.resample_for_architecture = resample_for_architecture

    def make_optimizer(self, distribution) -> optimizers.NaturalGradientOptimizer:
        raise NotImplementedError

    def build_searcher(self, encoding: SearchSpaceEncoding, model=None) -> NaturalGradientSearcher:
        return NaturalGradientSearcher(encoding, self.make_optimizer, theta_min=self.theta_min,
                                       sigma_min_fraction=self.sigma_min_fraction, warmup=self.warmup,
                                       warmup_epochs=self.warmup_epochs,
                                       resample_for_architecture=self.resample_for_architecture)


class ASNG(_NaturalGradientStrategy):
    """Adaptive stochastic natural gradient NAS (Akimoto et al., ICML 2019).

    Each step samples λ architectures from p_θ, trains the weights with their mean gradient on a
    D_x batch (only the sampled paths run), evaluates the same architectures on a D_θ batch without
    back-propagation and moves θ along the normalised natural gradient with the adaptive trust
    region δ⁰/Δ. Categorical mutables (LayerChoice, InputChoice, nni.choice, Repeat depth, cells)
    use categorical distributions; bounded numerical ones (nni.quniform) Gaussian ones (§2.4).
    Defaults are the paper's (λ = 2, α = 1.5, δ⁰ = 1) and need no tuning.

    Parameters
    ----------
    lam
        λ, architectures per step (>= 2).
    alpha, delta_init, delta_max
        α, δ⁰ and Δ_max of Algorithm 1.
    theta_min
        Lower bound on categorical probabilities (``'paper'``: 1/(n_c(K_i − 1)), pdas Appendix B), or a
        number in (0, 1/K_i); 0 is refused since the Fisher metric is undefined at θ = 0 (asng-nas §2.4).
    sigma_min_fraction
        σ_min of continuous numerical variables (``nni.uniform``) as a fraction of high − low (default
        1/100); quantised ones (``nni.quniform``) use a quarter of their quantum (asng-nas §3.3 "Int").
    warmup, warmup_epochs
        θ is held while the weights train alone: for the first ``warmup`` share of the planned weight steps
        (default 0.5), or for ``warmup_epochs`` whole epochs when given. ``warmup=0`` is the paper's setting
        (θ moves from the first step). The default differs because at the paper's settings θ converges within
        a few dozen steps, on a supernet that has hardly trained: it then ranks architectures by their loss at
        initialisation (e.g. a candidate that zeroes its input beats every real operation there). Measured:
        experiments/README.md, "Premature decisions" and "Sweeps". A share needs the run's planned length
        (``max_epochs`` or ``max_steps``); a run without one stops with an error saying so.
    resample_for_architecture
        Draw fresh architectures for the θ step instead of reusing the λ of the weight step.
    gradient_clip_val, log_every_n_steps, seed
        See :class:`~.strategy.ProbabilisticOneShotStrategy`.
    """

    def __init__(self, *, lam: int = 2, alpha: float = 1.5, delta_init: float = 1.0, delta_max: float = math.inf,
                 **kwargs: Any):
        self.lam, self.alpha, self.delta_init, self.delta_max = lam, alpha, delta_init, delta_max
        super().__init__(**kwargs)

    def make_optimizer(self, distribution) -> optimizers.ASNG:
        return optimizers.ASNG(distribution, lam=self.lam, alpha=self.alpha, delta_init=self.delta_init,
                               delta_max=self.delta_max, seed=self.seed)


class SNG(_NaturalGradientStrategy):
    """Stochastic natural gradient with a fixed trust region δ (the ablation of asng-nas §3.1)."""

    def __init__(self, *, lam: int = 2, delta: float = 1.0, **kwargs: Any):
        self.lam, self.delta = lam, delta
        super().__init__(**kwargs)

    def make_optimizer(self, distribution) -> optimizers.SNG:
        return optimizers.SNG(distribution, lam=self.lam, delta=self.delta, seed=self.seed)


class PDAS(_NaturalGradientStrategy):
    """Probabilistic DAS (Shirakawa et al.): θ ← θ + ηG with η adapted as in pdas Appendix C.

    Parameters
    ----------
    lam
        λ, architectures per step (the paper uses 2).
    alpha, eta_min, eta_max, eta_init
        Adaptation constants; η_max defaults to n_θ^(-1/2) and η starts there.
    """

    def __init__(self, *, lam: int = 2, alpha: float = 1.5, eta_min: float = 0.0, eta_max: float | None = None,
                 eta_init: float | None = None, **kwargs: Any):
        self.lam, self.alpha, self.eta_min, self.eta_max, self.eta_init = lam, alpha, eta_min, eta_max, eta_init
        super().__init__(**kwargs)

    def make_optimizer(self, distribution) -> optimizers.PDAS:
        return optimizers.PDAS(distribution, lam=self.lam, alpha=self.alpha, eta_min=self.eta_min,
                               eta_max=self.eta_max, eta_init=self.eta_init, seed=self.seed)

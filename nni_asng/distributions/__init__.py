"""Probability families over architectures (numpy only, no NNI): sample, log-likelihood,
natural gradient T(c) − θ, Fisher factors and domain projection (asng-nas §2.4, pdas App. A/B)."""
from .categorical import CategoricalDistribution
from .gaussian import STD_MIN_FRACTION, GaussianDistribution, scaled_std_min
from .product import ProductDistribution

__all__ = ['CategoricalDistribution', 'GaussianDistribution', 'ProductDistribution', 'STD_MIN_FRACTION',
           'scaled_std_min']

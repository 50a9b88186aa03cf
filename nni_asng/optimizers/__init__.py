"""Ask/tell architecture optimizers (numpy only: no torch, NNI or Lightning)."""
from .adam import NaturalGradientAdam
from .asng import ASNG
from .base import NaturalGradientOptimizer
from .pdas import PDAS
from .sng import SNG
from .utility import quantile_utility, ranking_utility

__all__ = ['ASNG', 'SNG', 'PDAS', 'NaturalGradientAdam', 'NaturalGradientOptimizer',
           'ranking_utility', 'quantile_utility']

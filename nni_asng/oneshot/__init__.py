"""The NNI adapter: encoding of NNI mutables, supermodules, the Lightning module and the strategies."""
from .encoding import ArchitectureError, SearchSpaceEncoding, UnsupportedSpaceError
from .lightning import NonFiniteLossError, ProbabilisticOneShotModule
from .natural_gradient import ASNG, PDAS, SNG
from .policy_gradient import AdvantageNAS, Reinforce
from .strategy import ProbabilisticOneShotStrategy

__all__ = ['ASNG', 'PDAS', 'SNG', 'AdvantageNAS', 'Reinforce', 'ProbabilisticOneShotStrategy',
           'ProbabilisticOneShotModule', 'SearchSpaceEncoding', 'UnsupportedSpaceError', 'ArchitectureError',
           'NonFiniteLossError']

"""The NNI adapter: encoding of NNI mutables, supermodules, the Lightning module and the strategies."""
# NNI resolves its one-shot strategies lazily; importing nni.nas.oneshot.pytorch.strategy first
# would leave nni.nas.strategy.DARTS & co. as import-failure placeholders for the user's session.
import nni.nas.strategy  # noqa: F401  (must precede the imports below)

from .encoding import ArchitectureError, SearchSpaceEncoding, UnsupportedSpaceError
from .complexity import ComplexityError, ComplexityTable, measure_complexity
from .budget import Budget, BudgetError
from .latency import LatencyOptions, time_forward
from .lightning import NonFiniteLossError, ProbabilisticOneShotModule
from .multi_complexity import MultiComplexity
from .natural_gradient import ASNG, PDAS, SNG
from .policy_gradient import AdvantageNAS, Reinforce
from .strategy import ProbabilisticOneShotStrategy

__all__ = ['ASNG', 'PDAS', 'SNG', 'AdvantageNAS', 'Reinforce', 'MultiComplexity', 'ComplexityError',
           'ComplexityTable', 'measure_complexity', 'ProbabilisticOneShotStrategy',
           'ProbabilisticOneShotModule', 'SearchSpaceEncoding', 'UnsupportedSpaceError', 'ArchitectureError',
           'NonFiniteLossError', 'Budget', 'BudgetError', 'LatencyOptions', 'time_forward']

"""Probabilistic one-shot NAS strategies for Microsoft NNI 3.0.

>>> from nni.nas.experiment import NasExperiment
>>> import nni_asng
>>> NasExperiment(model_space, evaluator, nni_asng.ASNG()).run()      # doctest: +SKIP
"""
import warnings

# NNI 3.0 warns at import about torch classes it does not recognise (harmless with this torch).
warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*', category=RuntimeWarning)

from .oneshot import (ASNG, PDAS, SNG, AdvantageNAS, ArchitectureError, ComplexityError, MultiComplexity,
                      NonFiniteLossError, Reinforce, SearchSpaceEncoding, UnsupportedSpaceError, measure_complexity)

__version__ = '0.1.0'
__all__ = ['ASNG', 'PDAS', 'SNG', 'AdvantageNAS', 'Reinforce', 'MultiComplexity', 'measure_complexity',
           'ComplexityError', 'SearchSpaceEncoding', 'UnsupportedSpaceError', 'ArchitectureError',
           'NonFiniteLossError']

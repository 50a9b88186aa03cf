"""Probabilistic one-shot NAS strategies for Microsoft NNI 3.0.

>>> from nni.nas.experiment import NasExperiment
>>> import nni_asng
>>> NasExperiment(model_space, evaluator, nni_asng.ASNG()).run()      # doctest: +SKIP

The strategies (and everything else that needs NNI) load on first use, so ``nni_asng.distributions`` and
``nni_asng.optimizers``, the ask/tell mathematics, import with numpy alone.
"""
import importlib
import warnings

from .dependencies import missing_dependency

# NNI 3.0 warns at import about torch classes it does not recognise (harmless with this torch).
warnings.filterwarnings('ignore', message='.*is found to be not a nn.Module.*', category=RuntimeWarning)

__version__ = '0.1.0'
__all__ = ['ASNG', 'PDAS', 'SNG', 'AdvantageNAS', 'Reinforce', 'MultiComplexity', 'measure_complexity',
           'ComplexityError', 'SearchSpaceEncoding', 'UnsupportedSpaceError', 'ArchitectureError',
           'NonFiniteLossError', 'Budget', 'BudgetError', 'LatencyOptions']


def __getattr__(name: str):
    """Re-export the strategies of :mod:`nni_asng.oneshot` lazily (PEP 562)."""
    if name in __all__:
        try:
            module = importlib.import_module('.oneshot', __name__)
        except ModuleNotFoundError as err:
            clear = missing_dependency(err, f'nni_asng.{name}')
            if clear is None:
                raise
            raise clear from err
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + __all__)

"""nni-asng's one warning filter, and the switch that turns NNI's and Lightning's informational log records off.

:func:`quiet_warnings` is the only place that names the advice of NNI and Lightning known to be harmless
here; the CLI, the runs, the table builder's workers and the experiment scripts all use it.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from typing import Sequence

__all__ = ['HARMLESS', 'quiet_warnings', 'quiet_library_logs']

#: Messages (regular expressions) of NNI's and Lightning's advice that does not apply to nni-asng's runs: traced
#: modules, loader workers, short epochs, missing validation loops, checkpoint folders, deprecated internals.
HARMLESS = ('.*is found to be not a nn.Module.*', '.*does not have many workers.*',
            '.*The number of training batches.*', '.*Validation dataloaders are missing.*',
            '.*You defined a `validation_step` but have no.*', '.*manual optimization and every_n_train_steps.*',
            '.*LeafSpec.*is deprecated.*', '.*Checkpoint directory .* exists and is not empty.*')


@contextlib.contextmanager
def quiet_warnings(*messages: str, modules: Sequence[str] = (), categories: Sequence[type[Warning]] = ()):
    """While active, ignore the :data:`HARMLESS` warnings and DeprecationWarnings, plus the warnings whose message
    matches one of ``messages`` (regular expressions), the UserWarnings raised in ``modules`` and every warning of
    ``categories`` (``Warning``: all of them)."""
    with warnings.catch_warnings():
        for message in (*HARMLESS, *messages):
            warnings.filterwarnings('ignore', message=message)
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        for module in modules:
            warnings.filterwarnings('ignore', category=UserWarning, module=module)
        for category in categories:
            warnings.filterwarnings('ignore', category=category)
        yield


def quiet_library_logs() -> None:
    """NNI's and Lightning's informational log records off in this process (the CLI; the table builder's worker
    processes, which start fresh)."""
    # Imported here (heavy; quiet_warnings needs neither) and before the levels are set: each sets its logger to INFO
    # when imported. One that is not installed has nothing to say (what needs it reports it missing).
    for module in ('nni.runtime.log', 'pytorch_lightning'):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(module)
    logging.getLogger('nni').propagate = False     # NNI prints its own (coloured) records
    for name, level in (('nni', logging.ERROR), ('pytorch_lightning', logging.WARNING),
                        ('lightning.pytorch', logging.WARNING), ('lightning_fabric', logging.WARNING),
                        ('lightning', logging.WARNING)):
        logging.getLogger(name).setLevel(level)

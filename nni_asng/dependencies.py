"""What each part of nni-asng needs, and the error that says so when it is missing.

The mathematics (``nni_asng.distributions``, ``nni_asng.optimizers``) needs numpy alone; the strategies need
NNI 3.0, torch and Lightning; the command line and YAML configs need the ``cli`` extra. A missing package
surfaces as :class:`MissingDependencyError` naming the package, what needs it and the pip command.
"""
from __future__ import annotations

__all__ = ['MissingDependencyError', 'REQUIREMENTS', 'missing_dependency']

#: top-level module -> (what it is, the requirement to install); ranges as in pyproject.toml
REQUIREMENTS = {
    'nni': ('NNI 3.0', 'nni==3.0'),
    'torch': ('PyTorch', 'torch>=2.9,<2.16'),
    'pytorch_lightning': ('PyTorch Lightning', 'pytorch-lightning>=2.0,<2.7'),
    'lightning_fabric': ('PyTorch Lightning', 'pytorch-lightning>=2.0,<2.7'),
    'torchmetrics': ('torchmetrics', 'torchmetrics>=1.0'),
    'yaml': ('PyYAML (the cli extra)', 'nni-asng[cli]'),
    'pydantic': ('pydantic (the cli extra)', 'nni-asng[cli]'),
    'matplotlib': ('matplotlib (the cli extra)', 'nni-asng[cli]'),
    'mlxtend': ('mlxtend (the cli extra)', 'nni-asng[cli]'),
}


class MissingDependencyError(ImportError):
    """A package nni-asng needs for what was asked is not installed in this Python environment."""


def missing_dependency(err: BaseException, needed_by: str) -> MissingDependencyError | None:
    """The clear error for ``err`` when it is a missing package nni-asng declares, else None."""
    if not isinstance(err, ModuleNotFoundError) or not err.name:
        return None
    top = err.name.split('.')[0]
    if top not in REQUIREMENTS:
        return None
    what, requirement = REQUIREMENTS[top]
    message = (f'{needed_by} needs {what}, which is not installed in this Python environment ({err}). '
               f'Install it with:  pip install "{requirement}"')
    if requirement != 'nni-asng[cli]':
        message += ('  (nni-asng itself declares it: pip install nni-asng installs NNI, torch and Lightning; '
                    'the ask/tell mathematics in nni_asng.distributions and nni_asng.optimizers needs numpy only)')
    return MissingDependencyError(message, name=err.name)

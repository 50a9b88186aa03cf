"""Errors a user can fix (bad config, missing data, wrong architecture file, busy port, ...).

The CLI prints these as one clear message and exits with a non-zero code, without a traceback
(``--debug`` shows it). Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Base class of errors caused by the user's input; ``exit_code`` is the CLI's exit status."""

    exit_code = 2


class ConfigError(UserError):
    """The experiment config is malformed or invalid (the message names the file, line and key)."""


class OutputExistsError(UserError):
    """The output folder already holds results (use ``--overwrite`` or ``--resume``)."""


class ArchitectureFileError(UserError):
    """An architecture JSON is unreadable or does not belong to the configured space."""


class LaunchError(UserError):
    """The NNI experiment could not be created, or its trials failed."""

    exit_code = 1


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types shown without a traceback: ours plus the actionable ones of the other packages."""
    from .data import DatasetFormatError, DatasetNotFoundError, UnknownDatasetError
    from .oneshot import ArchitectureError, ComplexityError, NonFiniteLossError, UnsupportedSpaceError
    types: list[type[BaseException]] = [UserError, DatasetFormatError, DatasetNotFoundError, UnknownDatasetError,
                                        ArchitectureError, ComplexityError, NonFiniteLossError, UnsupportedSpaceError]
    for module in ('search_spaces.arch_value_checks', 'search_spaces.validation'):
        try:
            types.append(__import__(module, fromlist=['InvalidArchitectureError']).InvalidArchitectureError)
        except (ImportError, AttributeError):  # spaces still being written
            pass
    return tuple(types)

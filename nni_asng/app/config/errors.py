"""Errors a user can fix (bad config, missing data, wrong architecture file, busy port, ...).

The CLI prints these as one clear message and exits with a non-zero code, without a traceback
(``--debug`` shows it). Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import signal


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
    # Imported when an error is shown: loading NNI (nni_asng.oneshot) up front would slow every command down.
    from ...data import DatasetFormatError, DatasetNotFoundError, UnknownDatasetError
    from ...oneshot import ArchitectureError, ComplexityError, NonFiniteLossError, UnsupportedSpaceError
    types: list[type[BaseException]] = [UserError, DatasetFormatError, DatasetNotFoundError, UnknownDatasetError,
                                        ArchitectureError, ComplexityError, NonFiniteLossError, UnsupportedSpaceError]
    for module in ('search_spaces.arch_value_checks', 'search_spaces.validation'):
        try:
            types.append(__import__(module, fromlist=['InvalidArchitectureError']).InvalidArchitectureError)
        except (ImportError, AttributeError):  # spaces still being written
            pass
    return tuple(types)


class SearchInterrupted(Exception):
    """The search stopped on SIGINT/SIGTERM after a complete step and saved ``checkpoint`` to resume from.

    Not a :class:`UserError`: the CLI reports it with the command that continues the search and exits
    with ``128 + signal number`` (130 for Ctrl-C, 143 for SIGTERM), as shells do for a killed command.
    """

    def __init__(self, signal_name: str, checkpoint, epoch: int | None = None, step: int | None = None):
        self.signal_name = signal_name
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.step = step
        where = f' after step {step} (epoch {epoch})' if step is not None else ''
        super().__init__(f'search stopped by {signal_name}{where}; checkpoint saved to {checkpoint}')

    @property
    def exit_code(self) -> int:
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))

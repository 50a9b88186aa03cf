"""Exceptions raised by the data package."""
from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are not where they were looked for (the message says how to get them)."""


class DatasetFormatError(ValueError):
    """A dataset file exists but is corrupt, truncated or not in the expected format (the message names it)."""


class UnknownDatasetError(ValueError):
    """A dataset name that is not registered (the message lists the supported names)."""

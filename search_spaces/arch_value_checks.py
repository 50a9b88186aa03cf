"""Checks of architecture dicts against a space's labels, with errors that name the label and its allowed values.

Used by the fixed-network builders of :mod:`search_spaces.cae` and :mod:`search_spaces.nas_bench_201`, so a
wrong dict given to ``space.freeze(arch)`` fails with a message a user can act on, instead of NNI's internals.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

__all__ = ['InvalidArchitectureError', 'check_mapping', 'checked_choice', 'checked_integer']


class InvalidArchitectureError(ValueError):
    """An architecture dict does not belong to the space (missing label, wrong type or out-of-range value)."""


def check_mapping(arch: Any, space_name: str) -> Mapping[str, Any]:
    """``arch`` itself must be a dict ``{label: value}``."""
    if not isinstance(arch, Mapping):
        raise InvalidArchitectureError(f'{space_name}: an architecture must be a dict {{label: value}}, '
                                       f'got {type(arch).__name__}')
    return arch


def _missing(label: str, allowed: str, space_name: str) -> InvalidArchitectureError:
    return InvalidArchitectureError(f'{space_name}: architecture is missing label {label!r} (allowed values: {allowed})')


def _same_kind(value: Any, reference: Any) -> bool:
    """Bools only match bools, integers only match integers (not bools, not strings), strings only strings."""
    if isinstance(reference, bool):
        return isinstance(value, bool) or type(value).__name__ == 'bool_'
    if isinstance(reference, numbers.Integral):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if isinstance(reference, str):
        return isinstance(value, str)
    return True


def checked_choice(arch: Mapping[str, Any], label: str, allowed: Sequence[Any], space_name: str) -> Any:
    """The value of a categorical ``label``; it must be one of ``allowed`` (and of the same type)."""
    allowed = list(allowed)
    if label not in arch:
        raise _missing(label, repr(allowed), space_name)
    value = arch[label]
    for candidate in allowed:
        if _same_kind(value, candidate) and value == candidate:
            return candidate
    raise InvalidArchitectureError(f'{space_name}: label {label!r} has value {value!r} '
                                   f'({type(value).__name__}); allowed values: {allowed}')


def checked_integer(arch: Mapping[str, Any], label: str, low: int, high: int, space_name: str) -> int:
    """The value of an integer (``Numerical``, quantize 1) ``label``: a number in [low, high], rounded.

    Floats are accepted (NNI's ``Numerical.random()`` and Gaussian samples are floats) when they lie in
    the range up to rounding; the returned value is the nearest integer.
    """
    allowed = f'an integer in [{low}, {high}]'
    if label not in arch:
        raise _missing(label, allowed, space_name)
    value = arch[label]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InvalidArchitectureError(f'{space_name}: label {label!r} has value {value!r} '
                                       f'({type(value).__name__}); allowed values: {allowed}')
    rounded = int(round(float(value)))
    if not low <= rounded <= high:
        raise InvalidArchitectureError(f'{space_name}: label {label!r} has value {value!r}, out of range; '
                                       f'allowed values: {allowed}')
    return rounded


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; a constructor argument error names the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        wanted = 'a positive integer' if minimum == 1 else f'an integer >= {minimum}'
        raise ValueError(f'{name} must be {wanted}, got {value!r}')
    return int(value)

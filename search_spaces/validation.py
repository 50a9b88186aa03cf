"""Check an architecture dict against a space's mutables; errors name the label and its allowed values.

NNI's own ``freeze`` reports a wrong dict with messages that do not help a user (a bare index for an
``InputChoice`` raises ``TypeError: 'int' object is not iterable``; an out-of-range input reports
"Label x/0 is missing"; a missing label does not list the allowed values). :func:`validate_architecture`
checks every label of a space first and returns the dict in the form NNI expects, so the spaces'
``freeze`` and fixed-network builders fail with :class:`InvalidArchitectureError` messages such as::

    ENAS cell space: label 'normal/node3/input1' has value [7]; allowed values: one of [[0], [1], [2], [3]]

The value checks of single labels live in :mod:`search_spaces.arch_value_checks` (shared with the other
spaces); this module adds ``InputChoice`` values and the walk over a space's mutables.
"""
from __future__ import annotations

import numbers
from typing import Any, Mapping

from nni.mutable import Categorical, CategoricalMultiple, Mutable, Numerical

from .arch_value_checks import InvalidArchitectureError, check_mapping, checked_choice, checked_integer

__all__ = ['InvalidArchitectureError', 'validate_architecture', 'checked_input_choice', 'input_choice_values']


def input_choice_values(n_candidates: int) -> list[list[int]]:
    """The allowed values of an ``InputChoice(n_candidates, n_chosen=1)``: ``[[0], [1], ...]``."""
    return [[i] for i in range(n_candidates)]


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def checked_input_choice(arch: Mapping[str, Any], label: str, candidates: list[int], n_chosen: int,
                         space_name: str) -> list[int]:
    """The value of an ``InputChoice`` label as NNI expects it: a sorted list of ``n_chosen`` distinct candidates.

    For ``n_chosen == 1`` a bare index (``2``) and a tuple (``(2,)``) are accepted too and returned as ``[2]``.
    """
    candidates = list(candidates)
    if n_chosen == 1:
        allowed = f'one of {[[c] for c in candidates]}'
    else:
        allowed = f'a list of {n_chosen} distinct values from {candidates}'
    if label not in arch:
        raise InvalidArchitectureError(f'{space_name}: architecture is missing label {label!r} (allowed values: {allowed})')
    value = arch[label]
    items = [value] if n_chosen == 1 and _as_index(value) is not None else value
    if isinstance(items, (list, tuple)):
        indices = [_as_index(v) for v in items]
        if (len(indices) == n_chosen and None not in indices and len(set(indices)) == n_chosen
                and all(i in candidates for i in indices)):
            return sorted(indices)
    raise InvalidArchitectureError(f'{space_name}: label {label!r} has value {value!r} '
                                   f'({type(value).__name__}); allowed values: {allowed}')


def _checked_numerical(arch: Mapping[str, Any], label: str, mutable: Numerical, space_name: str) -> Any:
    low, high = float(mutable.low), float(mutable.high)
    if mutable.quantize == 1 and low.is_integer() and high.is_integer():
        return checked_integer(arch, label, int(low), int(high), space_name)
    allowed = f'a number in [{low}, {high}]'
    if label not in arch:
        raise InvalidArchitectureError(f'{space_name}: architecture is missing label {label!r} (allowed values: {allowed})')
    value = arch[label]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= float(value) <= high:
        raise InvalidArchitectureError(f'{space_name}: label {label!r} has value {value!r}; allowed values: {allowed}')
    return value


def validate_architecture(mutables: Mapping[str, Mutable], arch: Any, space_name: str) -> dict[str, Any]:
    """``{label: value}`` for every label of ``mutables`` (e.g. ``space.simplify()``), in NNI's form.

    Labels of ``arch`` that the space does not have are dropped (NNI ignores them as well).
    Raises :class:`InvalidArchitectureError` naming the label and its allowed values when a label is
    missing or its value has the wrong type or lies out of range.
    """
    check_mapping(arch, space_name)
    result: dict[str, Any] = {}
    for label, mutable in mutables.items():
        if isinstance(mutable, CategoricalMultiple):
            if mutable.n_chosen is None:
                raise InvalidArchitectureError(f'{space_name}: label {label!r} chooses any subset (n_chosen=None), '
                                               'which this validator does not support')
            result[label] = checked_input_choice(arch, label, list(mutable.values), mutable.n_chosen, space_name)
        elif isinstance(mutable, Categorical):
            result[label] = checked_choice(arch, label, mutable.values, space_name)
        elif isinstance(mutable, Numerical):
            result[label] = _checked_numerical(arch, label, mutable, space_name)
        else:
            raise TypeError(f'{space_name}: label {label!r} is a {type(mutable).__name__}, not supported here')
    return result

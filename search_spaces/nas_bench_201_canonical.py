"""Functional equivalence classes of NAS-Bench-201 cells (pure Python: no torch, no NNI).

Two cells are *equivalent* when they compute the same parameterised function of their input: the same
parameter tensors, combined in the same way, up to a renaming of the parameters (their initial values are
drawn from the same distribution, so their training is a draw from the same distribution too). Many of the
space's cells are equivalent; a tabular benchmark needs to train only one cell per class.

The canonical form is derived from the cell's semantics (node ``j`` = sum over ``i < j`` of ``op_ij(node i)``):

- ``none`` contributes nothing; ``skip_connect`` passes its input's terms on unchanged;
- ``avg_pool_3x3`` is linear and has no parameters, so it distributes over a sum
  (``pool(a + b) = pool(a) + pool(b)``) and is identified by what it pools;
- a convolution (ReLU-Conv-BN) is a parameterised object of its own, identified by its kernel and its input
  sum. Of an all-zero input it outputs its BatchNorm's shift β whatever its kernel (ReLU(0) = 0, the batch
  statistics are 0): a learnable constant, written ``b``;
- only what reaches the output counts: edges into a node that feeds no path to the output drop out;
- a cell whose output does not depend on its input at all makes the whole network a constant function
  (every later layer is fed a constant): every such cell is in the one class ``constant`` (chance accuracy).

The output is a multiset of terms (``x``, ``pool(term)``, a convolution); convolutions are labelled so that the
text is the same for every pair of isomorphic term graphs (brute force over relabellings of convolutions with
the same structure: at most a few per cell).
"""
from __future__ import annotations

import itertools
from collections import Counter
from typing import Any, Iterable, Mapping

__all__ = ['CONSTANT', 'canonical_cell', 'equivalence_classes']

CONSTANT = 'constant'
"""The class of every cell whose output does not depend on its input."""

_NODES = 4
_EDGES = tuple((i, j) for j in range(1, _NODES) for i in range(j))
_CONV_KERNELS = {'conv_1x1': 1, 'conv_3x3': 3, 'nor_conv_1x1': 1, 'nor_conv_3x3': 3}
_LINEAR = {'none', 'skip_connect', 'avg_pool_3x3'}

_X = ('x',)


class _Conv:
    """One convolution edge: its kernel and its input (a Counter of terms); identity = this object."""

    def __init__(self, kernel: int, source: Counter):
        self.kernel = kernel
        self.source = source

    @property
    def is_bias(self) -> bool:
        return not self.source


def _pool(term):
    return ('pool', term)


def _terms_of(arch: Mapping[str, Any]) -> Counter:
    """The cell output as a Counter of terms: ``('x',)``, ``('pool', term)`` or a :class:`_Conv`."""
    nodes = [Counter({_X: 1})]
    for j in range(1, _NODES):
        total: Counter = Counter()
        for i in range(j):
            op = arch[f'cell/{i}_{j}']
            if op == 'none':
                continue
            if op == 'skip_connect':
                total.update(nodes[i])
            elif op == 'avg_pool_3x3':
                total.update({_pool(t): n for t, n in nodes[i].items()})
            elif op in _CONV_KERNELS:
                total[_Conv(_CONV_KERNELS[op], nodes[i])] += 1
            else:
                raise ValueError(f'unknown NAS-Bench-201 operation {op!r} on edge cell/{i}_{j}; known: '
                                 f'{sorted(_LINEAR | set(_CONV_KERNELS))}')
        nodes.append(total)
    return nodes[-1]


def _depends_on_input(term) -> bool:
    if term == _X:
        return True
    if isinstance(term, _Conv):
        return any(_depends_on_input(t) for t in term.source)
    return _depends_on_input(term[1])


def _convs(terms: Iterable, seen: dict[int, _Conv]) -> None:
    """Every convolution reachable from ``terms`` into ``seen`` (by identity)."""
    for term in terms:
        while isinstance(term, tuple) and term[0] == 'pool':
            term = term[1]
        if isinstance(term, _Conv) and id(term) not in seen:
            seen[id(term)] = term
            _convs(term.source, seen)


def _shape(term) -> str:
    """The term's text ignoring which convolution is which (the same for isomorphic terms)."""
    if term == _X:
        return 'x'
    if isinstance(term, _Conv):
        return 'b' if term.is_bias else f'c{term.kernel}(' + _sum_text(term.source, _shape) + ')'
    return f'p({_shape(term[1])})'


def _sum_text(terms: Counter, text) -> str:
    return '+'.join(sorted(f'{n}*{text(t)}' if n > 1 else text(t) for t, n in terms.items()))


def canonical_cell(arch: Mapping[str, Any]) -> str:
    """The canonical text of a cell ``{'cell/i_j': op}``: equal for exactly the equivalent cells.

    Example: ``conv_3x3`` on ``0_3`` alone and the same plus ``conv_3x3`` on ``0_1`` (a node nothing reads)
    are both ``'c3#0=c3(x) | out=c3#0'``.
    """
    output = _terms_of(arch)
    if not any(_depends_on_input(t) for t in output):
        return CONSTANT
    found: dict[int, _Conv] = {}
    _convs(output, found)
    groups: dict[str, list[_Conv]] = {}
    for conv in found.values():
        groups.setdefault(_shape(conv), []).append(conv)
    ordered = sorted(groups)
    best = None
    for perm in itertools.product(*(itertools.permutations(groups[s]) for s in ordered)):
        labels = {id(conv): k for k, conv in enumerate(c for group in perm for c in group)}

        def text(term, labels=labels) -> str:
            if term == _X:
                return 'x'
            if isinstance(term, _Conv):
                return f'b#{labels[id(term)]}' if term.is_bias else f'c{term.kernel}#{labels[id(term)]}'
            return f'p({text(term[1])})'

        defs = [f'{text(c)}=' + ('b' if c.is_bias else f'c{c.kernel}(' + _sum_text(c.source, text) + ')')
                for c in sorted(found.values(), key=lambda c: labels[id(c)])]
        candidate = ' ; '.join(defs) + f' | out={_sum_text(output, text)}'
        if best is None or candidate < best:
            best = candidate
    return best


def equivalence_classes(architectures: Iterable[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Canonical text -> indices of ``architectures`` in that class (in the order given)."""
    classes: dict[str, list[int]] = {}
    for index, arch in enumerate(architectures):
        classes.setdefault(canonical_cell(arch), []).append(index)
    return classes

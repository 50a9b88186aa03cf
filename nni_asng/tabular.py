"""Query a tabular benchmark built by ``nni-asng tabulate`` (numpy only; no NNI, no Lightning).

A tabular benchmark holds, for every architecture of a cell space and every seed it was trained with, the
per-epoch training, validation and test metrics of one fixed training recipe (the idea of NAS-Bench-201,
Dong & Yang 2020). A search's result is then looked up instead of retrained::

    from nni_asng.tabular import TabularBenchmark
    table = TabularBenchmark.load('experiments/results/tabular/nb201_fmnist')
    entry = table.query({'cell/0_1': 'conv_3x3', ...})          # or '|nor_conv_3x3~0|+|...|'
    entry.accuracy, entry.rank, entry.percentile                # mean test accuracy over seeds, 1 = best

The rows are the builder's ``table.jsonl`` (one JSON object per architecture and seed).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ['TabularBenchmark', 'TableEntry', 'ArchitectureNotInTableError', 'TableQuality', 'arch_key',
           'read_rows', 'spearman', 'kendall_tau', 'ROW_FILE']

ROW_FILE = 'table.jsonl'


class ArchitectureNotInTableError(KeyError):
    """An architecture the table has no row for."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else ''


def arch_key(arch: Mapping[str, Any]) -> str:
    """Canonical text of an architecture dict (sorted labels), the table's key."""
    return json.dumps({str(k): arch[k] for k in sorted(arch)}, sort_keys=True)


def read_rows(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """The complete rows of a ``table.jsonl`` and the byte length they occupy.

    A last line cut off by a kill (no newline, or not valid JSON) is ignored; the builder truncates the
    file to the returned length before it appends.
    """
    path = Path(path)
    if not path.is_file():
        return [], 0
    rows, good = [], 0
    with open(path, 'rb') as f:
        for line in f:
            if not line.endswith(b'\n'):
                break
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
            good += len(line)
    return rows, good


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    order = np.argsort(values, kind='mergesort')
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson correlation of the tie-averaged ranks)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError('spearman needs two sequences of the same length >= 2')
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float((ra ** 2).sum() * (rb ** 2).sum()))
    return float((ra * rb).sum() / denominator) if denominator else float('nan')


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b (ties counted as neither concordant nor discordant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError('kendall_tau needs two sequences of the same length >= 2')
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), k=1)
    da, db = da[upper], db[upper]
    denominator = math.sqrt(float((da != 0).sum()) * float((db != 0).sum()))
    return float((da * db).sum() / denominator) if denominator else float('nan')


@dataclass(frozen=True)
class TableEntry:
    """One architecture of the table: metrics averaged over the seeds it was trained with."""

    architecture: dict[str, Any]
    name: str | None                 # e.g. the NAS-Bench-201 string
    accuracy: float                  # final-epoch test accuracy, mean over seeds
    val_accuracy: float | None       # final-epoch validation accuracy, mean over seeds
    seeds: tuple[int, ...]
    per_seed_accuracy: tuple[float, ...]
    rank: int                        # 1 = best test accuracy
    percentile: float                # % of the table's architectures with accuracy <= this one
    params: int | None
    flops: int | None


@dataclass(frozen=True)
class TableQuality:
    """What says whether a table's ranking means something (printed by the builder)."""

    architectures: int
    rows: int
    seeds: dict[int, int]              # seed -> architectures trained with it
    mean_accuracy: float               # = the expected accuracy of a uniformly random architecture
    best_accuracy: float
    best_name: str | None
    worst_accuracy: float
    spread_across_architectures: float  # std of the first seed's accuracies over architectures
    spread_across_seeds: float | None   # RMS over architectures of the std across seeds
    spearman_seeds: float | None        # first vs second seed, over the architectures trained with both
    pairs: int
    mean_train_time_s: float

    def format(self) -> str:
        lines = [f'architectures: {self.architectures} ({self.rows} rows; per seed: '
                 + ', '.join(f'seed {s}: {n}' for s, n in self.seeds.items()) + ')',
                 f'test accuracy: mean {100 * self.mean_accuracy:.2f}% (= a random architecture), best '
                 f'{100 * self.best_accuracy:.2f}% ({self.best_name}), worst {100 * self.worst_accuracy:.2f}%',
                 f'spread across architectures (std): {100 * self.spread_across_architectures:.2f} pp']
        if self.spread_across_seeds is not None:
            lines.append(f'spread across seeds (RMS std over {self.pairs} architectures): '
                         f'{100 * self.spread_across_seeds:.2f} pp')
            lines.append(f'Spearman rank correlation seed {list(self.seeds)[0]} vs seed {list(self.seeds)[1]}: '
                         f'{self.spearman_seeds:.3f} (target >= 0.8)')
        lines.append(f'mean training time per row: {self.mean_train_time_s:.1f} s')
        return '\n'.join(lines)


class TabularBenchmark:
    """Architectures → trained accuracies (see the module docstring)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any] | None = None):
        self.meta = dict(meta or {})
        self.rows = [dict(r) for r in rows]
        if not self.rows:
            raise ValueError('the table has no rows')
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            grouped.setdefault(arch_key(row['architecture']), []).append(row)
        self._keys = list(grouped)
        self._groups = [sorted(grouped[k], key=lambda r: r['seed']) for k in self._keys]
        self._index = {k: i for i, k in enumerate(self._keys)}
        self._names = {g[0].get('name'): i for i, g in enumerate(self._groups) if g[0].get('name')}
        self.accuracies = np.array([np.mean([r['final']['test_acc'] for r in g]) for g in self._groups])
        order = np.argsort(-self.accuracies, kind='mergesort')
        self._rank = np.empty(len(order), dtype=int)
        self._rank[order] = np.arange(1, len(order) + 1)

    # ------------------------------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike) -> 'TabularBenchmark':
        """A table folder (``table.jsonl`` + ``meta.json``) or a ``table.jsonl`` file."""
        path = Path(path)
        rows_file = path / ROW_FILE if path.is_dir() else path
        if not rows_file.is_file():
            raise FileNotFoundError(f'no tabular benchmark at {path} (expected {rows_file}); build one with '
                                    f'`nni-asng tabulate CONFIG --output DIR`')
        rows, _ = read_rows(rows_file)
        meta_file = rows_file.parent / 'meta.json'
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        return cls(rows, meta)

    # ------------------------------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, arch) -> bool:
        try:
            self._position(arch)
        except ArchitectureNotInTableError:
            return False
        return True

    def _position(self, arch: Mapping[str, Any] | str) -> int:
        if isinstance(arch, str):
            if arch in self._names:
                return self._names[arch]
            from search_spaces.nas_bench_201 import nb201_string_to_arch   # NAS-Bench-201 strings only
            arch = nb201_string_to_arch(arch)
        if not isinstance(arch, Mapping):
            raise TypeError(f'an architecture is a {{label: value}} dict or a NAS-Bench-201 string, got '
                            f'{type(arch).__name__}')
        key = arch_key(arch)
        if key not in self._index:
            labels = sorted(self._groups[0][0]['architecture'])
            if sorted(arch) != labels:
                raise ArchitectureNotInTableError(f'architecture {dict(arch)} is not in the table: its labels '
                                                  f'{sorted(arch)} are not the table\'s {labels}')
            values = {label: sorted({str(g[0]['architecture'][label]) for g in self._groups}) for label in labels}
            odd = {label: arch[label] for label in labels if str(arch[label]) not in values[label]}
            detail = (f'values outside the table: {odd} (allowed: {values})' if odd
                      else f'the table holds {len(self)} architectures and this one was not trained (yet)')
            raise ArchitectureNotInTableError(f'architecture {dict(arch)} is not in the table; {detail}')
        return self._index[key]

    def query(self, arch: Mapping[str, Any] | str) -> TableEntry:
        """Test accuracy (mean over seeds), rank and percentile of ``arch``."""
        i = self._position(arch)
        group = self._groups[i]
        vals = [r['final'].get('val_acc') for r in group]
        acc = float(self.accuracies[i])
        return TableEntry(architecture=dict(group[0]['architecture']), name=group[0].get('name'), accuracy=acc,
                          val_accuracy=float(np.mean(vals)) if None not in vals else None,
                          seeds=tuple(r['seed'] for r in group),
                          per_seed_accuracy=tuple(r['final']['test_acc'] for r in group),
                          rank=int(self._rank[i]), percentile=self.percentile_of(acc),
                          params=group[0].get('params'), flops=group[0].get('flops'))

    def percentile_of(self, accuracy: float) -> float:
        """% of the table's architectures whose accuracy is <= ``accuracy``."""
        return float(100.0 * np.mean(self.accuracies <= accuracy + 1e-12))

    def best(self) -> TableEntry:
        return self.query(self._groups[int(np.argmax(self.accuracies))][0]['architecture'])

    @property
    def mean_accuracy(self) -> float:
        """The expected test accuracy of a uniformly random architecture."""
        return float(self.accuracies.mean())

    def architectures(self) -> list[dict[str, Any]]:
        return [dict(g[0]['architecture']) for g in self._groups]

    def quality(self) -> TableQuality:
        seeds: dict[int, int] = {}
        for row in self.rows:
            seeds[row['seed']] = seeds.get(row['seed'], 0) + 1
        seeds = dict(sorted(seeds.items()))
        first = list(seeds)[0]
        by_seed = [{r['seed']: r['final']['test_acc'] for r in g} for g in self._groups]
        first_accs = np.array([m[first] for m in by_seed if first in m])
        multi = [np.array(list(m.values())) for m in by_seed if len(m) > 1]
        spread_seeds = float(np.sqrt(np.mean([v.std(ddof=1) ** 2 for v in multi]))) if multi else None
        rho, pairs = None, 0
        if len(seeds) > 1:
            second = list(seeds)[1]
            both = [(m[first], m[second]) for m in by_seed if first in m and second in m]
            pairs = len(both)
            rho = spearman(*zip(*both)) if pairs >= 2 else None
        best = int(np.argmax(self.accuracies))
        return TableQuality(architectures=len(self), rows=len(self.rows), seeds=seeds,
                            mean_accuracy=self.mean_accuracy, best_accuracy=float(self.accuracies[best]),
                            best_name=self._groups[best][0].get('name'),
                            worst_accuracy=float(self.accuracies.min()),
                            spread_across_architectures=float(first_accs.std(ddof=1)) if len(first_accs) > 1 else 0.0,
                            spread_across_seeds=spread_seeds, spearman_seeds=rho, pairs=pairs,
                            mean_train_time_s=float(np.mean([r.get('train_time_s', 0.0) for r in self.rows])))

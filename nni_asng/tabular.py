"""Query a tabular benchmark built by ``nni-asng tabulate`` (numpy only; no NNI, no Lightning).

A tabular benchmark holds, for every architecture of a cell space and every seed it was trained with, the
per-epoch training, validation and test metrics of one fixed training recipe (the idea of NAS-Bench-201,
Dong & Yang 2020). A search's result is then looked up instead of retrained::

    from nni_asng.tabular import TabularBenchmark
    table = TabularBenchmark.load('experiments/results/tabular/nb201_fmnist')
    entry = table.query({'cell/0_1': 'conv_3x3', ...})          # or '|nor_conv_3x3~0|+|...|'
    entry.accuracy, entry.rank, entry.percentile                # mean test accuracy over seeds, 1 = best

The rows are the builder's ``table.jsonl`` (one JSON object per architecture and seed). A table built with
``tabular.equivalence`` holds one row per *functional equivalence class* and seed (``row['class']``, the
canonical form of :mod:`search_spaces.nas_bench_201_canonical`): a query maps any architecture of the space to
its class, and ranks and percentiles are over classes.
"""
from __future__ import annotations

import importlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = ['TabularBenchmark', 'TableEntry', 'ArchitectureNotInTableError', 'TableQuality', 'arch_key',
           'equivalence_function', 'read_rows', 'row_key', 'spearman', 'kendall_tau', 'split_half_reliability',
           'ROW_FILE']

ROW_FILE = 'table.jsonl'

# name -> (module, function) of an architecture's canonical form (imported only when a table uses it)
EQUIVALENCES = {'nas_bench_201': ('search_spaces.nas_bench_201_canonical', 'canonical_cell')}


class ArchitectureNotInTableError(KeyError):
    """An architecture the table has no row for."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else ''


def arch_key(arch: Mapping[str, Any]) -> str:
    """Canonical text of an architecture dict (sorted labels), the table's key."""
    return json.dumps({str(k): arch[k] for k in sorted(arch)}, sort_keys=True)


def equivalence_function(name: str) -> Callable[[Mapping[str, Any]], str]:
    """The canonical-form function of a named equivalence (architecture dict -> class text)."""
    if name not in EQUIVALENCES:
        raise ValueError(f'unknown equivalence {name!r}; known: {sorted(EQUIVALENCES)}')
    module, function = EQUIVALENCES[name]
    return getattr(importlib.import_module(module), function)


def row_key(row: Mapping[str, Any]) -> str:
    """What a row measures: its equivalence class, or (tables without classes) its architecture."""
    return row['class'] if row.get('class') is not None else arch_key(row['architecture'])


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


def split_half_reliability(values: np.ndarray, splits: int = 200, seed: int = 0) -> float:
    """Split-half reliability of the per-class mean over seeds, Spearman–Brown corrected.

    ``values`` is (classes, seeds). For every split of the seed columns into two halves (all splits when there
    are at most ``splits``, else ``splits`` random ones), Spearman's ρ between the classes' two half-means;
    the mean ρ is corrected to the full seed count with Spearman–Brown, ``2ρ / (1 + ρ)``. 1 means the table's
    ranking would not change with other seeds; 0, that it is noise.
    """
    values = np.asarray(values, float)
    if values.ndim != 2 or values.shape[1] < 2 or values.shape[0] < 3:
        raise ValueError(f'split-half reliability needs >= 3 classes and >= 2 seeds, got shape {values.shape}')
    k = values.shape[1]
    half = k // 2
    combos = math.comb(k, half)
    if combos <= splits:
        chosen = [list(c) for c in itertools.combinations(range(k), half)]
    else:
        rng = np.random.default_rng(seed)
        chosen = [sorted(rng.choice(k, size=half, replace=False).tolist()) for _ in range(splits)]
    rhos = []
    for first in chosen:
        second = [c for c in range(k) if c not in first]
        rho = spearman(values[:, first].mean(1), values[:, second].mean(1))
        if not math.isnan(rho):
            rhos.append(rho)
    if not rhos:
        return float('nan')
    rho = float(np.mean(rhos))
    return 2 * rho / (1 + rho) if rho > -1 else float('nan')


@dataclass(frozen=True)
class TableEntry:
    """One architecture (or its equivalence class) of the table: metrics averaged over its seeds."""

    architecture: dict[str, Any]     # the architecture trained (a class's representative)
    name: str | None                 # e.g. the NAS-Bench-201 string
    accuracy: float                  # final-epoch test accuracy, mean over seeds
    val_accuracy: float | None       # final-epoch validation accuracy, mean over seeds
    seeds: tuple[int, ...]
    per_seed_accuracy: tuple[float, ...]
    rank: int                        # 1 = best test accuracy
    percentile: float                # % of the table's entries (architectures or classes) with accuracy <= this
    params: int | None
    flops: int | None
    equivalence_class: str | None = None   # the canonical form, in tables built with classes
    members: int | None = None             # architectures of the space in that class
    measurements: dict[str, Any] | None = None   # further per-class measurements (e.g. latency)


@dataclass(frozen=True)
class TableQuality:
    """What says whether a table's ranking means something (printed by the builder)."""

    architectures: int                 # entries: architectures, or classes in a table built with classes
    rows: int
    seeds: dict[int, int]              # seed -> entries trained with it
    mean_accuracy: float               # = the expected accuracy of a uniformly random architecture
    best_accuracy: float
    best_name: str | None
    worst_accuracy: float
    spread_across_architectures: float  # std of the first seed's accuracies over entries
    spread_across_seeds: float | None   # RMS over entries of the std across seeds
    spearman_seeds: float | None        # first vs second seed, over the entries trained with both
    pairs: int
    mean_train_time_s: float
    classes: bool = False               # entries are equivalence classes
    reliability: float | None = None    # split-half (Spearman–Brown) over the entries with every seed
    reliability_above_chance: float | None = None   # the same among entries above chance
    reliability_entries: tuple[int, int] = (0, 0)   # (entries, of them above chance) that it was computed on
    reliability_seeds: int = 0
    chance: float | None = None

    def format(self) -> str:
        what = 'classes' if self.classes else 'architectures'
        lines = [f'{what}: {self.architectures} ({self.rows} rows; per seed: '
                 + ', '.join(f'seed {s}: {n}' for s, n in self.seeds.items()) + ')',
                 f'test accuracy: mean {100 * self.mean_accuracy:.2f}% (= a random architecture), best '
                 f'{100 * self.best_accuracy:.2f}% ({self.best_name}), worst {100 * self.worst_accuracy:.2f}%',
                 f'spread across {what} (std): {100 * self.spread_across_architectures:.2f} pp']
        if self.spread_across_seeds is not None:
            lines.append(f'spread across seeds (RMS std over {self.pairs} {what}): '
                         f'{100 * self.spread_across_seeds:.2f} pp')
            lines.append(f'Spearman rank correlation seed {list(self.seeds)[0]} vs seed {list(self.seeds)[1]}: '
                         f'{self.spearman_seeds:.3f}')
        if self.reliability is not None:
            n, above = self.reliability_entries
            lines.append(f'reliability of the mean over {self.reliability_seeds} seeds (split-half, Spearman-Brown): '
                         f'{self.reliability:.3f} over {n} {what} (target >= 0.8), '
                         + (f'{self.reliability_above_chance:.3f} over the {above} above chance (target >= 0.7)'
                            if self.reliability_above_chance is not None else f'{above} above chance'))
        lines.append(f'mean training time per row: {self.mean_train_time_s:.1f} s')
        return '\n'.join(lines)


class TabularBenchmark:
    """Architectures → trained accuracies (see the module docstring)."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], meta: Mapping[str, Any] | None = None):
        self.meta = dict(meta or {})
        self.rows = [dict(r) for r in rows]
        if not self.rows:
            raise ValueError('the table has no rows')
        self.equivalence = self.meta.get('equivalence')
        self._canonical = equivalence_function(self.equivalence) if self.equivalence else None
        self._classes: dict[str, dict[str, Any]] = dict(self.meta.get('classes') or {})
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows:
            grouped.setdefault(row_key(row), []).append(row)
        self._keys = list(grouped)
        self._groups = [sorted(grouped[k], key=lambda r: r['seed']) for k in self._keys]
        self._index = {k: i for i, k in enumerate(self._keys)}
        self._names = {g[0].get('name'): i for i, g in enumerate(self._groups) if g[0].get('name')}
        self.accuracies = np.array([np.mean([r['final']['test_acc'] for r in g]) for g in self._groups])
        self._weights = np.array([self._classes.get(k, {}).get('members', 1) for k in self._keys], float)
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

    def key_of(self, arch: Mapping[str, Any] | str) -> str:
        """The table's key of ``arch``: its equivalence class, or its canonical text in a table without classes."""
        if isinstance(arch, str):
            if arch in self._names:
                return self._keys[self._names[arch]]
            from search_spaces.nas_bench_201 import nb201_string_to_arch   # NAS-Bench-201 strings only
            arch = nb201_string_to_arch(arch)
        if not isinstance(arch, Mapping):
            raise TypeError(f'an architecture is a {{label: value}} dict or a NAS-Bench-201 string, got '
                            f'{type(arch).__name__}')
        labels = sorted(self._groups[0][0]['architecture'])
        if sorted(arch) != labels:
            raise ArchitectureNotInTableError(f'architecture {dict(arch)} is not in the table: its labels '
                                              f'{sorted(arch)} are not the table\'s {labels}')
        if self._canonical is not None:
            try:
                return self._canonical(arch)
            except ValueError as e:
                raise ArchitectureNotInTableError(f'architecture {dict(arch)} is not in the table: {e}') from None
        return arch_key(arch)

    def _position(self, arch: Mapping[str, Any] | str) -> int:
        key = self.key_of(arch)
        if key not in self._index:
            arch = dict(arch) if isinstance(arch, Mapping) else arch
            labels = sorted(self._groups[0][0]['architecture'])
            values = {label: sorted({str(r['architecture'][label]) for g in self._groups for r in g})
                      for label in labels}
            odd = ({label: arch[label] for label in labels if str(arch[label]) not in values[label]}
                   if isinstance(arch, dict) else {})
            what = f'class {key!r}' if self._canonical is not None else 'this one'
            detail = (f'values outside the table: {odd} (allowed: {values})' if odd
                      else f'the table holds {len(self)} entries and {what} was not trained (yet)')
            raise ArchitectureNotInTableError(f'architecture {arch} is not in the table; {detail}')
        return self._index[key]

    def query(self, arch: Mapping[str, Any] | str) -> TableEntry:
        """Test accuracy (mean over seeds), rank and percentile of ``arch`` (of its class, in a class table)."""
        return self._entry(self._position(arch))

    def _entry(self, i: int) -> TableEntry:
        group = self._groups[i]
        info = self._classes.get(self._keys[i], {})
        vals = [r['final'].get('val_acc') for r in group]
        acc = float(self.accuracies[i])
        representative = info.get('representative', group[0]['architecture'])
        return TableEntry(architecture=dict(representative), name=info.get('name', group[0].get('name')),
                          accuracy=acc, val_accuracy=float(np.mean(vals)) if None not in vals else None,
                          seeds=tuple(r['seed'] for r in group),
                          per_seed_accuracy=tuple(r['final']['test_acc'] for r in group),
                          rank=int(self._rank[i]), percentile=self.percentile_of(acc),
                          params=info.get('params', group[0].get('params')),
                          flops=info.get('flops', group[0].get('flops')),
                          equivalence_class=self._keys[i] if self._canonical is not None else None,
                          members=info.get('members'), measurements=info.get('measurements'))

    def percentile_of(self, accuracy: float) -> float:
        """% of the table's entries (architectures, or classes) whose accuracy is <= ``accuracy``."""
        return float(100.0 * np.mean(self.accuracies <= accuracy + 1e-12))

    def best(self) -> TableEntry:
        return self._entry(int(np.argmax(self.accuracies)))

    @property
    def mean_accuracy(self) -> float:
        """The expected test accuracy of a uniformly random architecture (classes weighted by their members)."""
        return float(np.average(self.accuracies, weights=self._weights))

    def architecture_accuracies(self) -> np.ndarray:
        """Every architecture of the space once: a class's accuracy repeated for each of its members (the
        entries themselves in a table without classes), the exact distribution of a uniformly random
        architecture that a search is tested against."""
        return np.repeat(self.accuracies, self._weights.astype(int))

    def architectures(self) -> list[dict[str, Any]]:
        """One architecture per entry (a class's representative)."""
        return [self._entry(i).architecture for i in range(len(self))]

    def quality(self, chance: float | None = None) -> TableQuality:
        """The table's quality figures; ``chance`` (default: the builder's ``meta['chance_accuracy']``) sets
        which entries count as above chance (accuracy > chance + 5 pp)."""
        chance = self.meta.get('chance_accuracy') if chance is None else chance
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
        reliability = above_reliability = None
        counted = (0, 0)
        complete = [i for i, m in enumerate(by_seed) if set(seeds) <= set(m)]
        if len(seeds) >= 2 and len(complete) >= 3:
            values = np.array([[by_seed[i][s] for s in seeds] for i in complete])
            reliability = split_half_reliability(values)
            above = values[values.mean(1) > (chance if chance is not None else 0.0) + 0.05]
            counted = (len(values), len(above))
            above_reliability = split_half_reliability(above) if len(above) >= 3 else None
        best = int(np.argmax(self.accuracies))
        return TableQuality(architectures=len(self), rows=len(self.rows), seeds=seeds,
                            mean_accuracy=self.mean_accuracy, best_accuracy=float(self.accuracies[best]),
                            best_name=self._entry(best).name,
                            worst_accuracy=float(self.accuracies.min()),
                            spread_across_architectures=float(first_accs.std(ddof=1)) if len(first_accs) > 1 else 0.0,
                            spread_across_seeds=spread_seeds, spearman_seeds=rho, pairs=pairs,
                            mean_train_time_s=float(np.mean([r.get('train_time_s', 0.0) for r in self.rows])),
                            classes=self._canonical is not None, reliability=reliability,
                            reliability_above_chance=above_reliability, reliability_entries=counted,
                            reliability_seeds=len(seeds), chance=chance)

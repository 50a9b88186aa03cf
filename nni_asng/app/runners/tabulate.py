"""``nni-asng tabulate CONFIG``: build a tabular benchmark of a cell space on real data.

Every architecture of the config's space (all choices categorical; at most ``tabular.max_architectures``)
is trained with the config's ``retrain`` recipe by :func:`nni_asng.app.runners.assembly.fit_fixed_network` — the code
``nni-asng retrain`` uses — on exactly the images a search of that config sees (the ``data.limit`` subset
drawn with ``data.subset_seed``, at ``data.resolution``). Per architecture and seed a row records the
training, validation (``tabular.validation`` held-out training images) and test (the official test split)
loss and accuracy of every epoch, the parameters, the FLOPs and the training time.

The first seed of ``tabular.seeds`` covers every architecture, the others a fixed random ``tabular.sample``
of them. With ``tabular.equivalence`` (e.g. ``nas_bench_201``), the unit of the table is a functional
equivalence class of architectures (:mod:`search_spaces.nas_bench_201_canonical`): one representative per class
(the member with the fewest operations) is trained, and the seeds beyond the first cover a ``tabular.sample`` of
the classes (all of them when it is null). ``tabular.reuse`` names a table built with the same space, data and
retrain recipe whose rows are taken over for the (architecture or class, seed) pairs it holds. Jobs run seed by seed, each seed's in a fixed shuffled order (so a partial table is a uniform sample,
and once the first seed is done every architecture can be looked up), in
``tabular.processes`` worker processes (one thread each). Rows are appended to ``table.jsonl`` one by one;
killed at any point, the next run with the same config continues where it stopped, and a row depends
only on (architecture, seed), never on what ran before or in parallel.
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from nni.mutable import Categorical

from ...evaluators.classification import EpochHistory
from ...model_size import count_flops, count_parameters
from ...tabular import ROW_FILE, TabularBenchmark, arch_key, equivalence_function, read_rows, row_key
from ..config.errors import ConfigError, UserError
from ..config.loading import dump_config
from ..config.registry import space_entry
from ..config.schema import ExperimentConfig
from . import tasks
from .assembly import fit_fixed_network, search_space, table_data, table_loaders, table_network
from .outputs import read_json, write_json
from .quiet import quiet_library_logs, quiet_warnings
from .runs import versions

__all__ = ['build_table', 'enumerate_architectures', 'plan_jobs', 'table_units', 'TableBuild', 'TableUnit']

META_FILE = 'meta.json'
_PLAN_SEED = 20261129          # fixes the job order and the sampled architectures of later seeds


@dataclass
class TableBuild:
    output: Path
    rows: int
    jobs: int
    done: bool
    wall_time: float


def enumerate_architectures(space, limit: int) -> list[dict[str, Any]]:
    """Every architecture of an all-categorical space, in a fixed order (labels sorted, values as declared)."""
    mutables = space.simplify()
    odd = {label: type(m).__name__ for label, m in mutables.items() if not isinstance(m, Categorical)}
    if odd:
        raise ConfigError(f'tabulate needs a space of categorical choices only; {odd} are not')
    labels = sorted(mutables)
    count = int(np.prod([len(mutables[label].values) for label in labels]))
    if count > limit:
        raise ConfigError(f'the space has {count:,} architectures, more than tabular.max_architectures={limit:,}; '
                          f'choose a smaller space (fewer operations) or raise the limit')
    return [dict(zip(labels, values)) for values in itertools.product(*(mutables[label].values for label in labels))]


def plan_jobs(n_architectures: int, seeds: Sequence[int], sample: int | None) -> list[tuple[int, int]]:
    """(architecture index, seed) of every job, in the fixed order the builder runs them: the first seed's
    jobs first (every architecture, shuffled), then each later seed's sampled architectures (shuffled)."""
    rng = np.random.default_rng(_PLAN_SEED)
    per_seed = [list(range(n_architectures))]
    for _ in seeds[1:]:
        per_seed.append(list(range(n_architectures)) if sample is None or sample >= n_architectures else
                        sorted(rng.choice(n_architectures, size=sample, replace=False).tolist()))
    return [(int(indices[k]), seed) for seed, indices in zip(seeds, per_seed)
            for k in rng.permutation(len(indices))]


@dataclass(frozen=True)
class TableUnit:
    """What one row measures: an architecture, or an equivalence class trained on its representative."""

    key: str                       # row_key of its rows
    index: int                     # the representative's index among the enumerated architectures
    architecture: dict[str, Any]
    members: list[int]             # indices of the architectures it stands for


def table_units(archs: Sequence[dict[str, Any]], equivalence: str | None) -> list[TableUnit]:
    """The architectures, or their equivalence classes in order of first member; a class's representative is
    its member with the fewest operations other than ``none`` (then the first)."""
    if equivalence is None:
        return [TableUnit(arch_key(a), i, a, [i]) for i, a in enumerate(archs)]
    canonical = equivalence_function(equivalence)
    classes: dict[str, list[int]] = {}
    for i, arch in enumerate(archs):
        classes.setdefault(canonical(arch), []).append(i)
    units = []
    for key, members in classes.items():
        rep = min(members, key=lambda i: (sum(v != 'none' for v in archs[i].values()), i))
        units.append(TableUnit(key, rep, archs[rep], members))
    return units


def _reused_rows(cfg: ExperimentConfig, units: Sequence[TableUnit], archs: Sequence[dict[str, Any]],
                 done: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Rows of the ``tabular.reuse`` table for the (unit, seed) pairs not ``done``: the representative's own
    row where it has one, else the first member's (by enumeration order)."""
    source = Path(cfg.tabular.reuse).expanduser()
    if not (source / ROW_FILE).is_file():
        raise UserError(f'tabular.reuse: no table at {source} (expected {source / ROW_FILE}); fix the path or '
                        f'remove tabular.reuse')
    differs = _recipe_differences(source / META_FILE, cfg, sections=('space', 'data', 'retrain'))
    if differs:
        raise UserError(f'tabular.reuse: {source} was built with another recipe (differs in: {", ".join(differs)}); '
                        f'its rows cannot be taken over')
    position = {arch_key(a): i for i, a in enumerate(archs)}
    unit_of = {i: u for u in units for i in u.members}
    seeds = set(cfg.tabular.seeds)
    best: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
    for row in read_rows(source / ROW_FILE)[0]:
        i = position.get(arch_key(row['architecture']))
        if i is None or row['seed'] not in seeds:
            continue
        unit = unit_of[i]
        pair = (unit.key, row['seed'])
        if pair in done:
            continue
        rank = -1 if i == unit.index else i
        if pair not in best or rank < best[pair][0]:
            best[pair] = (rank, row)
    taken = []
    for (key, _), (_, row) in best.items():
        taken.append({**row, 'class': key if cfg.tabular.equivalence else None, 'imported_from': source.name})
    return taken


# Settings that do not change a row's numbers (how fast or how verbosely it is computed).
# The seeds and the sample only say which rows are trained, never what a row holds: a table can grow by seeds.
_NOT_RECIPE = {'data': ('num_workers',), 'retrain': ('progress_bar', 'threads', 'seeds', 'device'),
               'tabular': ('processes', 'reuse', 'seeds', 'sample')}


def _recipe(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a row depends on: the space, the data and the training recipe (not the search settings)."""
    dump = cfg.model_dump(mode='json')
    return {section: {k: v for k, v in dump[section].items() if k not in _NOT_RECIPE.get(section, ())}
            for section in ('space', 'data', 'retrain', 'tabular')}


def _with_defaults(value: Any, default: Any) -> Any:
    """``value`` with the keys it lacks taken from ``default`` (settings added to nni-asng after it was written)."""
    if isinstance(value, dict) and isinstance(default, dict):
        return {**default, **{k: _with_defaults(v, default.get(k)) for k, v in value.items()}}
    return value


def _recipe_differences(meta: Path, cfg: ExperimentConfig,
                        sections: Sequence[str] = ('space', 'data', 'retrain', 'tabular')) -> list[str]:
    """The recipe sections in which the table described by ``meta`` differs from ``cfg`` (none if no meta)."""
    if not meta.is_file():
        return []
    new = {k: v for k, v in _recipe(cfg).items() if k in sections}
    old = read_json(meta).get('recipe') or {}
    defaults = ExperimentConfig.model_validate({'name': 'defaults', 'space': {'name': cfg.space.name},
                                                'strategy': {'name': cfg.strategy.name}})
    old = {section: _with_defaults(old.get(section), _recipe(defaults)[section]) for section in new}
    old = {section: {k: v for k, v in values.items() if k not in _NOT_RECIPE.get(section, ())}
           if isinstance(values, dict) else values for section, values in old.items()}
    return [k for k in new if old.get(k) != new.get(k)]


def _check_meta(out: Path, cfg: ExperimentConfig) -> None:
    changed = _recipe_differences(out / META_FILE, cfg)
    if changed:
        raise UserError(f'{out} holds a table built with another recipe (differs in: {", ".join(changed)}); '
                        f'use another --output, or the config it was built with ({out / META_FILE})')


def _class_records(cfg: ExperimentConfig, units: Sequence[TableUnit], info, space_name: str,
                   known: dict[str, Any]) -> dict[str, Any]:
    """Per class: its representative, name, number of members, parameters and FLOPs (of the representative, as
    trained), and ``measurements`` kept from earlier builds (room for per-class measurements such as latency)."""
    records = {}
    for unit in units:
        old = known.get(unit.key) or {}
        if old.get('representative') == unit.architecture and 'params' in old:
            records[unit.key] = {**old, 'members': len(unit.members)}
            continue
        network = table_network(cfg, unit.architecture, info, 0)
        records[unit.key] = {'representative': unit.architecture, 'name': _name(space_name, unit.architecture),
                             'members': len(unit.members), 'params': count_parameters(network),
                             'flops': count_flops(network, info.input_shape),
                             'measurements': old.get('measurements', {})}
    return records


def _name(space_name: str, arch: dict[str, Any]) -> str | None:
    if space_name in ('nas_bench_201', 'nasbench201', 'nb201'):
        from search_spaces.nas_bench_201 import arch_to_nb201_string  # loaded for NAS-Bench-201 tables only
        return arch_to_nb201_string(arch)
    return None


def _machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu)
    except OSError:
        pass
    text = f'{cpu}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}'
    if device == 'cuda':
        text += f', GPU {torch.cuda.get_device_name(0)}'
    return text


def build_table(cfg: ExperimentConfig, output: str | os.PathLike, *, processes: int | None = None,
                device: str | None = None, max_jobs: int | None = None,
                log: Callable[[str], None] = print) -> TableBuild:
    """Build (or continue) the table of ``cfg`` in ``output``; see the module docstring."""
    entry = space_entry(cfg.space.name)
    if entry.task != 'classification':
        raise ConfigError(f'tabulate builds classification tables; space {cfg.space.name!r} is {entry.task}')
    device = tasks.resolve_device(device or cfg.retrain.device)
    processes = processes or cfg.tabular.processes
    out = Path(output)
    _check_meta(out, cfg)
    train, _, _, info = table_data(cfg)
    space = search_space(cfg, info)
    archs = enumerate_architectures(space, cfg.tabular.max_architectures)
    units = table_units(archs, cfg.tabular.equivalence)
    jobs = plan_jobs(len(units), cfg.tabular.seeds, cfg.tabular.sample)

    out.mkdir(parents=True, exist_ok=True)
    rows_file = out / ROW_FILE
    rows, good = read_rows(rows_file)
    if rows_file.is_file() and rows_file.stat().st_size != good:
        with open(rows_file, 'r+b') as f:          # drop a line cut off by a kill
            f.truncate(good)
    done = {(row_key(r), r['seed']) for r in rows}
    planned = {(units[u].key, s) for u, s in jobs}
    if cfg.tabular.reuse:
        reused = [r for r in _reused_rows(cfg, units, archs, done) if (row_key(r), r['seed']) in planned]
        with open(rows_file, 'a', encoding='utf-8') as sink:
            for row in reused:
                sink.write(json.dumps(row) + '\n')
        if reused:
            log(f'tabulate: took over {len(reused)} rows of {cfg.tabular.reuse}')
        rows += reused
        done |= {(row_key(r), r['seed']) for r in reused}
    todo = [(u, s) for u, s in jobs if (units[u].key, s) not in done]
    if max_jobs is not None:
        todo = todo[:max_jobs]
    meta = read_json(out / META_FILE) if (out / META_FILE).is_file() else {
        'created': time.strftime('%Y-%m-%d %H:%M:%S'), 'recipe': _recipe(cfg), 'config_yaml': dump_config(cfg)}
    meta.setdefault('sessions', []).append({'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'device': device,
                                            'processes': processes, 'machine': _machine(device),
                                            'versions': versions(), 'rows_before': len(rows)})
    meta.update(seeds=list(cfg.tabular.seeds), sample=cfg.tabular.sample)    # of the latest build
    meta.update(architectures=len(archs), jobs=len(jobs), train_images=len(train),
                labels=sorted(archs[0]) if archs else [], chance_accuracy=1.0 / info.num_classes)
    if cfg.tabular.equivalence:
        meta.update(equivalence=cfg.tabular.equivalence, classes=_class_records(cfg, units, info, entry.name,
                                                                                meta.get('classes') or {}))
    write_json(out / META_FILE, meta)
    what = f'{len(units)} classes of {len(archs)} architectures' if cfg.tabular.equivalence else \
        f'{len(archs)} architectures'
    log(f'tabulate: {what} of {cfg.space.name}, seeds {cfg.tabular.seeds} '
        f'({len(jobs)} trainings; {len(jobs) - len([1 for u, s in jobs if (units[u].key, s) not in done])} done, '
        f'{len(todo)} to run now) on {device}, {processes} process(es); '
        f'{len(train)} training images at {info.input_shape[1]}x{info.input_shape[2]}')

    started = time.time()
    finished = 0
    work = [(units[u].index, units[u].architecture, s) for u, s in todo]
    key_of = {u.index: u.key for u in units}
    context = multiprocessing.get_context('spawn')
    with context.Pool(processes, initializer=_init_worker, initargs=(cfg.model_dump(mode='json'), cfg.source,
                                                                      device)) as pool, \
            open(rows_file, 'a', encoding='utf-8') as sink:
        for row in pool.imap_unordered(_train_job, work):
            row['name'] = _name(entry.name, row['architecture'])
            if cfg.tabular.equivalence:
                row['class'] = key_of[row['index']]
            sink.write(json.dumps(row) + '\n')
            sink.flush()
            os.fsync(sink.fileno())
            finished += 1
            if finished == len(work) or finished % max(1, len(work) // 50) == 0:
                elapsed = time.time() - started
                eta = elapsed / finished * (len(work) - finished)
                log(f'  {len(rows) + finished}/{len(jobs)} rows  ({elapsed / 60:.1f} min, ~{eta / 60:.0f} min left)')
    wall = time.time() - started
    meta = read_json(out / META_FILE)
    meta['sessions'][-1].update(finished=time.strftime('%Y-%m-%d %H:%M:%S'), rows_after=len(rows) + finished,
                                wall_time_s=wall)
    write_json(out / META_FILE, meta)
    total = len(rows) + finished
    if total >= 2:
        log(TabularBenchmark.load(out).quality().format())
    return TableBuild(out, total, len(jobs), total == len(jobs), wall)


# ---------------------------------------------------------------------------------------------- workers
_WORKER: dict[str, Any] = {}


def _init_worker(cfg_dump: dict, source: str | None, device: str) -> None:
    torch.set_num_threads(1)
    quiet_library_logs()               # a fresh process: Lightning would print its banner for every row
    cfg = ExperimentConfig.model_validate(cfg_dump)
    cfg.source = source
    with quiet_warnings():
        _WORKER.update(cfg=cfg, device=device, data=table_data(cfg))


def _train_job(job: tuple[int, dict[str, Any], int]) -> dict[str, Any]:
    index, arch, seed = job
    cfg, device = _WORKER['cfg'], _WORKER['device']
    train, val, test, info = _WORKER['data']
    with quiet_warnings():
        network = table_network(cfg, arch, info, seed)
        params = count_parameters(network)
        flops = count_flops(network, info.input_shape)
        loaders = table_loaders(cfg, train, val, test)
        history = EpochHistory()
        started = time.process_time(), time.time()
        fit_fixed_network(cfg, network, loaders[0], {'val': loaders[1], 'test': loaders[2]}, device=device,
                          callbacks=[history], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          default_root_dir=None)
    cpu, wall = time.process_time() - started[0], time.time() - started[1]
    keys = ('train_loss', 'train_acc', 'val_loss', 'val_acc', 'test_loss', 'test_acc')
    epochs = [{'epoch': e['epoch'], **{k: e[k] for k in keys if k in e}} for e in history.epochs]
    return {'index': index, 'architecture': arch, 'seed': seed, 'params': params, 'flops': flops,
            'epochs': epochs, 'final': epochs[-1] if epochs else {}, 'train_time_s': round(wall, 2),
            'train_cpu_s': round(cpu, 2), 'device': device}

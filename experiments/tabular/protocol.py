"""Search protocol on a tabular benchmark: every strategy searches the table's supernet, the table scores it.

Every strategy searches the same supernet (the table config's space) on the table's training images (its
config's ``data`` section: the D_x / D_θ halves of the same ``data.limit`` images the table's architectures
were trained on) with the same budget of weight steps (``--epochs``; NNI's DARTS too). MultiComplexity
trains the weights for ``--epochs`` (its ``weight_epochs``) and then updates θ alone for
``--mc-theta-epochs`` (default: ``--epochs``, as many θ updates as the others make); its ε = 0
architecture (the smallest ε of ``architectures.json``) is scored. ``random`` is pure random sampling:
one uniformly random architecture of the space per seed, no search (not NNI's RandomOneShot, which is
``random_one_shot``). The exported architecture of each (strategy, seed) is looked up in the table
instead of being retrained. Printed per strategy:

* table test accuracy of the exported architecture (mean ± std, median), regret to the table's best (pp)
  and percentile (median), how many exports the table does not hold (yet: a partial table);
* search wall and CPU time (the search process's CPU time, one torch thread);
* one-sided Mann–Whitney U tests (H1: the strategy's accuracies are stochastically larger) against the
  ``random`` seeds and against the table itself (every architecture of the table once: the exact
  distribution of a uniformly random architecture's accuracy);
* Kendall's τ between the supernet's accuracy and the table's over a fixed random sample of the space's
  architectures (``--kendall-archs``; those the table holds), each evaluated with the trained supernet's weights (path
  activation, BatchNorm on batch statistics as during the search) on the first ``--kendall-batches``
  D_θ batches. Only path-sampling supernets (ours, NNI's RandomOneShot) can run one architecture; DARTS
  and GumbelDARTS mix all operations and get no τ.

Files under ``--output`` (default experiments/results/tabular/protocol/)::

    runs/<strategy>/seed<k>/search/       the search's output folder (nni-asng search)
    runs/<strategy>/seed<k>/result.json   the cached result of this (strategy, seed); an interrupted
                                          protocol continues with the jobs that have none
    runs/<strategy>/seed<k>/log.txt       everything the search printed
    results.txt, results.json             the table above (JSON: with every seed's record)
    anytime.png                           the current argmax's table accuracy against search time

The anytime curve (advantagenas Figure 4) uses the argmax architecture of every epoch (``history.json``),
placed at the epoch's share of the search's CPU (``--clock cpu``) or wall time; the line is the median over
seeds, the band the 25–75 % range. NNI's strategies record no history: one marker at their final export.

Example (a quick check; the full run is ``--seeds 10 --epochs 10 --jobs 2``)::

    nice -n 5 python experiments/tabular/protocol.py --strategies asng,random --seeds 2 --epochs 2 \\
        --output /tmp/protocol_check

Uses only nni_asng.app (run_search, the config and registry, the task's data and module) and
nni_asng.tabular: the searches are ``nni-asng search`` runs, and nothing else trains a network.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TABLE = REPO / 'experiments' / 'results' / 'tabular' / 'nb201_fmnist_classes'
DEFAULT_OUTPUT = REPO / 'experiments' / 'results' / 'tabular' / 'protocol_classes'

OURS = ('asng', 'sng', 'pdas', 'advantage_nas', 'reinforce', 'multi_complexity')
RANDOM = 'random'
RANDOM_ONE_SHOT = 'random_one_shot'
NNI = ('darts', 'gumbel_darts', RANDOM_ONE_SHOT)
STRATEGIES = OURS + NNI + (RANDOM,)
#: Supernets that can run one given architecture (path sampling); DARTS-style ones mix every operation.
PATH_SAMPLING = OURS + (RANDOM_ONE_SHOT, 'proxyless')
DISPLAY = {'asng': 'ASNG', 'sng': 'SNG', 'pdas': 'PDAS', 'advantage_nas': 'AdvantageNAS', 'reinforce': 'Reinforce',
           'multi_complexity': 'MultiComplexity (ε=0)', 'darts': 'DARTS (NNI)', 'gumbel_darts': 'GumbelDARTS (NNI)',
           RANDOM_ONE_SHOT: 'RandomOneShot (NNI)', 'proxyless': 'Proxyless (NNI)', RANDOM: 'random architecture'}
KENDALL_SEED = 20261129          # fixes the permutation of the space from which the τ sample is drawn
RESULT = 'result.json'


# ---------------------------------------------------------------------------------------------- statistics
def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    order = np.argsort(values, kind='mergesort')
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1, dtype=float)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """One-sided Mann–Whitney U test of H1 "x is stochastically larger than y": (U of x, p-value).

    Exact (the permutation distribution of the tie-averaged rank sum, counted by dynamic programming) for
    up to 200 values, else the normal approximation with tie and continuity correction.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    ranks = _ranks(np.concatenate([x, y]))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    if n <= 200:
        doubled = np.rint(2 * ranks).astype(int)                 # tie-averaged ranks are multiples of 1/2
        observed = int(doubled[:n1].sum())
        top = int(np.sort(doubled)[-n1:].sum())
        ways = np.zeros((n1 + 1, top + 1))                       # ways[k, s]: k of the ranks summing to s
        ways[0, 0] = 1.0
        for r in doubled:
            ways[1:, r:] = ways[1:, r:] + ways[:-1, :top + 1 - r]
        total = ways[n1].sum()
        return u, float(ways[n1, observed:].sum() / total)
    _, counts = np.unique(ranks, return_counts=True)
    ties = float((counts ** 3 - counts).sum())
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return u, 1.0
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    return u, 0.5 * math.erfc(z / math.sqrt(2))


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    if not len(a):
        return {'n': 0, 'mean': None, 'std': None, 'median': None}
    return {'n': int(len(a)), 'mean': float(a.mean()), 'std': float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            'median': float(np.median(a))}


# ---------------------------------------------------------------------------------------------- files
def _plain(obj: Any) -> Any:
    """JSON-safe: tuples as lists, numpy scalars as Python numbers, NaN/inf as null."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        json.dump(_plain(obj), f, indent=1, default=str, allow_nan=False)
    os.replace(tmp, path)
    return path


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding='utf-8'))


@contextlib.contextmanager
def _output_to(path: Path):
    """Send everything written to this process's stdout and stderr (NNI's and Lightning's messages too) to
    ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, 'a', encoding='utf-8') as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


# ---------------------------------------------------------------------------------------------- configs
def base_config_text(table: Path, config: Path | None) -> str:
    """The YAML the searches start from: ``--config``, or the config the table was built with."""
    if config is not None:
        return Path(config).read_text(encoding='utf-8')
    meta = table / 'meta.json'
    if not meta.is_file() or 'config_yaml' not in _read_json(meta):
        raise SystemExit(f'{table} has no meta.json with the config it was built with; pass --config')
    return _read_json(meta)['config_yaml']


def check_against_table(cfg, table: Path) -> None:
    """The searches must see the table's space and images (the recipe the table's meta.json records)."""
    meta = table / 'meta.json'
    recipe = _read_json(meta).get('recipe') if meta.is_file() else None
    if not recipe:
        return
    dump = cfg.model_dump(mode='json')
    for section in ('space', 'data'):
        built = recipe.get(section) or {}
        # settings the table's recipe does not record (speed-only ones, later additions) are not compared
        differ = {k: (dump[section][k], v) for k, v in built.items() if k in dump[section] and dump[section][k] != v}
        if differ:
            raise SystemExit(f'the config\'s {section} section differs from the one the table in {table} was built '
                             f'with (config, table): {differ}')


def search_overrides(strategy: str, seed: int, epochs: int, mc_theta_epochs: int) -> list[str]:
    """``--set``-style overrides that turn the table's config into this (strategy, seed) search."""
    overrides = [f'strategy.name={strategy}', 'strategy.args={}', f'seed={seed}', f'search.epochs={epochs}',
                 'search.progress_bar=false', 'search.threads=1',
                 # no mid-search checkpoints, but the final state is saved (for the supernet's τ)
                 f'search.checkpoint_every_n_steps={10 ** 9}']
    if strategy == 'multi_complexity':
        overrides[1] = f'strategy.args={{weight_epochs: {epochs}, theta_epochs: {mc_theta_epochs}}}'
        overrides[3] = f'search.epochs={epochs + mc_theta_epochs}'
    return overrides


def settings_digest(base_text: str, extra: Sequence[str], epochs: int, mc_theta_epochs: int,
                    strategy_args: Mapping[str, str] | None = None) -> str:
    """What a cached search result depends on: the config, the overrides, the budget and the strategy's
    effective arguments (:func:`strategy_arguments`: a changed default makes its cached results stale, unless
    ``--set`` overrides it). The Kendall settings are recorded, not compared."""
    text = json.dumps({'config': base_text, 'set': list(extra), 'epochs': epochs, 'mc_theta_epochs': mc_theta_epochs,
                       **({'defaults': dict(strategy_args)} if strategy_args is not None else {})})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def strategy_arguments(strategy: str, user_args: Mapping[str, Any] = ()) -> dict[str, str]:
    """The strategy's constructor arguments (as text) as a search uses them: its defaults, overridden by the
    ``strategy.args`` that ``--set`` gives."""
    import inspect
    from nni_asng.app import strategy_entry
    defaults = {name: repr(p.default) for name, p in strategy_entry(strategy).parameters().items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **{name: repr(value) for name, value in dict(user_args).items()}}


def space_architectures(cfg) -> list[dict[str, Any]]:
    """Every architecture of the config's space, in the table builder's fixed order."""
    from nni_asng.app.runners import assembly
    from nni_asng.app.runners.tabulate import enumerate_architectures
    with _quiet():
        space = assembly.search_space(cfg, assembly.search_data(cfg).info)
    return enumerate_architectures(space, 10 ** 7)


def _quiet():
    """nni-asng's warning filter with every warning off."""
    from nni_asng.app import quiet_warnings
    return quiet_warnings(categories=(Warning,))


def random_architecture(archs: Sequence[Mapping[str, Any]], seed: int) -> dict[str, Any]:
    """Pure random sampling: a uniformly random architecture of the space for ``seed``."""
    return dict(archs[int(np.random.default_rng([seed, 7]).integers(len(archs)))])


def kendall_sample(archs: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
    """The first ``count`` architectures of a fixed permutation of the space (not of the table: a search run
    while the table is still being built evaluates the same ones; τ is computed over those the table holds)."""
    order = np.random.default_rng(KENDALL_SEED).permutation(len(archs))
    return [dict(archs[i]) for i in order[:max(count, 0)]]


# ---------------------------------------------------------------------------------------------- one job
def run_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """One (strategy, seed) search, its export, its history and its supernet's accuracies; writes result.json.

    Runs in a worker process (or in-process with ``--jobs 1``); everything the search prints goes to log.txt.
    """
    import torch

    from nni_asng.app import SearchInterrupted
    torch.set_num_threads(1)
    folder = Path(job['folder'])
    started = time.time()
    try:
        with _output_to(folder / 'log.txt'):
            record = _search_and_evaluate(job)
    except BaseException as err:  # noqa: BLE001 - reported, and the job runs again next time
        failure = {'strategy': job['strategy'], 'seed': job['seed'], 'error': f'{type(err).__name__}: {err}'[:2000],
                   'traceback': traceback.format_exc()[-4000:], 'wall_s': time.time() - started}
        _write_json(folder / 'failed.json', failure)
        if isinstance(err, (KeyboardInterrupt, SearchInterrupted, SystemExit)):   # Ctrl-C, SIGTERM: stop the protocol
            raise
        return {'ok': False, 'folder': str(folder), **failure}
    record['job_wall_s'] = time.time() - started
    _write_json(folder / RESULT, record)
    with contextlib.suppress(FileNotFoundError):
        (folder / 'failed.json').unlink()
    return {'ok': True, **record}


def _search_and_evaluate(job: Mapping[str, Any]) -> dict[str, Any]:
    from nni_asng.app import parse_config, run_search
    strategy, seed, folder = job['strategy'], int(job['seed']), Path(job['folder'])
    overrides = search_overrides(strategy, seed, job['epochs'], job['mc_theta_epochs']) + list(job['set'])
    cfg = parse_config(job['config_text'], source=job['config_source'], overrides=overrides)
    out = folder / 'search'
    _warm_up(cfg)
    cpu0 = time.process_time()
    result = run_search(cfg, out, overwrite=True, log=print)
    cpu = time.process_time() - cpu0
    summary = _read_json(out / 'summary.json')
    history = _read_json(out / 'history.json') if (out / 'history.json').is_file() else []
    exports: list[dict[str, Any]] = []
    if strategy == 'multi_complexity':
        rows = _read_json(result.architecture_file)['architectures']
        exports = [{'epsilon': r['epsilon'], 'params': r.get('params'), 'architecture': r['architecture']}
                   for r in rows]
        architecture = min(rows, key=lambda r: r['epsilon'])['architecture']
    else:
        architecture = result.architectures[0]
    per_epoch = []
    for h in history:
        archs = h.get('architectures') or []
        if not archs:
            continue
        # MultiComplexity lists one argmax per ε, smallest network first; ε = 0 (no size penalty) is the largest.
        per_epoch.append({'epoch': h['epoch'], 'step': h['step'], 'architecture': archs[-1]})
    record = {'strategy': strategy, 'seed': seed, 'settings': job['settings'], 'architecture': architecture,
              'exports': exports, 'history': per_epoch,
              'search': {'wall_s': result.wall_time, 'cpu_s': cpu, 'steps': summary.get('global_step'),
                         'epochs': summary.get('epochs'), 'device': summary.get('device')}}
    record['supernet'] = None
    if strategy in PATH_SAMPLING and job['kendall_archs']:
        record['supernet'] = supernet_accuracies(cfg, out, job['kendall_archs'], job['kendall_batches'])
    if not job.get('keep_checkpoints'):
        with contextlib.suppress(FileNotFoundError):
            (out / 'checkpoints' / 'last.ckpt').unlink()
    return record


def _warm_up(cfg) -> None:
    """Import what ``run_search`` imports lazily and read the dataset, so that the first search of a worker
    process is not charged for them in its CPU time."""
    import matplotlib.pyplot  # noqa: F401
    import nni.nas.experiment  # noqa: F401
    import pytorch_lightning.callbacks  # noqa: F401
    import pytorch_lightning.loggers  # noqa: F401
    from nni_asng.app import space_entry, strategy_entry
    from nni_asng.app.runners import assembly, plots, stopping, tasks  # noqa: F401
    with _quiet():
        entry = space_entry(cfg.space.name)
        entry.load_class()
        strategy_entry(cfg.strategy.name).load_class()
        assembly.search_data(cfg)                     # reads (and caches) the dataset


def supernet_accuracies(cfg, out: Path, archs: Sequence[Mapping[str, Any]], batches: int) -> dict[str, Any]:
    """Accuracy and loss of each architecture evaluated with the weights of the search's final supernet.

    The supernet is rebuilt as the search built it (:func:`nni_asng.app.build_search`, then the strategy's
    mutation of the space), its weights are loaded from ``checkpoints/last.ckpt``, and each architecture is activated (``activate(arch)``: every
    path-sampling supermodule runs that path) and evaluated on the first ``batches`` D_θ batches, in
    training mode (BatchNorm on batch statistics, as in the search's θ steps) under ``no_grad``.
    """
    import torch
    import torch.nn.functional as F
    from nni_asng.app.runners import assembly

    started, cpu_started = time.time(), time.process_time()
    with _quiet():
        parts = assembly.build_search(cfg)
        supernet = parts.strategy.mutate_model(parts.space)
        module = parts.strategy.configure_oneshot_module(assembly.search_module(parts))
    data, device = parts.data, parts.device
    module.set_model(supernet)
    state = torch.load(out / 'checkpoints' / 'last.ckpt', map_location='cpu', weights_only=False)
    module.load_state_dict(state['state_dict'])
    module.to(device)
    module.train()
    evaluate = list(_first_batches(data.val, batches, device))

    def activate(arch):
        if hasattr(module, 'activate'):
            module.activate(dict(arch))
        else:
            for m in module.supernet_modules():
                m.resample(memo=dict(arch))

    accuracies, losses = [], []
    with torch.no_grad():
        for arch in archs:
            activate(arch)
            correct = count = 0
            loss = 0.0
            for x, y in evaluate:
                logits = module.training_module(x)
                logits = logits[0] if isinstance(logits, (tuple, list)) else logits
                correct += int((logits.argmax(-1) == y).sum())
                loss += float(F.cross_entropy(logits, y, reduction='sum'))
                count += len(y)
            accuracies.append(correct / max(count, 1))
            losses.append(loss / max(count, 1))
    return {'architectures': [dict(a) for a in archs], 'accuracy': accuracies, 'loss': losses,
            'batches': len(evaluate), 'images': sum(len(y) for _, y in evaluate), 'time_s': time.time() - started,
            'cpu_s': time.process_time() - cpu_started}


def _first_batches(loader, count: int, device: str) -> Iterable:
    for i, (x, y) in enumerate(loader):
        if i >= count:
            break
        yield x.to(device), y.to(device)


# ---------------------------------------------------------------------------------------------- the plan
def plan(args, base_text: str, archs, user_args: Mapping[str, Mapping[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(jobs to run, cached records) for the requested strategies and seeds; ``user_args``: the ``strategy.args``
    that ``--set`` gives each strategy."""
    settings = {'epochs': args.epochs, 'mc_theta_epochs': args.mc_theta_epochs,
                'set': list(args.set), 'kendall_archs': args.kendall_archs, 'kendall_batches': args.kendall_batches}
    digests = {s: settings_digest(base_text, args.set, args.epochs, args.mc_theta_epochs,
                                  None if s == RANDOM else strategy_arguments(s, user_args[s]))
               for s in args.strategies}
    sample = kendall_sample(archs, args.kendall_archs)
    jobs, cached, stale = [], [], []
    for seed in range(args.seeds):                     # seed-major: a partial run covers every strategy
        for strategy in args.strategies:
            folder = args.output / 'runs' / strategy / f'seed{seed}'
            if (folder / RESULT).is_file():
                record = _read_json(folder / RESULT)
                if strategy != RANDOM and record.get('settings', {}).get('digest') != digests[strategy]:
                    stale.append(str(folder))
                else:
                    cached.append(record)
                continue
            if strategy == RANDOM:
                record = {'strategy': RANDOM, 'seed': seed, 'settings': {'digest': None},
                          'architecture': random_architecture(archs, seed), 'exports': [], 'history': [],
                          'search': {'wall_s': 0.0, 'cpu_s': 0.0, 'steps': 0, 'epochs': 0}, 'supernet': None}
                _write_json(folder / RESULT, record)
                cached.append(record)
                continue
            jobs.append({'strategy': strategy, 'seed': seed, 'folder': str(folder), 'config_text': base_text,
                         'config_source': str(args.config or (args.table / 'meta.json')), 'set': list(args.set),
                         'epochs': args.epochs, 'mc_theta_epochs': args.mc_theta_epochs,
                         'settings': {**settings, 'digest': digests[strategy]},
                         'kendall_archs': sample, 'kendall_batches': args.kendall_batches,
                         'keep_checkpoints': args.keep_checkpoints})
    if stale:
        raise SystemExit(f'{len(stale)} cached result(s) under {args.output} were made with other settings (config, '
                         f'--set, --epochs, --mc-theta-epochs or a strategy default), e.g. {stale[0]}; use another --output, or delete '
                         'them')
    return jobs, cached


def run_jobs(jobs: list[dict], n_jobs: int, log: Callable[[str], None]) -> list[dict]:
    done: list[dict] = []

    def report(res: dict) -> None:
        done.append(res)
        where = f"{res['strategy']} seed {res['seed']}"
        if res['ok']:
            s = res['search']
            log(f'  [{len(done)}/{len(jobs)}] {where}: search {s["wall_s"]:.0f} s wall, {s["cpu_s"]:.0f} s CPU '
                f'({s["steps"]} steps); job {res["job_wall_s"]:.0f} s')
        else:
            log(f'  [{len(done)}/{len(jobs)}] {where} FAILED: {res["error"][:300]} (see {res["folder"]})')

    if n_jobs <= 1:
        for job in jobs:
            report(run_job(job))
        return done
    context = multiprocessing.get_context('spawn')
    with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        try:
            for future in cf.as_completed(futures):
                report(future.result())
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise
    return done


# ---------------------------------------------------------------------------------------------- the report
def _lookup(table, arch):
    from nni_asng.tabular import ArchitectureNotInTableError
    try:
        return table.query(arch)
    except ArchitectureNotInTableError:
        return None


def _curve(record: dict, table, clock: str) -> list[tuple[float, float]]:
    """(search time, table accuracy) of each epoch's argmax; the time is the epoch's share of the search."""
    history = record.get('history') or []
    total_time = record['search']['cpu_s' if clock == 'cpu' else 'wall_s']
    points = []
    if history:
        last = max(h['step'] for h in history) or 1
        for h in history:
            entry = _lookup(table, h['architecture'])
            if entry is not None:
                points.append((total_time * h['step'] / last, entry.accuracy))
    return points


def _finite(value: float) -> float | None:
    """None for an undefined τ (e.g. a supernet that gives every architecture the same accuracy)."""
    return float(value) if math.isfinite(value) else None


def regret_pp(best_accuracy: float, accuracy: float) -> float:
    """Regret of an export in percentage points: the table's best accuracy minus the export's (>= 0)."""
    return 100 * (best_accuracy - accuracy)


def p_values(strategy: str, accuracies: Sequence[float], random_accuracies: Sequence[float],
             random_one_shot_accuracies: Sequence[float], table_accuracies: Sequence[float]) -> dict[str, float | None]:
    """One-sided Mann–Whitney p-values of H1 "the strategy's exports are more accurate than ...": the ``random``
    seeds' exports, the RandomOneShot seeds' exports, every architecture of the table. A small p: better than
    that sample. None where a sample is empty or it is the strategy itself (random has no p against random;
    neither random nor RandomOneShot a p against RandomOneShot)."""
    def greater(other: Sequence[float]) -> float | None:
        return mann_whitney_greater(accuracies, other)[1] if len(accuracies) and len(other) else None

    return {'p_vs_random': greater(random_accuracies) if strategy != RANDOM else None,
            'p_vs_table': greater(table_accuracies),
            'p_vs_random_one_shot': (greater(random_one_shot_accuracies)
                                     if strategy not in (RANDOM, RANDOM_ONE_SHOT) else None)}


def supernet_statistics(accuracy: Sequence[float], loss: Sequence[float],
                        truth: Sequence[float]) -> dict[str, float | int | None]:
    """The supernet against the table over the same architectures (aligned lists; >= 2 of them): Kendall's τ
    of the supernet's accuracy vs the table's (``tau``) and of its −loss vs the table's (``tau_loss``), and
    ``supernet_best``: the table accuracy of the architecture the supernet scores best (highest accuracy,
    ties broken by the lower loss), what a perfect θ optimiser on this supernet would export."""
    from nni_asng.tabular import kendall_tau
    neg_loss = [-v for v in loss]
    return {'tau': _finite(kendall_tau(accuracy, truth)), 'tau_loss': _finite(kendall_tau(neg_loss, truth)),
            'supernet_best': truth[max(range(len(accuracy)), key=lambda i: (accuracy[i], neg_loss[i]))],
            'architectures': len(truth)}


def build_report(records: list[dict], table, strategies: Sequence[str], seeds: int, clock: str) -> dict[str, Any]:
    best = table.best()
    quality = table.quality()
    by_strategy: dict[str, list[dict]] = {s: [] for s in strategies}
    for r in records:
        if r['strategy'] in by_strategy and r['seed'] < seeds:
            by_strategy[r['strategy']].append(r)
    rows: dict[str, Any] = {}
    def table_accuracies(strategy: str) -> list[float]:
        return [e.accuracy for e in (_lookup(table, r['architecture']) for r in by_strategy.get(strategy, []))
                if e is not None]

    random_accs, random_one_shot_accs = table_accuracies(RANDOM), table_accuracies(RANDOM_ONE_SHOT)
    for strategy, recs in by_strategy.items():
        recs.sort(key=lambda r: r['seed'])
        seeds_out = []
        for r in recs:
            entry = _lookup(table, r['architecture'])
            tau = None
            sup = r.get('supernet')
            if sup:
                triples = [(acc, loss, e.accuracy) for acc, loss, arch
                           in zip(sup['accuracy'], sup['loss'], sup['architectures'])
                           if (e := _lookup(table, arch)) is not None]      # those the table holds (yet)
                if len(triples) >= 2:
                    tau = {**supernet_statistics(*zip(*triples)), 'images': sup['images'], 'time_s': sup['time_s']}
            seeds_out.append({'seed': r['seed'], 'architecture': r['architecture'],
                              'name': entry.name if entry else None, 'in_table': entry is not None,
                              'accuracy': entry.accuracy if entry else None,
                              'regret_pp': regret_pp(best.accuracy, entry.accuracy) if entry else None,
                              'rank': entry.rank if entry else None,
                              'percentile': entry.percentile if entry else None,
                              'search_wall_s': r['search']['wall_s'], 'search_cpu_s': r['search']['cpu_s'],
                              'steps': r['search'].get('steps'), 'kendall': tau,
                              'curve': _curve(r, table, clock)})
        accs = [s['accuracy'] for s in seeds_out if s['in_table']]
        taus = [s['kendall']['tau'] for s in seeds_out if s['kendall'] and s['kendall']['tau'] is not None]
        rows[strategy] = {
            'seeds': len(seeds_out), 'not_in_table': sum(not s['in_table'] for s in seeds_out),
            'accuracy': _summary(accs),
            'regret_pp': _summary([s['regret_pp'] for s in seeds_out if s['in_table']]),
            'percentile': _summary([s['percentile'] for s in seeds_out if s['in_table']]),
            'search_wall_s': _summary([s['search_wall_s'] for s in seeds_out]),
            'search_cpu_s': _summary([s['search_cpu_s'] for s in seeds_out]),
            **p_values(strategy, accs, random_accs, random_one_shot_accs, table.architecture_accuracies()),
            'kendall_tau': _summary(taus),
            'supernet_best': _summary([s['kendall']['supernet_best'] for s in seeds_out if s['kendall']]),
            'kendall_architectures': _summary([s['kendall']['architectures'] for s in seeds_out if s['kendall']]),
            'per_seed': seeds_out,
        }
    return {'table': {'architectures': len(table), 'rows': quality.rows, 'best_accuracy': best.accuracy,
                      'best_name': best.name, 'mean_accuracy': table.mean_accuracy,
                      'worst_accuracy': quality.worst_accuracy, 'complete': _table_complete(table)},
            'clock': clock, 'strategies': rows}


def _table_complete(table) -> bool | None:
    n = len(table.meta['classes']) if table.meta.get('classes') else table.meta.get('architectures')
    return None if n is None else len(table) >= n


def _fmt(stat: dict, scale: float = 1.0, digits: int = 2, std: bool = True) -> str:
    if stat['mean'] is None:
        return '-'
    text = f"{scale * stat['mean']:.{digits}f}"
    return text + (f" ± {scale * stat['std']:.{digits}f}" if std else '')


def format_report(report: dict, settings: dict) -> str:
    t = report['table']
    lines = [f"table: {t['architectures']} architectures ({t['rows']} rows{'' if t['complete'] else ', PARTIAL'}); "
             f"best {100 * t['best_accuracy']:.2f}% ({t['best_name']}), mean {100 * t['mean_accuracy']:.2f}% "
             f"(= a random architecture), worst {100 * t['worst_accuracy']:.2f}%",
             f"search: {settings['epochs']} epoch(s) of weight steps per strategy (MultiComplexity: + "
             f"{settings['mc_theta_epochs']} θ-only), seeds 0..{settings['seeds'] - 1}; Kendall τ over "
             f"{settings['kendall_archs']} table architectures x {settings['kendall_batches']} D_θ batches", '']
    header = (f"{'strategy':<22} {'n':>3} {'miss':>4}  {'test acc % (mean ± std)':>23} {'median':>7} "
              f"{'regret pp':>9} {'pct med':>7} {'wall s':>7} {'CPU s':>7} {'p(>rand)':>8} {'p(>ROS)':>7} "
              f"{'p(>table)':>9} {'Kendall τ':>13} {'sup-best':>8}")
    lines += [header, '-' * len(header)]
    for strategy, row in report['strategies'].items():
        acc = row['accuracy']
        p_r, p_o, p_t = ('-' if row.get(key) is None else f"{row[key]:.3f}"
                         for key in ('p_vs_random', 'p_vs_random_one_shot', 'p_vs_table'))
        tau = _fmt(row['kendall_tau'], digits=2) if row['kendall_tau']['n'] else '-'
        sup = row['supernet_best']
        sup_best = _fmt({**sup, 'mean': sup['median']}, 100, std=False) if sup['n'] else '-'
        lines.append(f"{DISPLAY.get(strategy, strategy):<22} {row['seeds']:>3} {row['not_in_table']:>4}  "
                     f"{_fmt(acc, 100):>23} {_fmt({**acc, 'mean': acc['median']}, 100, std=False):>7} "
                     f"{_fmt(row['regret_pp'], std=False):>9} "
                     f"{_fmt({**row['percentile'], 'mean': row['percentile']['median']}, digits=1, std=False):>7} "
                     f"{_fmt(row['search_wall_s'], digits=0, std=False):>7} "
                     f"{_fmt(row['search_cpu_s'], digits=0, std=False):>7} {p_r:>8} {p_o:>7} {p_t:>9} {tau:>13} "
                     f"{sup_best:>8}")
    lines += ['', 'n: seeds done; miss: exports the table does not hold (yet); regret: table best - accuracy (mean); '
              'pct med: median percentile in the table; wall/CPU s: mean search time; p(>rand), p(>ROS), p(>table): '
              'one-sided Mann-Whitney U against the random seeds / the RandomOneShot seeds / every architecture of '
              'the table; Kendall τ: supernet vs table accuracy (mean ± std over seeds); sup-best: median table '
              'accuracy of the architecture the trained supernet scores best in the τ sample (what a perfect θ '
              'optimiser on that supernet would export).']
    return '\n'.join(lines)


def plot_anytime(report: dict, path: Path, clock: str) -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    t = report['table']
    ax.axhline(100 * t['best_accuracy'], color='black', lw=1, ls='--', label='table best')
    ax.axhline(100 * t['mean_accuracy'], color='grey', lw=1, ls=':', label='random architecture (table mean)')
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    drawn = False
    for i, (strategy, row) in enumerate(report['strategies'].items()):
        if strategy == RANDOM:
            continue
        color = colors[i % len(colors)]
        curves = [s['curve'] for s in row['per_seed'] if s['curve']]
        if curves:
            end = max(c[-1][0] for c in curves)
            grid = np.linspace(0, end, 200)
            values = np.full((len(curves), len(grid)), np.nan)
            for k, curve in enumerate(curves):
                times = np.array([p[0] for p in curve])
                accs = np.array([p[1] for p in curve])
                idx = np.searchsorted(times, grid, side='right') - 1      # the argmax of the last finished epoch
                values[k, idx >= 0] = 100 * accs[idx[idx >= 0]]
            enough = np.sum(~np.isnan(values), axis=0) >= max(1, len(curves) / 2)
            if enough.any():
                with np.errstate(all='ignore'), _quiet():
                    median = np.nanmedian(values[:, enough], axis=0)
                    low, high = np.nanpercentile(values[:, enough], [25, 75], axis=0)
                ax.plot(grid[enough], median, color=color, drawstyle='steps-post',
                        label=f'{DISPLAY.get(strategy, strategy)} ({len(curves)} seeds)')
                ax.plot(grid[enough][[0, -1]], median[[0, -1]], 'o', color=color, ms=4)
                ax.fill_between(grid[enough], low, high, color=color, alpha=0.2, lw=0, step='post')
                drawn = True
        else:
            final = [(s['search_cpu_s' if clock == 'cpu' else 'search_wall_s'], 100 * s['accuracy'])
                     for s in row['per_seed'] if s['in_table']]
            if final:
                times, accs = np.array(final).T
                q = np.percentile(accs, [25, 50, 75])
                ax.errorbar([np.median(times)], [q[1]], yerr=[[q[1] - q[0]], [q[2] - q[1]]], fmt='o', color=color,
                            capsize=3, label=f'{DISPLAY.get(strategy, strategy)}: final export ({len(final)} seeds)')
                drawn = True
    if not drawn:
        ax.text(0.5, 0.5, 'no export of a search is in the table (yet)', transform=ax.transAxes, ha='center')
    ax.set_xlim(left=0)
    ax.set_xlabel(f'search {"CPU" if clock == "cpu" else "wall-clock"} time (s)')
    ax.set_ylabel('table test accuracy of the argmax architecture (%)')
    ax.set_title('anytime performance on the tabular benchmark (median over seeds, band: 25-75 %)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='lower right')
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--table', type=Path, default=DEFAULT_TABLE,
                   help='tabular benchmark folder (table.jsonl, meta.json)')
    p.add_argument('--config', type=Path, default=None,
                   help='config the searches start from (default: the one the table was built with, from meta.json)')
    p.add_argument('--output', type=Path, default=DEFAULT_OUTPUT)
    p.add_argument('--epochs', type=int, default=10, help='epochs of weight steps, the same for every strategy')
    p.add_argument('--mc-theta-epochs', type=int, default=None,
                   help='MultiComplexity θ-only epochs after its --epochs weight epochs (default: --epochs)')
    p.add_argument('--seeds', type=int, default=10, help='seeds 0..N-1 per strategy')
    p.add_argument('--strategies', default=','.join(STRATEGIES),
                   help=f'comma-separated subset of {",".join(STRATEGIES)}')
    p.add_argument('--jobs', type=int, default=1, help='searches in parallel (worker processes, one thread each)')
    p.add_argument('--kendall-archs', type=int, default=100,
                   help='table architectures evaluated with each trained supernet (0: no Kendall τ)')
    p.add_argument('--kendall-batches', type=int, default=8, help='D_θ batches per evaluated architecture')
    p.add_argument('--clock', choices=('cpu', 'wall'), default='cpu', help='time axis of the anytime plot')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='extra config override for every search (as nni-asng --set), e.g. search.device=cuda')
    p.add_argument('--keep-checkpoints', action='store_true', help="keep each search's checkpoints/last.ckpt")
    p.add_argument('--report-only', action='store_true', help='run nothing; report the cached results')
    args = p.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(',') if s.strip()]
    unknown = [s for s in args.strategies if s not in STRATEGIES]
    if unknown:
        p.error(f'unknown strategies {unknown}; choose from {", ".join(STRATEGIES)}')
    if args.epochs < 1 or args.seeds < 1 or args.jobs < 1:
        p.error('--epochs, --seeds and --jobs must be >= 1')
    if args.mc_theta_epochs is None:
        args.mc_theta_epochs = args.epochs
    return args


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    args = parse_args(argv)
    from nni_asng.app import parse_config
    from nni_asng.tabular import TabularBenchmark

    table = TabularBenchmark.load(args.table)
    base_text = base_config_text(args.table, args.config)
    source = str(args.config or args.table / 'meta.json')
    cfg, user_args = None, {}
    for strategy in args.strategies:             # fail fast: --set must be valid for every strategy searched
        if strategy != RANDOM:
            own = search_overrides(strategy, 0, args.epochs, args.mc_theta_epochs)
            cfg = parse_config(base_text, source=source, overrides=own + list(args.set))
            protocol_args = parse_config(base_text, source=source, overrides=own).strategy.args
            user_args[strategy] = {k: v for k, v in cfg.strategy.args.items()      # what --set adds or changes
                                   if k not in protocol_args or protocol_args[k] != v}
    if cfg is None:
        cfg = parse_config(base_text, source=source, overrides=args.set)
    check_against_table(cfg, args.table)
    archs = space_architectures(cfg)
    settings = {'table': str(args.table), 'epochs': args.epochs, 'mc_theta_epochs': args.mc_theta_epochs,
                'seeds': args.seeds, 'strategies': args.strategies, 'kendall_archs': args.kendall_archs,
                'kendall_batches': args.kendall_batches, 'set': args.set, 'space_architectures': len(archs)}
    jobs, cached = plan(args, base_text, archs, user_args)
    log(f'protocol: {len(archs)} architectures in the space, {len(table)} in the table; {len(cached)} result(s) '
        f'ready, {0 if args.report_only else len(jobs)} search(es) to run with {args.jobs} job(s) -> {args.output}')
    records = list(cached)
    if jobs and not args.report_only:
        started = time.time()
        done = run_jobs(jobs, args.jobs, log)
        records += [r for r in done if r['ok']]
        failed = [r for r in done if not r['ok']]
        log(f'searches done in {time.time() - started:.0f} s' + (f'; {len(failed)} FAILED (they run again next time)'
                                                                 if failed else ''))
    table = TabularBenchmark.load(args.table)             # it may have grown meanwhile
    report = build_report(records, table, args.strategies, args.seeds, args.clock)
    report['settings'] = settings
    text = format_report(report, settings)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / 'results.txt').write_text(text + '\n', encoding='utf-8')
    _write_json(args.output / 'results.json', report)
    plot = plot_anytime(report, args.output / 'anytime.png', args.clock)
    log(text)
    log(f'written: {args.output / "results.txt"}, {args.output / "results.json"}, {plot}')
    return report


if __name__ == '__main__':
    main()

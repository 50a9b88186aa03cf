"""Budgets judged on a tabular benchmark: constrained searches and latency fronts against the table's ground truth
(results: experiments/README.md, "Budgets judged on the class table").

Three steps, each resumable (a finished search keeps its result.json, a timed entry its line; run again to go on):

``latency``
    Every entry of the table (a class's representative in a class table) timed on this CPU with
    ``nni_asng.oneshot.latency`` (one input of the data's shape, one thread, interleaved rounds, the 10th
    percentile; chunks of 15 scaled by a reference network timed in each), and its parameter count:
    ``<output>/latency.jsonl`` (the table's own files are left alone: the builder owns them).
``constrained``
    ``--strategies`` x three budgets (the 25th, 50th and 75th percentile of the latency column) x ``--seeds``
    searches with ``strategy.args.budget = {metric: latency_ms, max: B}``; per (strategy, budget): median regret
    (pp) to the table's best entry within B, the share of exports within B by the latency column (target
    100 %), against random sampling within B (one uniformly random entry within B per seed).
``front``
    One multi-complexity search over latency per seed (``--epsilons``), its exports placed by the table (accuracy)
    and the latency column, against the table's Pareto front: hypervolume ratio (reference point: the table's
    largest latency and lowest accuracy; target >= 0.95); against N constrained ASNG searches at the latency
    column's quantiles k/(N + 1) sharing the multi-complexity search's epochs, weight and θ stages together
    (their CPU time is reported beside it), and against N uniformly random entries.

Example (the run of experiments/README.md: the class table, 10 seeds; about 15 minutes on two cores). Latency is
measured at each search's start too, so nothing else should run on the machine meanwhile (a loaded machine
makes every network slower than the latency column says, and a tight budget then fails as unreachable)::

    python experiments/tabular/budgets.py latency
    python experiments/tabular/budgets.py constrained --strategies asng --seeds 10 --jobs 2
    python experiments/tabular/budgets.py front --seeds 10 --jobs 2

The searches are ``nni-asng search`` runs through ``protocol.py``'s job runner (same data, space and settings as
the protocol; no Kendall τ); only nni_asng's public functions are used.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol  # noqa: E402

DEFAULT_OUTPUT = protocol.REPO / 'experiments' / 'results' / 'tabular' / 'budgets_classes'
PERCENTILES = (25, 50, 75)
CHUNK = 15


# ---------------------------------------------------------------------------------------------- latency column
def latency_column(args, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Time every entry of the table not timed yet; returns key -> {latency_ms, spread, params}."""
    from nni_asng.app import parse_config
    from nni_asng.app.runners import assembly
    from nni_asng.model_size import count_parameters
    from nni_asng.oneshot.latency import LatencyOptions, materialise, time_interleaved
    from nni_asng.tabular import TabularBenchmark

    table = TabularBenchmark.load(args.table)
    path = args.output / 'latency.jsonl'
    done = read_latency(path)
    if args.measure:
        cfg = parse_config(protocol.base_config_text(args.table, args.config), source=str(args.table))
        with protocol._quiet():
            info = assembly.search_data(cfg).info
            space = assembly.search_space(cfg, info)
        shape = tuple(info.input_shape)
        options = LatencyOptions(threads=1)
        entries = table.architectures()
        todo = [a for a in entries if table.key_of(a) not in done][:args.limit]
        reference = materialise(space.freeze(entries[0]), shape)
        first = None
        path.parent.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            nets = [materialise(space.freeze(a), shape) for a in chunk]
            timings = time_interleaved([reference, *nets], shape, options, seed=start)
            first = timings[0].ms if first is None else first
            scale = first / timings[0].ms                  # the reference's drift since the first chunk
            with path.open('a', encoding='utf-8') as f:
                for arch, net, timing in zip(chunk, nets, timings[1:]):
                    row = {'key': table.key_of(arch), 'architecture': arch, 'latency_ms': timing.ms * scale,
                           'spread': timing.spread, 'params': count_parameters(net)}
                    done[row['key']] = row
                    f.write(json.dumps(row) + '\n')
            log(f'  timed {min(start + CHUNK, len(todo))}/{len(todo)} entries')
    return done


def read_latency(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding='utf-8').splitlines() if line.strip()]
    return {r['key']: r for r in rows}


def ground_truth(table, latency: dict[str, dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(key, latency_ms, accuracy) of every entry that is timed."""
    out = []
    for arch in table.architectures():
        key = table.key_of(arch)
        if key in latency:
            out.append((key, float(latency[key]['latency_ms']), float(table.query(arch).accuracy)))
    return out


# ---------------------------------------------------------------------------------------------- figures
def hypervolume(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by (latency, accuracy) points (lower latency, higher accuracy better) up to ``reference``
    (the worst latency and accuracy): ∫ max(0, best accuracy among points with latency <= t − acc_ref) dt."""
    lat_ref, acc_ref = reference
    pts = sorted((min(lat, lat_ref), acc) for lat, acc in points)
    area, best = 0.0, acc_ref
    for i, (lat, acc) in enumerate(pts):
        best = max(best, acc)
        right = pts[i + 1][0] if i + 1 < len(pts) else lat_ref
        area += max(0.0, right - lat) * (best - acc_ref)
    return area


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (latency, accuracy) points, fastest first."""
    front, best = [], -np.inf
    for lat, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((lat, acc))
            best = acc
    return front


# ---------------------------------------------------------------------------------------------- searches
def make_job(args, strategy: str, seed: int, name: str, extra: Sequence[str], epochs: int) -> dict[str, Any]:
    base = protocol.base_config_text(args.table, args.config)
    folder = args.output / 'runs' / name / f'seed{seed}'
    settings = protocol.settings_digest(base, list(extra) + list(args.set), epochs, args.mc_theta_epochs)
    return {'strategy': strategy, 'seed': seed, 'folder': str(folder), 'epochs': epochs,
            'mc_theta_epochs': args.mc_theta_epochs, 'set': list(extra) + list(args.set), 'config_text': base,
            'config_source': str(args.config or args.table / 'meta.json'), 'settings': settings,
            'kendall_archs': [], 'kendall_batches': 0, 'keep_checkpoints': False, 'name': name}


def run(jobs: list[dict], args, log) -> dict[str, dict]:
    """name/seed -> result record; cached results with the same settings are reused."""
    results, todo = {}, []
    for job in jobs:
        cached = Path(job['folder']) / protocol.RESULT
        record = protocol._read_json(cached) if cached.is_file() else None
        if record is not None and record.get('settings') == job['settings']:
            results[f"{job['name']}/{job['seed']}"] = record
        else:
            todo.append(job)
    log(f'{len(jobs) - len(todo)} searches cached, {len(todo)} to run')
    protocol.run_jobs(todo, args.jobs, log)
    for job in todo:
        cached = Path(job['folder']) / protocol.RESULT
        if cached.is_file():
            results[f"{job['name']}/{job['seed']}"] = protocol._read_json(cached)
    return results


def budget_overrides(limit: float) -> list[str]:
    return [f'strategy.args.budget={{metric: latency_ms, max: {limit:.6g}}}']


def constrained(args, truth, table, log) -> dict[str, Any]:
    lats = np.array([t[1] for t in truth])
    budgets = {p: float(np.percentile(lats, p)) for p in PERCENTILES}
    jobs = [make_job(args, s, seed, f'{s}_p{p}', budget_overrides(b), args.epochs)
            for s in args.strategies for p, b in budgets.items() for seed in range(args.seeds)]
    results = run(jobs, args, log)
    by_key = {k: (lat, acc) for k, lat, acc in truth}
    report = {'budgets_ms': budgets, 'rows': []}
    for p, b in budgets.items():
        feasible = [(k, acc) for k, lat, acc in truth if lat <= b]
        best = max(acc for _, acc in feasible)
        rng = np.random.default_rng(p)
        random_regret = [protocol.regret_pp(best, feasible[int(rng.integers(len(feasible)))][1])
                         for _ in range(args.seeds)]
        report['rows'].append({'strategy': 'random within budget', 'percentile': p, 'budget_ms': b,
                               'median_regret_pp': float(np.median(random_regret)), 'within_share': 1.0,
                               'seeds': args.seeds})
        for s in args.strategies:
            regrets, within, cpu = [], [], []
            for seed in range(args.seeds):
                record = results.get(f'{s}_p{p}/{seed}')
                if record is None:
                    continue
                key = table.key_of(record['architecture'])
                if key not in by_key:
                    continue                     # not in the table (yet) or not timed
                lat, acc = by_key[key]
                regrets.append(protocol.regret_pp(best, acc))
                within.append(lat <= b)
                cpu.append(record['search']['cpu_s'])
            report['rows'].append({'strategy': s, 'percentile': p, 'budget_ms': b, 'seeds': len(regrets),
                                   'median_regret_pp': float(np.median(regrets)) if regrets else None,
                                   'within_share': float(np.mean(within)) if within else None,
                                   'cpu_s_median': float(np.median(cpu)) if cpu else None})
    return report


def front(args, truth, table, log) -> dict[str, Any]:
    n = len(args.epsilons)
    lats = np.array([t[1] for t in truth])
    reference = (float(lats.max()), float(min(t[2] for t in truth)))
    true_hv = hypervolume([(lat, acc) for _, lat, acc in truth], reference)
    mc = [make_job(args, 'multi_complexity', seed, 'front_multi_complexity',
                   ['strategy.args.complexity=latency_ms', f'strategy.args.epsilons={list(args.epsilons)}'],
                   args.epochs) for seed in range(args.seeds)]
    # N searches sharing the multi-complexity search's epochs (weights + θ): at least its CPU time in all
    each = max(1, round((args.epochs + args.mc_theta_epochs) / n))
    quantiles = [float(np.quantile(lats, (k + 1) / (n + 1))) for k in range(n)]
    separate = [make_job(args, 'asng', seed, f'front_asng_q{k}', budget_overrides(b), each)
                for k, b in enumerate(quantiles) for seed in range(args.seeds)]
    results = run(mc + separate, args, log)
    by_key = {k: (lat, acc) for k, lat, acc in truth}

    def place(archs) -> list[tuple[float, float]]:
        keys = [table.key_of(a) for a in archs]
        return [by_key[k] for k in keys if k in by_key]

    ratios: dict[str, list[float]] = {'multi_complexity': [], 'separate_asng': [], 'random': []}
    cpu: dict[str, list[float]] = {'multi_complexity': [], 'separate_asng': []}
    exports: dict[str, list[list[tuple[float, float]]]] = {'multi_complexity': [], 'separate_asng': []}
    for seed in range(args.seeds):
        record = results.get(f'front_multi_complexity/{seed}')
        if record is not None:
            exports['multi_complexity'].append(place([e['architecture'] for e in record['exports']]))
            ratios['multi_complexity'].append(hypervolume(exports['multi_complexity'][-1], reference) / true_hv)
            cpu['multi_complexity'].append(record['search']['cpu_s'])
        records = [results.get(f'front_asng_q{k}/{seed}') for k in range(n)]
        if all(r is not None for r in records):
            exports['separate_asng'].append(place([r['architecture'] for r in records]))
            ratios['separate_asng'].append(hypervolume(exports['separate_asng'][-1], reference) / true_hv)
            cpu['separate_asng'].append(sum(r['search']['cpu_s'] for r in records))
        rng = np.random.default_rng([seed, 23])
        picks = [truth[int(i)] for i in rng.choice(len(truth), size=n, replace=False)]
        ratios['random'].append(hypervolume([(lat, acc) for _, lat, acc in picks], reference) / true_hv)
    return {'reference': reference, 'true_front': pareto_front([(lat, acc) for _, lat, acc in truth]),
            'epsilons': list(args.epsilons), 'separate_budgets_ms': quantiles, 'separate_epochs': each,
            'hypervolume_ratio': {k: {'median': float(np.median(v)) if v else None, 'values': v}
                                  for k, v in ratios.items()},
            'cpu_s_median': {k: float(np.median(v)) if v else None for k, v in cpu.items()},
            'exports': exports}


def plot_front(path: Path, truth, report: dict[str, Any]) -> Path:
    """Every table entry, the true Pareto front and every seed's exports in the latency–accuracy plane."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    working = [(lat, acc) for _, lat, acc in truth if acc > report['reference'][1] + 0.05]
    ax.scatter(*zip(*[(lat, 100 * acc) for lat, acc in working]), s=10, color='0.75', label='table entries')
    front = report['true_front']
    ax.step([lat for lat, _ in front], [100 * acc for _, acc in front], where='post', color='k',
            label='true Pareto front')
    styles = {'multi_complexity': ('o', 'tab:red', 'MultiComplexity (one search)'),
              'separate_asng': ('s', 'tab:blue', f"{len(report['epsilons'])} constrained ASNG searches")}
    for kind, (marker, color, label) in styles.items():
        points = [p for seed in report['exports'][kind] for p in seed]
        if points:
            ax.scatter(*zip(*[(lat, 100 * acc) for lat, acc in points]), marker=marker, facecolors='none',
                       edgecolors=color, s=60, label=f'{label}: exports of {len(report["exports"][kind])} seeds')
    ax.set_xlabel('latency on this CPU (ms, one image, one thread)')
    ax.set_ylabel('table test accuracy (%)')
    ax.set_title('latency fronts against the table (above-chance entries)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='lower right')
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('step', choices=('latency', 'constrained', 'front'))
    p.add_argument('--table', type=Path, default=protocol.DEFAULT_TABLE)
    p.add_argument('--config', type=Path, default=None, help='default: the config the table was built with')
    p.add_argument('--output', type=Path, default=DEFAULT_OUTPUT)
    p.add_argument('--seeds', type=int, default=10)
    p.add_argument('--epochs', type=int, default=10, help='weight epochs of every search')
    p.add_argument('--mc-theta-epochs', type=int, default=None, help='multi-complexity θ epochs (default: --epochs)')
    p.add_argument('--strategies', default='asng,sng,pdas,advantage_nas,reinforce')
    p.add_argument('--epsilons', type=float, nargs='+', default=[0.0, 0.5, 1.0, 2.0])
    p.add_argument('--jobs', type=int, default=1)
    p.add_argument('--limit', type=int, default=None, help='latency: time at most this many entries now')
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    args = p.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(',') if s.strip()]
    args.mc_theta_epochs = args.epochs if args.mc_theta_epochs is None else args.mc_theta_epochs
    args.measure = args.step == 'latency'
    return args


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    from nni_asng.tabular import TabularBenchmark
    args = parse_args(argv)
    table = TabularBenchmark.load(args.table)
    latency = latency_column(args, log)
    truth = ground_truth(table, latency)
    log(f'{len(truth)} of {len(table)} table entries have a latency')
    if args.step == 'latency':
        return {'timed': len(truth)}
    if len(truth) < len(table):
        log('warning: some entries have no latency yet; they are left out of the ground truth')
    report = constrained(args, truth, table, log) if args.step == 'constrained' else front(args, truth, table, log)
    protocol._write_json(args.output / f'{args.step}.json', report)
    if args.step == 'front':
        log(f"written: {plot_front(args.output / 'front.png', truth, report)}")
    log(json.dumps(report, indent=1, default=str)[:4000])
    return report


if __name__ == '__main__':
    main()

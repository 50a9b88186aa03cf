"""Search quality per unit of search time on real data (Fashion-MNIST by default; CIFAR-10 with --data-root).

Every strategy searches the same space (the ENAS cell space, CPU-sized: C=8, 5 cells) with the same budget
(``--epochs`` over ``--limit`` training examples split into D_x / D_θ halves, batch ``--batch``); NNI's DARTS
gets the same budget but a wall-clock cap (``--darts-max-minutes``: its dense supernet costs ~50 single-path
steps per step on this space, see step_cost.py) and the table says how much of the budget it completed.
NNI's RandomOneShot trains its supernet for the same budget and exports a random architecture (its
documented behaviour). Each found architecture is retrained from scratch with the same short recipe
(``--retrain-*``) and tested; ``--random`` architectures drawn uniformly from the space are retrained the
same way (the RANDOM row of pdas Table 1). Searches and retrains run in ``--jobs`` worker processes.

Search cost is reported as wall time and as the search process's CPU time: on a shared machine the
CPU time is the fairer measure of the work (each process uses 1 torch thread). Both exclude the time
spent evaluating the argmax architecture every ``--eval-every`` steps for the convergence plot
(``convergence.py --from <this JSON>``).

Example (≈ 60–90 min on 2 shared cores)::

    python experiments/benchmarks/search_quality.py --jobs 2
    python experiments/benchmarks/search_quality.py --dataset cifar10 --data-root /data/cifar10 --device cuda
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import math
import multiprocessing
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import search_common as sc  # noqa: E402
from common import DISPLAY  # noqa: E402

import numpy as np  # noqa: E402

SEARCHERS = ('asng', 'pdas', 'advantage_nas', 'reinforce', 'darts', 'random_one_shot')


# ---------------------------------------------------------------------------------------------- tasks
def _init_worker(threads):
    import torch
    if threads:
        os.environ['OMP_NUM_THREADS'] = str(threads)
        torch.set_num_threads(int(threads))


def task_search(name: str, seed: int, cfg_dict: dict) -> dict:
    cfg = sc.SearchConfig(**cfg_dict)
    try:
        return {'ok': True, **sc.run_search(name, seed, cfg)}
    except BaseException as err:  # noqa: BLE001 - reported in the table
        return {'ok': False, 'strategy': name, 'seed': seed, 'error': f'{type(err).__name__}: {err}'[:300],
                'traceback': traceback.format_exc()[-3000:]}


def task_retrain(label: str, arch: dict, seed: int, rcfg_dict: dict, scfg_dict: dict) -> dict:
    try:
        out = sc.retrain(arch, seed, sc.RetrainConfig(**rcfg_dict), sc.SearchConfig(**scfg_dict))
        return {'ok': True, 'label': label, 'architecture': arch, **out}
    except BaseException as err:  # noqa: BLE001
        return {'ok': False, 'label': label, 'seed': seed, 'architecture': arch,
                'error': f'{type(err).__name__}: {err}'[:300], 'traceback': traceback.format_exc()[-3000:]}


# ---------------------------------------------------------------------------------------------- summary
def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    a = np.asarray(values, float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def summarise(searches: list[dict], retrains: list[dict], strategies: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in strategies:
        runs = [s for s in searches if s['strategy'] == name]
        ok = [s for s in runs if s['ok']]
        accs = [r['test_acc'] for r in retrains if r['ok'] and r['label'] == name]
        params = [r['params'] for r in retrains if r['ok'] and r['label'] == name]
        acc, sd = mean_std(accs)
        final = [s['trajectory'][-1] for s in ok if s['trajectory']]
        rows.append({
            'key': name, 'method': DISPLAY[name] + (' (random export)' if name == 'random_one_shot' else ''),
            'searches': f'{len(ok)}/{len(runs)}',
            'search_cpu_min': mean_std([s['search_cpu_s'] / 60 for s in ok])[0],
            'search_wall_min': mean_std([s['search_wall_s'] / 60 for s in ok])[0],
            'budget_done': mean_std([s['steps'] / s['planned_steps'] for s in ok if s['planned_steps']])[0],
            'acc_mean': acc, 'acc_std': sd, 'n_acc': len(accs), 'params_k': mean_std(params)[0] / 1e3 if params else math.nan,
            'final_entropy': mean_std([p['entropy'] for p in final if p.get('entropy') is not None])[0],
            'argmax_supernet_acc': mean_std([p['acc'] for p in final if 'acc' in p])[0],
            'errors': '; '.join(sorted({s['error'] for s in runs if not s['ok']} |
                                       {r['error'] for r in retrains if not r['ok'] and r['label'] == name})),
        })
    accs = [r['test_acc'] for r in retrains if r['ok'] and r['label'] == 'random']
    params = [r['params'] for r in retrains if r['ok'] and r['label'] == 'random']
    acc, sd = mean_std(accs)
    rows.append({'key': 'random', 'method': 'RANDOM (uniform archs, no search)', 'searches': '-',
                 'search_cpu_min': 0.0, 'search_wall_min': 0.0, 'budget_done': math.nan, 'acc_mean': acc,
                 'acc_std': sd, 'n_acc': len(accs), 'params_k': mean_std(params)[0] / 1e3 if params else math.nan,
                 'final_entropy': math.nan, 'argmax_supernet_acc': math.nan,
                 'errors': '; '.join(sorted({r['error'] for r in retrains if not r['ok'] and r['label'] == 'random'}))})
    return rows


def welch_t(a: list[float], b: list[float]) -> float:
    if len(a) < 2 or len(b) < 2:
        return math.nan
    ma, mb = np.mean(a), np.mean(b)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    return float((ma - mb) / math.sqrt(va + vb)) if va + vb > 0 else math.nan


def targets(rows: list[dict], retrains: list[dict]) -> list[dict[str, Any]]:
    by = {r['key']: r for r in rows}
    accs = {k: [r['test_acc'] for r in retrains if r['ok'] and r['label'] == k] for k in by}
    out = []
    for ours in ('asng', 'advantage_nas'):
        if ours not in by:
            continue
        o = by[ours]
        t = welch_t(accs[ours], accs.get('random', []))
        out.append({'target': f'{DISPLAY[ours]} beats RANDOM', 'ours': o['acc_mean'], 'other': by['random']['acc_mean'],
                    'met': _yes(o['acc_mean'] > by['random']['acc_mean']),
                    'note': f'Welch t = {t:.2f} (|t| > ~2.5 would be significant with these n)'})
        for nni_key in ('darts', 'random_one_shot'):
            if nni_key not in by or math.isnan(by[nni_key]['acc_mean']):
                continue
            n = by[nni_key]
            t = welch_t(accs[ours], accs[nni_key])
            acc_ok = o['acc_mean'] >= n['acc_mean'] - (n['acc_std'] if n['n_acc'] > 1 else 0.0)
            time_ok = o['search_cpu_min'] < n['search_cpu_min']
            out.append({'target': f'{DISPLAY[ours]} matches/beats {DISPLAY[nni_key]} at less search time',
                        'ours': o['acc_mean'], 'other': n['acc_mean'], 'met': _yes(acc_ok and time_ok),
                        'note': f'accuracy within 1 std or better: {_yes(acc_ok)} (Welch t = {t:.2f}); '
                                f'search CPU {o["search_cpu_min"]:.1f} vs {n["search_cpu_min"]:.1f} min'
                                + ('' if n['budget_done'] >= 1 else f' ({DISPLAY[nni_key]} completed only '
                                                                     f'{100 * n["budget_done"]:.0f}% of the budget)')})
    return out


def _yes(b: bool) -> str:
    return 'yes' if b else 'NO'


def render(rows, tgts, info, command, scfg, rcfg, args, wall_total) -> str:
    lines = common.header_lines(info, command)
    lines += [f'# load average at end: {info.get("load_average_end")}; total wall time {wall_total / 60:.1f} min; '
              f'{args.jobs} worker process(es), 1 torch thread each',
              f'# search: {scfg.dataset}, ENAS cell space C={scfg.channels}, {3 * scfg.cells_per_stage + 2} cells, '
              f'{scfg.limit} training examples (D_x/D_θ halves), batch {scfg.batch}, {scfg.epochs} epochs; weights Adam '
              f'lr {scfg.lr}; θ: ASNG/PDAS defaults, AdvantageNAS/Reinforce/DARTS Adam lr {scfg.theta_lr}; '
              f'DARTS wall cap {args.darts_max_minutes} min; search seeds {args.seeds} (DARTS {args.darts_seeds})',
              f'# retrain: fixed network C={rcfg.channels}, {3 * rcfg.cells_per_stage + 2} cells, affine BN, no aux/drop-path, '
              f'Adam lr {rcfg.lr} cosine, wd {rcfg.weight_decay}, {rcfg.epochs} epochs on {rcfg.limit} training examples, '
              f'batch {rcfg.batch}; test on {rcfg.test_limit} test examples; retrain seed = search seed',
              '# acc = retrained test accuracy, mean ± std over searches (one retrain each) or over the random archs; '
              'search_cpu/wall = minutes per search without the convergence evaluations; budget_done = steps run / '
              'steps planned; entropy = normalised entropy of the final distribution; supernet_acc = argmax '
              'architecture with supernet weights on the fixed D_θ subset at the end', '']
    table = [[r['method'], r['searches'], r['search_cpu_min'], r['search_wall_min'],
              None if math.isnan(r['budget_done']) else f'{100 * r["budget_done"]:.0f}%',
              '-' if math.isnan(r['acc_mean']) else f'{100 * r["acc_mean"]:.2f} ± {100 * r["acc_std"]:.2f} (n={r["n_acc"]})',
              r['params_k'], r['final_entropy'], r['argmax_supernet_acc'], r['errors'] or '']
             for r in rows]
    lines.append(common.format_table(['method', 'searches', 'search_cpu_min', 'search_wall_min', 'budget_done',
                                      'test_acc_%', 'params_k', 'entropy', 'supernet_acc', 'errors'], table,
                                     align='llrrrrrrrl'))
    lines += ['', 'Targets: ASNG and AdvantageNAS beat the random baseline, and match or beat NNI\'s strategies\' '
                  'accuracy at less search time (search CPU time).']
    lines.append(common.format_table(['target', 'ours_acc_%', 'other_acc_%', 'met', 'note'],
                                     [[t['target'], f"{100 * t['ours']:.2f}", f"{100 * t['other']:.2f}", t['met'], t['note']]
                                      for t in tgts],
                                     align='lrrll'))
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d, r = sc.SearchConfig(), sc.RetrainConfig()
    p.add_argument('--dataset', default=d.dataset, help='fashion_mnist (default), mnist5k or cifar10')
    p.add_argument('--data-root', default=None, help='dataset folder (needed for cifar10)')
    p.add_argument('--strategies', default=','.join(SEARCHERS), help=f'comma list of {SEARCHERS}')
    p.add_argument('--seeds', type=int, default=3, help='search seeds per strategy (default 3)')
    p.add_argument('--darts-seeds', type=int, default=1, help='search seeds for NNI DARTS (default 1)')
    p.add_argument('--random-one-shot-seeds', type=int, default=1)
    p.add_argument('--random', type=int, default=5, help='random architectures retrained (default 5)')
    p.add_argument('--channels', type=int, default=d.channels)
    p.add_argument('--cells-per-stage', type=int, default=d.cells_per_stage)
    p.add_argument('--batch', type=int, default=d.batch)
    p.add_argument('--limit', type=int, default=d.limit, help='training examples for the search (D_x + D_θ)')
    p.add_argument('--epochs', type=int, default=d.epochs)
    p.add_argument('--lr', type=float, default=d.lr)
    p.add_argument('--theta-lr', type=float, default=d.theta_lr,
                   help='Adam lr on θ/α of AdvantageNAS, Reinforce and DARTS (their 3e-4 default assumes ~20k steps)')
    p.add_argument('--eval-every', type=int, default=d.eval_every)
    p.add_argument('--eval-examples', type=int, default=d.eval_examples)
    p.add_argument('--darts-max-minutes', type=float, default=45.0, help='wall-clock cap of one DARTS search')
    p.add_argument('--retrain-channels', type=int, default=r.channels)
    p.add_argument('--retrain-cells-per-stage', type=int, default=r.cells_per_stage)
    p.add_argument('--retrain-epochs', type=int, default=r.epochs)
    p.add_argument('--retrain-limit', type=int, default=r.limit)
    p.add_argument('--retrain-test-limit', type=int, default=r.test_limit)
    p.add_argument('--retrain-batch', type=int, default=r.batch)
    p.add_argument('--retrain-lr', type=float, default=r.lr)
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    p.add_argument('--threads', type=int, default=None, help='torch threads per worker (default 1 on CPU)')
    p.add_argument('--jobs', type=int, default=1, help='worker processes (default 1)')
    p.add_argument('--out', type=Path, default=common.RESULTS / 'search_quality', help='output prefix')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = args.threads if args.threads is not None else (1 if args.device == 'cpu' else None)
    scfg = sc.SearchConfig(dataset=args.dataset, data_root=args.data_root, channels=args.channels,
                           cells_per_stage=args.cells_per_stage, batch=args.batch, limit=args.limit, epochs=args.epochs,
                           lr=args.lr, theta_lr=args.theta_lr, eval_every=args.eval_every,
                           eval_examples=args.eval_examples, device=args.device, threads=threads)
    rcfg = sc.RetrainConfig(channels=args.retrain_channels, cells_per_stage=args.retrain_cells_per_stage,
                            batch=args.retrain_batch, limit=args.retrain_limit, test_limit=args.retrain_test_limit,
                            epochs=args.retrain_epochs, lr=args.retrain_lr, device=args.device, threads=threads)
    strategies = [s.strip() for s in args.strategies.split(',') if s.strip()]
    for s in strategies:
        if s not in SEARCHERS:
            raise SystemExit(f'unknown strategy {s!r}; known: {SEARCHERS}')
    info = common.machine_info(args.device)
    info['torch_threads'] = threads or info['torch_threads']
    command = common.command_line()
    print('\n'.join(common.header_lines(info, command)), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    searches: list[dict] = []
    retrains: list[dict] = []
    started = time.perf_counter()

    def save(final_text: str | None = None):
        common.write_json(Path(f'{args.out}.json'), {
            'command': command, 'machine': info, 'config': sc.config_dicts(scfg, rcfg), 'strategies': strategies,
            'searches': searches, 'retrains': retrains, 'complete': final_text is not None})

    def log(msg: str):
        print(f'[{time.strftime("%H:%M:%S")} +{(time.perf_counter() - started) / 60:5.1f} min, load '
              f'{os.getloadavg()[0]:.2f}] {msg}', flush=True)

    ctx = multiprocessing.get_context('spawn')
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx, initializer=_init_worker,
                                initargs=(threads,)) as pool:
        pending: dict[cf.Future, tuple] = {}
        # Longest first (NNI DARTS), so that it overlaps the others when --jobs > 1.
        for name in sorted(strategies, key=lambda k: k != 'darts'):
            n = {'darts': args.darts_seeds, 'random_one_shot': args.random_one_shot_seeds}.get(name, args.seeds)
            for seed in range(n):
                cfg = asdict(scfg)
                if name == 'darts':
                    cfg['max_minutes'] = args.darts_max_minutes
                pending[pool.submit(task_search, name, seed, cfg)] = ('search', name, seed)
        for i, arch in enumerate(sc.random_architectures(args.random, 12345, scfg)):
            pending[pool.submit(task_retrain, 'random', arch, i, asdict(rcfg), asdict(scfg))] = ('retrain', 'random', i)
        while pending:
            done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for fut in done:
                kind, name, seed = pending.pop(fut)
                res = fut.result()
                if kind == 'search':
                    searches.append(res)
                    if res['ok']:
                        log(f'search {name} seed {seed}: {res["steps"]}/{res["planned_steps"]} steps, '
                            f'{res["search_wall_s"] / 60:.1f} min wall, {res["search_cpu_s"] / 60:.1f} min CPU, '
                            f'entropy {res["final_entropy"]:.3f}')
                        pending[pool.submit(task_retrain, name, res['architecture'], seed, asdict(rcfg),
                                            asdict(scfg))] = ('retrain', name, seed)
                    else:
                        log(f'search {name} seed {seed} FAILED: {res["error"]}')
                else:
                    retrains.append(res)
                    log(f'retrain {name} #{seed}: ' + (f'test acc {100 * res["test_acc"]:.2f}%, {res["params"]} params, '
                                                       f'{res["retrain_wall_s"] / 60:.1f} min' if res['ok']
                                                       else f'FAILED {res["error"]}'))
                save()
    wall_total = time.perf_counter() - started
    info['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    rows = summarise(searches, retrains, strategies)
    tgts = targets(rows, retrains)
    text = render(rows, tgts, info, command, scfg, rcfg, args, wall_total)
    print(text)
    Path(f'{args.out}.txt').write_text(text + '\n')
    with open(f'{args.out}.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()})
    save(text)
    print(f'\nwrote {args.out}.txt, .csv, .json  (plot: python experiments/benchmarks/convergence.py --from {args.out}.json)')
    return 0


if __name__ == '__main__':
    sys.exit(main())

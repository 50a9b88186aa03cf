#!/usr/bin/env python
"""The toy experiment of asng-nas §3.1 / Figure 1 with this package's optimizers.

Selective squared error (asng-nas §3.1), x ∈ R^{D×K}, c ∈ {0..K−1}^D (0-based category indices):

    f(x, c) = E_z[ Σ_i (x_{i,c_i} − z_i)² + c_i/K ],   z ~ N(0, K⁻² I).

"To mimic NN training" the expectation is replaced by ONE z per evaluation call, shared by the
λ architectures of that call. One iteration (the reference protocol of the paper):

1. ask λ architectures; SGD with momentum 0.9 on x with the mean over the λ samples of
   ∇_x f(x, c; z) = 2(x_{i,c_i} − z_i) on the chosen entries; the step size ε_x follows a cosine
   schedule over the maximum number of iterations;
2. ask λ fresh architectures, evaluate them on a new z and ``tell`` the optimizer.

Both batches come from the same θ (θ only moves in ``tell``), so they are drawn with one
``ask(2λ)`` call and split: the same distribution as two calls, half the overhead.

A run succeeds at the first iteration in which one of its 2λ sampled architectures has an
ACTUAL objective f(x, c) = Σ_i x_{i,c_i}² + D·K⁻² + Σ_i c_i/K (exact expectation over z, with x
as it was when that architecture was evaluated) below the target K⁻¹ + D·K⁻².

Methods: ASNG (δ⁰ = step), SNG (constant δ = step) and Adam on the normalised natural gradient
(lr = step). The paper's performance measure is the mean number of iterations of the successful
runs divided by the success rate (missing when no run succeeded).

Determinism: the run with seed index s uses ``SeedSequence(base_seed, spawn_key=(s,))``; its two
children seed x₀ / the z draws and the optimizer's sampler. The same seed index therefore gets the
same x₀ and noise stream in every (method, step, ε_x) setting (common random numbers), and the
results do not depend on the number of processes or on the order in which runs finish.

Examples::

    .venv/bin/python experiments/asng_toy.py --quick
    .venv/bin/python experiments/asng_toy.py --seeds 20 --max-iter 100000 --processes 2
"""
from __future__ import annotations

import os

# Tiny arrays only: keep every worker on one thread (the machine is shared).
for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

try:
    from nni_asng.distributions import CategoricalDistribution
    from nni_asng.optimizers import ASNG, SNG, NaturalGradientAdam
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from nni_asng.distributions import CategoricalDistribution
    from nni_asng.optimizers import ASNG, SNG, NaturalGradientAdam

METHODS = ('ASNG', 'SNG', 'Adam')
DEFAULT_STEPS = (1e-3, 1e-2, 1e-1, 1e0, 1e1)
DEFAULT_EPS_X = (0.05, 0.0005)
SCRIPT_PATH = Path(__file__).resolve()
DEFAULT_OUT = SCRIPT_PATH.parent / 'results' / 'asng_toy'
# --quick fills in whatever the command line leaves unset.
QUICK = {'D': 10, 'K': 5, 'seeds': 3, 'max_iter': 2000}
FULL = {'D': 30, 'K': 5, 'seeds': 20, 'max_iter': 100_000}
_Z_BLOCK = 1024   # iterations of noise drawn at once


# ---------------------------------------------------------------------------- the problem
def target_value(D: int, K: int) -> float:
    """K⁻¹ + D·K⁻²: success threshold on the actual objective (asng-nas §3.1)."""
    return 1.0 / K + D / K ** 2


def actual_objective(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Exact f(x, c) = Σ_i x_{i,c_i}² + D·K⁻² + Σ_i c_i/K for each row of ``c`` (0-based indices)."""
    D, K = x.shape
    c = np.atleast_2d(c)
    chosen = x[np.arange(D), c]
    return (chosen ** 2).sum(axis=1) + D / K ** 2 + c.sum(axis=1) / K


def cosine_schedule(eps_x: float, max_iter: int) -> np.ndarray:
    """ε_x(t) = ε_x (1 + cos(π t / T)) / 2 for t = 0..T−1 (SGDR without restarts, T = max_iter)."""
    t = np.arange(max_iter)
    return eps_x * 0.5 * (1.0 + np.cos(np.pi * t / max_iter))


def make_optimizer(method: str, step: float, D: int, K: int, lam: int = 2, seed=None):
    dist = CategoricalDistribution([K] * D)     # uniform θ, θ_min = 1/(D(K−1)) (paper)
    if method == 'ASNG':
        return ASNG(dist, lam=lam, delta_init=step, seed=seed)
    if method == 'SNG':
        return SNG(dist, lam=lam, delta=step, seed=seed)
    if method == 'Adam':
        return NaturalGradientAdam(dist, lam=lam, lr=step, seed=seed)
    raise ValueError(f'unknown method {method!r}; choose from {METHODS}')


def run_seeds(base_seed: int, seed_index: int) -> tuple[np.random.Generator, int]:
    """(generator for x₀ and z, integer seed of the optimizer) of one seed index."""
    env_ss, opt_ss = np.random.SeedSequence(base_seed, spawn_key=(seed_index,)).spawn(2)
    return np.random.default_rng(env_ss), int(opt_ss.generate_state(1, np.uint64)[0])


def run_toy(method: str, step: float, eps_x: float, *, D: int = 30, K: int = 5, max_iter: int = 100_000,
            base_seed: int = 0, seed_index: int = 0, lam: int = 2, momentum: float = 0.9,
            optimizer=None) -> dict:
    """One run; returns its record. ``optimizer`` replaces the one built from (method, step)."""
    env, opt_seed = run_seeds(base_seed, seed_index)
    opt = make_optimizer(method, step, D, K, lam, opt_seed) if optimizer is None else optimizer
    x = env.standard_normal((D, K))
    xf = x.reshape(-1)                          # flat view: x[i, j] = xf[i*K + j]
    buf = np.zeros(D * K)                       # momentum buffer (PyTorch SGD convention)
    base = np.arange(D) * K
    penalty = np.arange(K) / K                  # (j − 1)/K with 1-based j
    # Σx² + Σc/K + D/K² < K⁻¹ + D/K²  ⇔  Σx² + Σc/K < K⁻¹ (the constant D/K² cancels)
    threshold = target_value(D, K) - D / K ** 2
    lr = cosine_schedule(eps_x, max_iter)
    inv_k = 1.0 / K
    best = math.inf
    success_at = None
    t = 0
    start = time.perf_counter()
    while t < max_iter:
        b = t % _Z_BLOCK
        if b == 0:
            z_block = env.standard_normal((_Z_BLOCK, 2, D)) * inv_k
        c = opt.ask(2 * lam)
        idx = c + base                          # (2λ, D) flat indices of the active x entries
        # (1) weight step on the first λ samples
        iw = idx[:lam]
        xw = xf[iw]
        pen = penalty[c].sum(axis=1)            # Σ_i c_i/K for all 2λ samples
        actual_w = (xw * xw).sum(axis=1) + pen[:lam]
        grad = np.bincount(iw.ravel(), weights=((2.0 / lam) * (xw - z_block[b, 0])).ravel(), minlength=D * K)
        buf *= momentum
        buf += grad
        xf -= lr[t] * buf
        # (2) architecture step on λ fresh samples, new z, x after the weight step
        xt = xf[idx[lam:]]
        losses = ((xt - z_block[b, 1]) ** 2).sum(axis=1) + pen[lam:]
        opt.tell(c[lam:], losses)
        t += 1
        m = min(actual_w.min(), ((xt * xt).sum(axis=1) + pen[lam:]).min())
        if m < best:
            best = m
        if m < threshold:
            success_at = t
            break
    wall = time.perf_counter() - start
    ml = opt.most_likely()
    theta = opt.theta.reshape(D, K)
    record = {
        'method': method, 'step': step, 'eps_x': eps_x, 'seed_index': seed_index,
        'success': success_at is not None, 'iterations': t, 'wall_s': wall, 'us_per_iter': 1e6 * wall / max(t, 1),
        'best_actual': float(best + D / K ** 2),
        'theta_converge': float(theta.max(axis=1).mean()),          # mean of max_j θ_ij
        'theta_optimal': float(theta[:, 0].mean()),                  # mean θ of the optimal category
        'most_likely_optimal': int((ml == 0).sum()),                 # variables whose mode is optimal
        'final_step_size': float(opt.step_size),
    }
    return record


# ---------------------------------------------------------------------------- aggregation
def summarize(records: list[dict], settings: list[tuple]) -> list[dict]:
    by_setting = defaultdict(list)
    for r in records:
        by_setting[(r['eps_x'], r['method'], r['step'])].append(r)
    rows = []
    for key in settings:
        runs = by_setting.get(key, [])
        its = np.array([r['iterations'] for r in runs if r['success']], dtype=float)
        n, n_ok = len(runs), int(its.size)
        sr = n_ok / n if n else float('nan')
        total_iters = sum(r['iterations'] for r in runs)
        rows.append({
            'eps_x': key[0], 'method': key[1], 'step': key[2], 'runs': n, 'successes': n_ok,
            'success_rate': sr,
            'median_iters': float(np.median(its)) if n_ok else None,
            'mean_iters': float(its.mean()) if n_ok else None,
            'mean_iters_over_sr': float(its.mean() / sr) if n_ok else None,
            'median_iters_over_sr': float(np.median(its) / sr) if n_ok else None,
            'median_theta_optimal': float(np.median([r['theta_optimal'] for r in runs])) if n else None,
            'us_per_iter': 1e6 * sum(r['wall_s'] for r in runs) / max(total_iters, 1),
            'wall_s': sum(r['wall_s'] for r in runs),
        })
    return rows


def _fmt(v, spec):
    if v is None:
        width = re.match(r'\d*', spec).group()
        return '—'.rjust(int(width)) if width else '—'
    return format(v, spec)


def format_table(rows: list[dict]) -> str:
    head = (f"{'eps_x':>7} {'method':>6} {'step':>7} {'succ':>7} {'rate':>5} {'median it':>10} "
            f"{'mean it':>10} {'mean/SR':>10} {'θ_opt':>6} {'µs/it':>6}")
    lines = [head, '-' * len(head)]
    prev = None
    for r in rows:
        if prev is not None and (r['eps_x'], r['method']) != prev:
            lines.append('')
        prev = (r['eps_x'], r['method'])
        lines.append(f"{r['eps_x']:>7g} {r['method']:>6} {r['step']:>7g} {r['successes']:>3}/{r['runs']:<3} "
                     f"{r['success_rate']:>5.2f} {_fmt(r['median_iters'], '10.0f')} {_fmt(r['mean_iters'], '10.0f')} "
                     f"{_fmt(r['mean_iters_over_sr'], '10.0f')} {_fmt(r['median_theta_optimal'], '6.3f')} "
                     f"{r['us_per_iter']:>6.1f}")
    return '\n'.join(lines)


def plot(rows: list[dict], path: Path, max_iter: int, title: str = '') -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    eps_values = sorted({r['eps_x'] for r in rows}, reverse=True)
    methods = [m for m in METHODS if any(r['method'] == m for r in rows)]
    style = {'ASNG': ('tab:red', 'o'), 'SNG': ('tab:blue', 's'), 'Adam': ('tab:green', '^')}
    fig, axes = plt.subplots(1, len(eps_values), figsize=(5.2 * len(eps_values), 4.2), sharex=True, sharey=True, squeeze=False)
    finite = [r['mean_iters_over_sr'] for r in rows if r['mean_iters_over_sr'] is not None]
    for ax, eps in zip(axes[0], eps_values):
        for m in methods:
            sel = sorted((r for r in rows if r['eps_x'] == eps and r['method'] == m), key=lambda r: r['step'])
            xs = [r['step'] for r in sel]
            ys = [np.nan if r['mean_iters_over_sr'] is None else r['mean_iters_over_sr'] for r in sel]
            color, marker = style.get(m, (None, 'o'))
            ax.plot(xs, ys, color=color, marker=marker, label=m)   # NaN: no marker, line broken
        ax.axhline(max_iter, color='grey', lw=0.8, ls=':', label='iteration budget')
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_title(f'$\\epsilon_x$ = {eps:g}')
        ax.set_xlabel('step size ($\\delta^0_\\theta$ for ASNG, $\\delta_\\theta$ for SNG, lr for Adam)')
        ax.grid(True, which='both', alpha=0.3)
    axes[0][0].set_ylabel('mean iterations of successes / success rate')
    # explicit limits: a panel without any success has no data for log autoscaling
    steps = [r['step'] for r in rows]
    axes[0][0].set_xlim(min(steps) / 2, max(steps) * 2)
    axes[0][0].set_ylim(min(finite + [max_iter]) / 2, max(finite + [max_iter]) * 2)
    axes[0][-1].legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


# ---------------------------------------------------------------------------- driver
def _worker(task):
    return run_toy(**task)


def _run_all(tasks: list[dict], settings: list[tuple], args, out: Path, start: float) -> list[dict]:
    """Run every task (in a pool unless processes == 1), streaming records to runs.jsonl."""
    records = []
    left_per_setting = {key: args.seeds for key in settings}
    left_per_seed = {i: len(settings) for i in range(args.seeds)}
    seeds_done = 0
    stream = open(out / 'runs.jsonl', 'w')
    pool = mp.get_context('fork').Pool(args.processes) if args.processes > 1 else None
    try:
        results = pool.imap_unordered(_worker, tasks, chunksize=1) if pool else map(_worker, tasks)
        for rec in results:
            records.append(rec)
            stream.write(json.dumps(rec) + '\n')
            stream.flush()
            elapsed = time.perf_counter() - start
            left_per_seed[rec['seed_index']] -= 1
            if left_per_seed[rec['seed_index']] == 0:
                seeds_done += 1
                ok = {m: sum(r['success'] for r in records if r['method'] == m) for m in args.methods}
                n = {m: sum(r['method'] == m for r in records) for m in args.methods}
                eta = elapsed / len(records) * (len(tasks) - len(records))
                print(f"[{elapsed:8.1f}s] seed {rec['seed_index']} done ({seeds_done}/{args.seeds} seeds, "
                      f"{len(records)}/{len(tasks)} runs, ETA {eta / 60:.1f} min) | successes so far: "
                      + ', '.join(f'{m} {ok[m]}/{n[m]}' for m in args.methods), flush=True)
            key = (rec['eps_x'], rec['method'], rec['step'])
            left_per_setting[key] -= 1
            if left_per_setting[key] == 0:
                row = summarize(records, [key])[0]
                print(f"[{elapsed:8.1f}s] setting done | eps_x={key[0]:g} {key[1]:>4} step={key[2]:g}: "
                      f"{row['successes']}/{row['runs']} succeeded, median it {_fmt(row['median_iters'], '.0f')}, "
                      f"mean/SR {_fmt(row['mean_iters_over_sr'], '.0f')}, {row['us_per_iter']:.1f} µs/it", flush=True)
    finally:
        stream.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return records


def _load_runs(path: Path, settings: list[tuple], seeds: int) -> list[dict]:
    """Records of an earlier (possibly interrupted) run: only the settings asked for and only the seed
    indices < ``seeds`` finished for every one of them, so each setting gets the same seeds."""
    wanted = set(settings)
    records = [r for r in map(json.loads, Path(path).read_text().splitlines())
               if (r['eps_x'], r['method'], r['step']) in wanted and r['seed_index'] < seeds]
    count = defaultdict(int)
    for r in records:
        count[r['seed_index']] += 1
    complete = {i for i, n in count.items() if n == len(settings)}
    print(f'loaded {len(records)} runs from {path}; using the {len(complete)} seed indices finished in every '
          f'setting', flush=True)
    if not complete:
        raise SystemExit('no seed index is complete in every setting')
    return [r for r in records if r['seed_index'] in complete]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--D', type=int, default=None, help=f"number of categorical variables (default {FULL['D']})")
    p.add_argument('--K', type=int, default=None, help=f"categories per variable (default {FULL['K']})")
    p.add_argument('--seeds', type=int, default=None, help=f"runs per setting (default {FULL['seeds']})")
    p.add_argument('--max-iter', type=int, default=None,
                   help=f"iteration budget and cosine-schedule length (default {FULL['max_iter']})")
    p.add_argument('--steps', type=float, nargs='+', default=list(DEFAULT_STEPS),
                   help='θ step sizes: δ⁰ (ASNG), δ (SNG), lr (Adam)')
    p.add_argument('--eps-x', type=float, nargs='+', default=list(DEFAULT_EPS_X), help='initial SGD step sizes for x')
    p.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS))
    p.add_argument('--lam', type=int, default=2, help='λ, architectures per batch')
    p.add_argument('--base-seed', type=int, default=0, help='per-run seeds are derived from it')
    p.add_argument('--processes', type=int, default=2, help='worker processes (1: run in this process)')
    p.add_argument('--out', type=Path, default=DEFAULT_OUT, help='output folder')
    p.add_argument('--quick', action='store_true',
                   help=f'smoke-run preset for unset options: {QUICK}')
    p.add_argument('--no-plot', action='store_true', help='skip the PNG')
    p.add_argument('--from-runs', type=Path, default=None, metavar='RUNS_JSONL',
                   help='do not run: summarise the records of an earlier (e.g. interrupted) run')
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if min(args.D, args.K - 1, args.seeds, args.max_iter, args.processes) < 1:
        p.error('need D >= 1, K >= 2, seeds >= 1, max-iter >= 1 and processes >= 1')
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join([sys.executable, sys.argv[0] if argv is None else str(SCRIPT_PATH), *argv_used])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = [(eps, m, s) for eps in args.eps_x for m in args.methods for s in args.steps]
    # seed-major order: at any moment the finished runs cover every setting about equally often
    tasks = [dict(method=m, step=s, eps_x=eps, D=args.D, K=args.K, max_iter=args.max_iter,
                  base_seed=args.base_seed, seed_index=i, lam=args.lam)
             for i in range(args.seeds) for (eps, m, s) in settings]
    print(f'command: {command}', flush=True)
    print(f'asng-nas §3.1 toy: D={args.D} K={args.K} λ={args.lam} seeds={args.seeds} max_iter={args.max_iter} '
          f'target={target_value(args.D, args.K):.4f}; {len(settings)} settings, {len(tasks)} runs, '
          f'{args.processes} process(es)', flush=True)
    start = time.perf_counter()
    if args.from_runs is not None:
        records = _load_runs(args.from_runs, settings, args.seeds)
    else:
        records = _run_all(tasks, settings, args, out, start)
    wall = time.perf_counter() - start

    records.sort(key=lambda r: (settings.index((r['eps_x'], r['method'], r['step'])), r['seed_index']))
    rows = summarize(records, settings)
    table = format_table(rows)
    n_seeds = len({r['seed_index'] for r in records})
    total_iters = sum(r['iterations'] for r in records)
    cpu = sum(r['wall_s'] for r in records)
    timing = {m: 1e6 * sum(r['wall_s'] for r in records if r['method'] == m)
              / max(1, sum(r['iterations'] for r in records if r['method'] == m)) for m in args.methods}
    print('\n' + table)
    wall_text = 'n/a (--from-runs)' if args.from_runs else f'{wall:.1f} s'
    print(f'\ntotal: {len(records)} runs, {total_iters} iterations, {cpu:.1f} s in runs, wall {wall_text}; '
          f'{1e6 * cpu / max(total_iters, 1):.1f} µs/iteration overall; '
          + ', '.join(f'{m} {v:.1f} µs/it' for m, v in timing.items()), flush=True)

    with open(out / 'results.csv', 'w', newline='') as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / 'runs.csv', 'w', newline='') as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    meta = {'command': command, 'config': config, 'target': target_value(args.D, args.K), 'seeds_used': n_seeds,
            'wall_s': None if args.from_runs else wall, 'run_seconds': cpu, 'total_iterations': total_iters,
            'us_per_iter': 1e6 * cpu / max(total_iters, 1), 'us_per_iter_by_method': timing,
            'python': platform.python_version(), 'numpy': np.__version__, 'host_cpus': os.cpu_count(),
            'table': rows}
    (out / 'results.json').write_text(json.dumps(meta, indent=1))
    (out / 'table.txt').write_text(table + '\n')
    if not args.no_plot:
        plot(rows, out / 'asng_toy.png', args.max_iter,
             title=f'selective squared error, D={args.D}, K={args.K}, {n_seeds} seeds, '
                   f'max {args.max_iter} iterations (asng-nas Fig. 1)')
    print(f'wrote {out}/results.csv, results.json, runs.csv, table.txt' + ('' if args.from_runs else ', runs.jsonl')
          + ('' if args.no_plot else ', asng_toy.png'), flush=True)
    return rows


if __name__ == '__main__':
    main()

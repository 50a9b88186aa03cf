"""Time per search step and peak memory of nni-asng's strategies next to NNI's own, on one supernet.

For each space and each strategy a fresh worker process (same script, ``--worker``) builds the space,
drives the strategy the way NNI's sequential engine does (``strategy.mutate_model(space)``,
``strategy.mutate_evaluator(evaluator)``, ``evaluator.evaluate(supernet)`` -> ``trainer.fit``) on synthetic
32x32x3 data, runs ``--warmup`` steps and then ``--steps`` timed steps (Lightning callback:
``on_train_batch_start`` -> ``on_train_batch_end``, with ``torch.cuda.synchronize()`` on CUDA), and reports
the median and IQR of the step time, the peak memory over the timed steps (see ``common.MemoryProbe``)
and a breakdown of each step from exclusive timers wrapped around the one-shot module's calls
(``common.instrument``): forward, backward, optimizer, and the search's own overhead (sampling/ask,
tell, row->architecture encoding, path activation, distribution summary/logging).

What one step is:
  NNI RandomOneShot  sample 1 path; forward+backward on a D_x batch; weight update.
  ASNG / PDAS (λ=2)  2 paths: 2 forward+backward on D_x (mean gradient); the same 2 forward (no grad) on D_θ; tell.
  Reinforce          1 path forward+backward on D_x; another 1 forward (no grad) on D_θ; tell.
  AdvantageNAS       as Reinforce, but the D_θ pass is forward + backward to the credit gates (Eq. 7).
  MultiComplexity    weight stage: λ uniform paths forward+backward on D_x; θ stage: λ forward (no grad) on D_θ.
  NNI DARTS/Gumbel   dense mixture: forward+backward on D_θ (α step) and on D_x (weight step).
  NNI Proxyless      one sampled path forward with its binary-gate backward, on D_θ and on D_x.

Examples::

    python experiments/benchmarks/step_cost.py --size cpu                 # CPU-sized spaces, minutes
    python experiments/benchmarks/step_cost.py --size paper --device cuda # the papers' search size on a GPU
    python experiments/benchmarks/step_cost.py --size tiny --strategies asng,random_one_shot --steps 2 --warmup 1
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DISPLAY, NNI, OURS  # noqa: E402

SIZES = {
    # the papers' search size (asng-nas §3.2, pdas §4.1; docs/design.md §2 anchors): 8 cells, C=16, 32x32x3, batch 64
    'paper': dict(channels=16, cells=8, batch=64, resolution=32),
    # CPU-sized: 5 cells, C=8, batch 32 (minutes on 2 cores)
    'cpu': dict(channels=8, cells=5, batch=32, resolution=32),
    # smoke test
    'tiny': dict(channels=4, cells=5, batch=4, resolution=8),
}
SPACES = ('hub_darts', 'enas_cell')
DEFAULT_STRATEGIES = ('asng', 'pdas', 'advantage_nas', 'reinforce', 'multi_complexity', 'darts', 'gumbel_darts',
                      'proxyless', 'random_one_shot')
RESULT_TAG = '@@STEP_COST_RESULT '

TABLE_COLUMNS = ['space', 'strategy', 'stage', 'step_ms', 'iqr_ms', 'cpu_ms', 'x_random', 'x_darts', 'peak_mib', 'mem_x_random',
                 'mem_x_darts', 'fwd_ms', 'bwd_ms', 'opt_ms', 'overhead_ms', 'overhead_pct', 'load1', 'status']


# ============================================================================================== worker
def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build, run and measure one (space, strategy); never raises (errors are returned)."""
    import torch
    from pytorch_lightning import Callback
    from nni.nas.evaluator.pytorch import Classification

    result: dict[str, Any] = {'space': spec['space'], 'strategy': spec['strategy'], 'status': 'ok',
                              'load_before': list(os.getloadavg())}
    device = spec['device']
    warmup, steps = int(spec['warmup']), int(spec['steps'])
    timers = common.SelfTimers()
    profiler = None
    if spec.get('profile'):
        import cProfile
        profiler = cProfile.Profile()

    class StepTimer(Callback):
        """Per epoch: step times and the step's breakdown after ``warmup`` steps; peak memory over them."""

        def __init__(self):
            self.epochs: list[dict[str, Any]] = []
            self._t0 = None
            self._snap: dict[str, float] = {}
            self._probe = None

        def on_train_start(self, trainer, pl_module):
            for opt in trainer.optimizers:
                timers.wrap(opt, 'step', 'optimizer')

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs.append({'epoch': int(trainer.current_epoch), 'step_ms': [], 'cpu_ms': [], 'iter_ms': [],
                                'categories': []})
            self._t0 = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            current = self.epochs[-1]
            if batch_idx == warmup:
                self._probe = common.MemoryProbe(device)
                self._probe.start()
                if profiler is not None:
                    profiler.enable()
            common.sync(device)
            now = time.perf_counter()
            if self._t0 is not None and batch_idx > warmup:
                current['iter_ms'].append((now - self._t0) * 1e3)      # previous start -> this start
            self._t0 = now
            self._c0 = time.process_time()
            self._snap = timers.snapshot()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            common.sync(device)
            elapsed = (time.perf_counter() - self._t0) * 1e3
            cpu = (time.process_time() - self._c0) * 1e3
            if batch_idx < warmup:
                return
            current = self.epochs[-1]
            current['step_ms'].append(elapsed)
            current['cpu_ms'].append(cpu)
            current['categories'].append({k: v * 1e3 for k, v in common.diff(timers.snapshot(), self._snap).items()})
            if batch_idx == warmup + steps - 1 and self._probe is not None:
                if profiler is not None:
                    profiler.disable()
                current['memory'] = self._probe.stop()
                self._probe = None

    try:
        if device == 'cuda':          # --in-process: what the previous strategy left must not count as this one's
            import gc
            gc.collect()
            torch.cuda.empty_cache()
        if spec.get('threads'):
            torch.set_num_threads(int(spec['threads']))
        result['torch_threads'] = torch.get_num_threads()
        import random
        import numpy as np
        random.seed(spec['seed'])           # NNI's RandomOneShot samples with `random`
        np.random.seed(spec['seed'])
        torch.manual_seed(spec['seed'])
        shape = (3, spec['resolution'], spec['resolution'])
        space = common.make_space(spec['space'], spec['channels'], spec['cells'])
        strategy = common.make_strategy(spec['strategy'], seed=spec['seed'])
        epochs = 2 if spec['strategy'] == 'multi_complexity' else 1
        train, val = common.synthetic_loaders(spec['batch'], warmup + steps, shape)
        timer = StepTimer()
        evaluator = Classification(learning_rate=spec['lr'], train_dataloaders=train, val_dataloaders=val,
                                   num_classes=10, max_epochs=epochs, limit_train_batches=warmup + steps,
                                   limit_val_batches=0, callbacks=[timer], **common.trainer_device_kwargs(device),
                                   **common.quiet_trainer_kwargs())
        t_build = time.perf_counter()
        with common.quiet_warnings():
            supernet = strategy.mutate_model(space)
            mutated = strategy.mutate_evaluator(evaluator)
        result['build_s'] = time.perf_counter() - t_build
        result['supernet_params'] = int(sum(p.numel() for p in supernet.parameters()))
        module = mutated.module
        result['wrapped'] = common.instrument(module, timers)
        with common.quiet_warnings(), common.timed_autograd_grad(timers):
            mutated.evaluate(supernet)
        result['epochs'] = timer.epochs
        if profiler is not None:
            result['profile'] = profile_text(profiler, steps)
        if not any(e['step_ms'] for e in timer.epochs):
            raise RuntimeError('no step was timed (did the trainer stop early?)')
    except BaseException as err:  # noqa: BLE001 - recorded in the table, not hidden
        result['status'] = 'error'
        result['error'] = f'{type(err).__name__}: {err}'.strip().splitlines()[0][:300]
        result['traceback'] = traceback.format_exc()[-4000:]
        result['epochs'] = result.get('epochs', [])
    result['load_after'] = list(os.getloadavg())
    if device == 'cuda':
        result['gpu'] = torch.cuda.get_device_name(0)
    return result


def profile_text(profiler, steps: int, top: int = 35) -> str:
    """cProfile of the timed steps (all epochs), by cumulative and by own time."""
    import io
    import pstats
    out = io.StringIO()
    out.write(f'cProfile over the timed steps ({steps} per epoch); cProfile slows Python code, so use it for '
              'where the time goes, not for the step time\n')
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats('cumulative').print_stats(top)
    stats.sort_stats('tottime').print_stats(top)
    return out.getvalue()


# ============================================================================================== summary
def summarise(result: dict[str, Any], primary_memory: str) -> list[dict[str, Any]]:
    """One row per (space, strategy, stage)."""
    name = DISPLAY.get(result['strategy'], result['strategy'])
    base = {'space': result['space'], 'strategy': name, 'key': result['strategy'],
            'load1': round((result['load_before'][0] + result['load_after'][0]) / 2, 2)}
    if result['status'] != 'ok':
        return [{**base, 'stage': '', 'status': 'ERROR: ' + result.get('error', '?')}]
    rows = []
    epochs = [e for e in result['epochs'] if e['step_ms']]
    for e in epochs:
        stage = ''
        if result['strategy'] == 'multi_complexity':
            stage = 'weight stage' if e['epoch'] == 0 else 'θ stage'
        med, iqr, q1, q3 = common.median_iqr(e['step_ms'])
        cpu_med, cpu_iqr, _, _ = common.median_iqr(e.get('cpu_ms', []))
        mean_step = sum(e['step_ms']) / len(e['step_ms'])
        cats: dict[str, float] = {}
        for c in e['categories']:
            for k, v in c.items():
                cats[k] = cats.get(k, 0.0) + v
        n = len(e['categories'])
        mean_cats = {k: v / n for k, v in cats.items()}
        overhead = sum(mean_cats.get(k, 0.0) for k in common.OVERHEAD_CATEGORIES)
        network = sum(mean_cats.get(k, 0.0) for k in common.NETWORK_CATEGORIES)
        mem = e.get('memory', {})
        rows.append({**base, 'stage': stage, 'status': 'ok', 'steps': len(e['step_ms']), 'step_ms': med,
                     'cpu_ms': cpu_med, 'cpu_iqr_ms': cpu_iqr,
                     'iqr_ms': iqr, 'q1_ms': q1, 'q3_ms': q3, 'mean_ms': mean_step,
                     'iter_ms': common.median_iqr(e['iter_ms'])[0],
                     'fwd_ms': mean_cats.get('forward', 0.0), 'bwd_ms': mean_cats.get('backward', 0.0),
                     'opt_ms': mean_cats.get('optimizer', 0.0), 'overhead_ms': overhead,
                     'overhead_pct': 100.0 * overhead / mean_step if mean_step else math.nan,
                     'other_ms': mean_step - network - overhead,
                     'overhead_breakdown_ms': {k: mean_cats[k] for k in common.OVERHEAD_CATEGORIES if k in mean_cats},
                     'peak_mib': mem.get(primary_memory, math.nan), 'peak_abs_mib': mem.get('peak_mib', math.nan),
                     'growth_mib': mem.get('growth_mib', math.nan), 'memory_method': mem.get('memory_method', ''),
                     'supernet_params': result.get('supernet_params')})
    return rows


def add_ratios(rows: list[dict[str, Any]], time_key: str = 'step_ms') -> None:
    """Ratios to RandomOneShot / DARTS of ``time_key`` (wall ``step_ms`` on CUDA; per-step process CPU time
    ``cpu_ms`` on CPU, which a shared machine's changing load barely affects) and of the primary memory."""
    for space in {r['space'] for r in rows}:
        group = [r for r in rows if r['space'] == space]
        ref = {k: next((r for r in group if r['key'] == k and r['status'] == 'ok'), None)
               for k in ('random_one_shot', 'darts')}
        for r in group:
            if r['status'] != 'ok':
                continue
            for key, suffix in (('random_one_shot', 'random'), ('darts', 'darts')):
                other = ref[key]
                r[f'x_{suffix}'] = r[time_key] / other[time_key] if other else math.nan
                r[f'mem_x_{suffix}'] = r['peak_mib'] / other['peak_mib'] if other and other['peak_mib'] else math.nan


def check_targets(rows: list[dict[str, Any]], time_key: str = 'step_ms') -> list[dict[str, Any]]:
    """The issue's targets (stated for the H100 numbers), evaluated on this run's numbers."""
    out = []
    for space in sorted({r['space'] for r in rows}):
        get = {(r['key'], r['stage']): r for r in rows if r['space'] == space and r['status'] == 'ok'}
        asng, adv, rei = get.get(('asng', '')), get.get(('advantage_nas', '')), get.get(('reinforce', ''))

        def target(name, value, limit, detail=''):
            ok = None if value is None or (isinstance(value, float) and math.isnan(value)) else value <= limit
            out.append({'space': space, 'target': name, 'value': value, 'limit': limit,
                        'met': {True: 'yes', False: 'NO', None: 'n/a'}[ok], 'detail': detail})

        target('ASNG step ≤ 3× RandomOneShot', asng and asng.get('x_random'), 3.0)
        target('ASNG step ≤ 0.3× DARTS', asng and asng.get('x_darts'), 0.3)
        target('ASNG peak memory ≤ 1.5× RandomOneShot', asng and asng.get('mem_x_random'), 1.5)
        target('ASNG peak memory ≤ 0.2× DARTS', asng and asng.get('mem_x_darts'), 0.2)
        target('ASNG search overhead ≤ 2% of its step', asng and asng.get('overhead_pct'), 2.0,
               f'{asng["overhead_ms"]:.2f} ms/step' if asng else '')
        target('AdvantageNAS step ≤ 1.1× Reinforce', adv and rei and adv[time_key] / rei[time_key], 1.1)
        target('AdvantageNAS peak memory ≤ 1.5× RandomOneShot', adv and adv.get('mem_x_random'), 1.5)
    return out


# ============================================================================================== main
def worker_command(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), '--worker', json.dumps(spec)]


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM when this process dies (no orphaned benchmark left running)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL('libc.so.6').prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def run_isolated(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    started = time.perf_counter()
    try:
        proc = subprocess.run(worker_command(spec), capture_output=True, text=True, timeout=timeout, env=env,
                              preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:
        return {'space': spec['space'], 'strategy': spec['strategy'], 'status': 'error',
                'error': f'timed out after {timeout:.0f} s', 'load_before': list(os.getloadavg()),
                'load_after': list(os.getloadavg()), 'epochs': []}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            result['wall_s'] = time.perf_counter() - started
            return result
    tail = (proc.stderr or proc.stdout or '').strip().splitlines()[-1:] or ['no output']
    return {'space': spec['space'], 'strategy': spec['strategy'], 'status': 'error',
            'error': f'worker exited with {proc.returncode}: {tail[0][:300]}', 'load_before': list(os.getloadavg()),
            'load_after': list(os.getloadavg()), 'epochs': [], 'stderr_tail': (proc.stderr or '')[-3000:]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--size', choices=sorted(SIZES), default='cpu', help='space/batch preset (default: cpu)')
    p.add_argument('--spaces', default=','.join(SPACES), help=f'comma list of {SPACES}')
    p.add_argument('--strategies', default=','.join(DEFAULT_STRATEGIES),
                   help=f'comma list of {OURS + NNI} (default: all)')
    p.add_argument('--channels', type=int, help='override the preset width C')
    p.add_argument('--cells', type=int, help='override the preset number of cells (ENAS: 3N+2)')
    p.add_argument('--batch', type=int, help='override the preset batch size')
    p.add_argument('--resolution', type=int, help='override the preset image size (square, 3 channels)')
    p.add_argument('--warmup', type=int, default=3, help='untimed steps first (default 3)')
    p.add_argument('--steps', type=int, default=10, help='timed steps (default 10)')
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    p.add_argument('--lr', type=float, default=1e-3, help="evaluator's (Adam) learning rate")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None,
                   help='torch intra-op threads (default: 1 on CPU, torch\'s default on CUDA). On a shared CPU '
                        'whose load exceeds its cores, OpenMP barriers with >1 thread slow small ops by 10-300x')
    p.add_argument('--profile', action='store_true',
                   help='cProfile the timed steps of each worker and write <out>_<space>_<strategy>.prof.txt '
                        '(slows Python code: a separate run from the timing one)')
    p.add_argument('--in-process', action='store_true',
                   help='run every strategy in this process instead of one fresh subprocess each (faster start; '
                        'on CPU the RSS probe then sees the allocator state the previous strategies left)')
    p.add_argument('--timeout', type=float, default=3600, help='seconds per (space, strategy) worker')
    p.add_argument('--out', type=Path, default=None, help='output prefix (default: results/benchmarks/step_cost_<size>_<device>)')
    p.add_argument('--worker', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = run_worker(json.loads(args.worker))
        print(RESULT_TAG + json.dumps(result, default=common._jsonable), flush=True)
        return 0
    threads = args.threads if args.threads is not None else (1 if args.device == 'cpu' else None)
    if threads:
        os.environ['OMP_NUM_THREADS'] = str(threads)        # the workers inherit it before importing torch
    size = dict(SIZES[args.size])
    for key in ('channels', 'cells', 'batch', 'resolution'):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    spaces = [s.strip() for s in args.spaces.split(',') if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(',') if s.strip()]
    for s in spaces:
        if s not in SPACES:
            raise SystemExit(f'unknown space {s!r}; known: {SPACES}')
    for s in strategies:
        if s not in OURS + NNI:
            raise SystemExit(f'unknown strategy {s!r}; known: {OURS + NNI}')
    out = args.out or common.RESULTS / f'step_cost_{args.size}_{args.device}'
    out.parent.mkdir(parents=True, exist_ok=True)
    info = common.machine_info(args.device)
    info['torch_threads'] = threads or info['torch_threads']
    info['isolation'] = 'in-process' if args.in_process else 'fresh subprocess per (space, strategy)'
    command = common.command_line()
    primary = 'peak_mib' if args.device == 'cuda' else 'growth_mib'
    print('\n'.join(common.header_lines(info, command)), flush=True)

    results = []
    for space in spaces:
        for strategy in strategies:
            spec = {'space': space, 'strategy': strategy, 'device': args.device, 'warmup': args.warmup,
                    'steps': args.steps, 'lr': args.lr, 'seed': args.seed, 'threads': threads,
                    'profile': args.profile, **size}
            t = time.perf_counter()
            result = run_worker(spec) if args.in_process else run_isolated(spec, args.timeout)
            results.append(result)
            if result.get('profile'):
                Path(f'{out}_{space}_{strategy}.prof.txt').write_text(result.pop('profile'))
            status = 'ok' if result['status'] == 'ok' else 'ERROR ' + result.get('error', '')
            steps = [x for e in result.get('epochs', []) for x in e['step_ms']]
            med = common.median_iqr(steps)[0] if steps else math.nan
            print(f'  {space:10s} {DISPLAY[strategy]:18s} {status[:90]:20s} median {med:9.1f} ms/step '
                  f'({time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.2f})', flush=True)

    rows = [row for r in results for row in summarise(r, primary)]
    time_key = 'step_ms' if args.device == 'cuda' else 'cpu_ms'
    add_ratios(rows, time_key)
    targets = check_targets(rows, time_key)
    info['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    text = render(rows, targets, info, command, size, args, primary)
    print(text)
    Path(f'{out}.txt').write_text(text + '\n')
    with open(f'{out}.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=TABLE_COLUMNS + ['mean_ms', 'iter_ms', 'other_ms', 'peak_abs_mib',
                                                               'growth_mib', 'cpu_iqr_ms', 'steps', 'supernet_params'],
                                extrasaction='ignore')
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    common.write_json(Path(f'{out}.json'), {'command': command, 'machine': info, 'size': size,
                                            'warmup': args.warmup, 'steps': args.steps, 'primary_memory': primary,
                                            'rows': rows, 'targets': targets, 'raw': results})
    print(f'\nwrote {out}.txt, {out}.csv, {out}.json')
    return 0


def render(rows, targets, info, command, size, args, primary) -> str:
    mem_note = ('peak = torch.cuda.max_memory_allocated over the timed steps (absolute, MiB)' if primary == 'peak_mib'
                else 'peak = peak RSS growth over the timed steps, MiB (VmHWM − VmRSS after gc + malloc_trim, fresh '
                     'process per strategy; absolute VmHWM in the CSV/JSON)')
    lines = common.header_lines(info, command)
    lines += [f'# load average at end: {info["load_average_end"]}; isolation: {info["isolation"]}',
              f'# size: {size} (3x{size["resolution"]}x{size["resolution"]} synthetic images, 10 classes); '
              f'{args.warmup} warm-up + {args.steps} timed steps per strategy; device {args.device}',
              '# step_ms = median wall time of on_train_batch_start -> on_train_batch_end (data loading excluded), '
              'iqr_ms = its Q3 − Q1; cpu_ms = median process CPU time of the step (1 torch thread: the work, '
              'little affected by other processes)',
              f'# x_random / x_darts = ratio of the median {"step_ms (wall)" if args.device == "cuda" else "cpu_ms"} '
              'to NNI RandomOneShot / NNI DARTS on the same space',
              f'# {mem_note}; mem_x_* = the same ratios for memory',
              '# fwd/bwd/opt/overhead_ms = mean exclusive time per step in forward(+loss, metrics) / backward / '
              'optimizer.step / search overhead (ask+tell+encode+activate+summary+logging); '
              'overhead_pct = overhead / mean step; load1 = 1-min load average during the measurement',
              '']
    table_rows = []
    for r in rows:
        table_rows.append([r['space'], r['strategy'], r.get('stage', ''), r.get('step_ms'), r.get('iqr_ms'),
                           r.get('cpu_ms'), r.get('x_random'), r.get('x_darts'), r.get('peak_mib'), r.get('mem_x_random'),
                           r.get('mem_x_darts'), r.get('fwd_ms'), r.get('bwd_ms'), r.get('opt_ms'),
                           r.get('overhead_ms'), r.get('overhead_pct'), r.get('load1'), r['status']])
    lines.append(common.format_table(TABLE_COLUMNS, table_rows, align='lll' + 'r' * 14 + 'l'))
    lines += ['', 'Search overhead per step (mean ms, exclusive): ' + ', '.join(common.OVERHEAD_CATEGORIES)]
    over_rows = []
    for r in rows:
        if r['status'] == 'ok':
            b = r['overhead_breakdown_ms']
            over_rows.append([r['space'], r['strategy'], r.get('stage', '')] +
                             [b.get(k, 0.0) for k in common.OVERHEAD_CATEGORIES] + [r['other_ms'], r['iter_ms']])
    lines.append(common.format_table(['space', 'strategy', 'stage', *common.OVERHEAD_CATEGORIES, 'other_ms',
                                      'iter_ms'], over_rows, align='lll' + 'r' * 9))
    lines += ['', '# other_ms = step − network − overhead (Lightning hooks, loops, loss.item()/isfinite syncs); '
                  'iter_ms = median start-to-start time (adds data loading and Lightning end-of-batch work)', '',
              'Targets (the issue states them for the H100 numbers; here evaluated on THIS run):']
    lines.append(common.format_table(['space', 'target', 'value', 'limit', 'met'],
                                     [[t['space'], t['target'], t['value'], t['limit'],
                                       t['met'] + (f' ({t["detail"]})' if t['detail'] else '')] for t in targets],
                                     align='llrrl'))
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())

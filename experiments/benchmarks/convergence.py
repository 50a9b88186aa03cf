"""Argmax-architecture accuracy and θ entropy against search time, per strategy (asng-nas Fig. 2,
advantagenas Fig. 4), in one figure with two panels.

The points come from ``search_common.ConvergenceRecorder``: every ``--eval-every`` steps the one-shot
module's ``export()`` (the argmax architecture) is frozen out of the supernet with its current weights
(``supernet.freeze``) and evaluated on a fixed D_θ subset (BatchNorm on batch statistics), and the
normalised entropy H(p)/H_max of ``export_probs()`` is recorded (nni-asng: θ; NNI DARTS: softmax(α)).
Both clocks (wall, CPU) exclude the evaluation time. NNI RandomOneShot has no distribution and is left out.

Either plot the runs of ``search_quality.py`` (they record the same points)::

    python experiments/benchmarks/convergence.py --from experiments/results/benchmarks/search_quality.json

or run the searches here (same options as search_quality.py's search part)::

    python experiments/benchmarks/convergence.py --strategies asng,advantage_nas,reinforce,darts --seeds 1
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import DISPLAY  # noqa: E402

COLOURS = {'asng': 'tab:red', 'pdas': 'tab:orange', 'advantage_nas': 'tab:blue', 'reinforce': 'tab:cyan',
           'darts': 'tab:green', 'gumbel_darts': 'tab:olive', 'multi_complexity': 'tab:purple'}


def plot(searches: list[dict], path: Path, clock: str = 'wall', title: str = '') -> Path:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_ent) = plt.subplots(1, 2, figsize=(12, 4.5))
    seen = set()
    for run in searches:
        name = run['strategy']
        if not run.get('ok', True) or name == 'random_one_shot' or not run.get('trajectory'):
            continue
        pts = run['trajectory']
        t = [p[f'{clock}_s'] / 60 for p in pts]
        label = DISPLAY.get(name, name) if name not in seen else None
        seen.add(name)
        colour = COLOURS.get(name)
        acc = [100 * p['acc'] if 'acc' in p else math.nan for p in pts]
        ax_acc.plot(t, acc, '-o', ms=3, lw=1.2, color=colour, label=label, alpha=0.85)
        ax_ent.plot(t, [p.get('entropy', math.nan) for p in pts], '-', lw=1.5, color=colour, label=label, alpha=0.85)
        if not run.get('completed_budget', True):
            ax_acc.annotate('cap', (t[-1], acc[-1]), fontsize=7, color=colour)
    unit = 'wall-clock' if clock == 'wall' else 'CPU'
    ax_acc.set_xlabel(f'search {unit} time (min, evaluations excluded)')
    ax_acc.set_ylabel('argmax architecture accuracy on D_θ subset (%)\n(supernet weights)')
    ax_acc.grid(alpha=0.3)
    ax_ent.set_xlabel(f'search {unit} time (min, evaluations excluded)')
    ax_ent.set_ylabel('normalised entropy H(p) / H_max')
    ax_ent.set_ylim(-0.02, 1.05)
    ax_ent.grid(alpha=0.3)
    ax_ent.legend(loc='lower left', fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_points(searches: list[dict], path: Path) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['strategy', 'seed', 'step', 'wall_s', 'cpu_s', 'acc', 'loss', 'entropy'])
        for run in searches:
            for p in run.get('trajectory', []):
                w.writerow([run['strategy'], run['seed'], p['step'], round(p['wall_s'], 3), round(p['cpu_s'], 3),
                            p.get('acc', ''), p.get('loss', ''), p.get('entropy', '')])


def parse_args(argv=None):
    import search_common as sc
    d = sc.SearchConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--from', dest='source', type=Path, help='a search_quality.py JSON to plot (no new searches)')
    p.add_argument('--strategies', default='asng,pdas,advantage_nas,reinforce,darts')
    p.add_argument('--seeds', type=int, default=1)
    p.add_argument('--dataset', default=d.dataset)
    p.add_argument('--data-root', default=None)
    p.add_argument('--channels', type=int, default=d.channels)
    p.add_argument('--cells-per-stage', type=int, default=d.cells_per_stage)
    p.add_argument('--batch', type=int, default=d.batch)
    p.add_argument('--limit', type=int, default=d.limit)
    p.add_argument('--epochs', type=int, default=d.epochs)
    p.add_argument('--theta-lr', type=float, default=d.theta_lr)
    p.add_argument('--eval-every', type=int, default=d.eval_every)
    p.add_argument('--eval-examples', type=int, default=d.eval_examples)
    p.add_argument('--darts-max-minutes', type=float, default=45.0)
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--out', type=Path, default=None, help='output prefix (default results/benchmarks/convergence)')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    command = common.command_line()
    if args.source:
        data = json.loads(args.source.read_text())
        searches = data['searches']
        info = data.get('machine', {})
        cfg = data.get('config', {}).get('search', {})
        out = args.out or args.source.with_name('convergence')
        origin = f'runs of {args.source.name}: {data.get("command", "")}'
    else:
        import search_common as sc
        threads = args.threads if args.threads is not None else (1 if args.device == 'cpu' else None)
        scfg = sc.SearchConfig(dataset=args.dataset, data_root=args.data_root, channels=args.channels,
                               cells_per_stage=args.cells_per_stage, batch=args.batch, limit=args.limit,
                               epochs=args.epochs, theta_lr=args.theta_lr, eval_every=args.eval_every,
                               eval_examples=args.eval_examples, device=args.device, threads=threads)
        info = common.machine_info(args.device)
        print('\n'.join(common.header_lines(info, command)), flush=True)
        searches = []
        for name in [s.strip() for s in args.strategies.split(',') if s.strip()]:
            for seed in range(args.seeds):
                cfg_run = sc.SearchConfig(**{**asdict(scfg), 'max_minutes': args.darts_max_minutes
                                             if name == 'darts' else None})
                try:
                    res = {'ok': True, **sc.run_search(name, seed, cfg_run)}
                except Exception as err:  # noqa: BLE001
                    res = {'ok': False, 'strategy': name, 'seed': seed, 'error': f'{type(err).__name__}: {err}'}
                print(f'{name} seed {seed}: ' + (f'{res["steps"]} steps, {res["search_wall_s"] / 60:.1f} min'
                                                  if res['ok'] else res['error']), flush=True)
                searches.append(res)
        cfg = asdict(scfg)
        out = args.out or common.RESULTS / 'convergence'
        info['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
        common.write_json(Path(f'{out}.json'), {'command': command, 'machine': info, 'config': {'search': cfg},
                                                'searches': searches})
        origin = command
    title = (f'{cfg.get("dataset")} ENAS cell C={cfg.get("channels")}, {cfg.get("limit")} examples, batch '
             f'{cfg.get("batch")}, {cfg.get("epochs")} epochs; {info.get("cpu_model", "")} '
             f'load {info.get("load_average", "")} {info.get("date", "")}')
    paths = [plot(searches, Path(f'{out}_{clock}.png'), clock, title) for clock in ('wall', 'cpu')]
    write_points(searches, Path(f'{out}_points.csv'))
    Path(f'{out}.txt').write_text('\n'.join([f'# command: {command}', f'# data: {origin}',
                                             f'# machine: {info.get("cpu_model")}, load {info.get("load_average")}, '
                                             f'date {info.get("date")}'] + [f'# figure: {p}' for p in paths]) + '\n')
    print('wrote', ', '.join(str(p) for p in paths), f'{out}_points.csv')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Sweep one strategy hyperparameter on the tabular benchmark: the protocol once per value, one summary.

Each value runs :mod:`protocol` for ``--strategy`` and pure random sampling (``--seeds`` seeds each, the
same ``--epochs`` budget, no Kendall τ) with ``--set strategy.args={PARAM: VALUE, ...}`` into its own
folder, ``--output/<strategy>/<param>=<value>/``, so a sweep continues where it stopped and re-scores its
cached searches against a table that has grown (``--report-only``). Printed per value: table accuracy of
the exports (mean, median), median percentile, how many seeds reached the table's top 10 %, the one-sided
Mann–Whitney p-value against the random seeds and against the whole table, θ's final convergence (mean
max probability of the last epoch) and the mean search CPU time. ``summary.txt`` / ``summary.json`` hold
the same under ``--output/<strategy>/<param>.*``.

Example (the AdvantageNAS learning-rate sweep of experiments/README.md)::

    python experiments/tabular/sweep.py --strategy advantage_nas --param learning_rate \\
        --values 3e-4,3e-3,1e-2,3e-2,1e-1 --seeds 10 --epochs 10

``--fixed 'lam: 4'`` adds fixed strategy arguments to every value (YAML flow-mapping entries).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol  # noqa: E402  (the protocol script beside this one)

DEFAULT_OUTPUT = protocol.REPO / 'experiments' / 'results' / 'tabular' / 'sweeps'


def _value_text(value: str) -> str:
    """A folder-safe spelling of a swept value or of the fixed arguments (no '/', ' ' or ':')."""
    return value.replace('/', '_').replace(' ', '').replace(':', '=')


def _fixed_suffix(fixed: str | None) -> str:
    return f'[{_value_text(fixed)}]' if fixed else ''


def yaml_scalar(value: str) -> str:
    """``value`` as YAML reads it back: floats in plain decimal (YAML 1.1 reads ``3e-4`` as text)."""
    try:
        int(value)
        return value
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return format(number, '.12f').rstrip('0').rstrip('.') if number != int(number) else repr(number)


def _convergence(folder: Path, strategy: str, seeds: int) -> float | None:
    """Mean over seeds of θ's convergence (mean max probability) in the search's last epoch."""
    values = []
    for seed in range(seeds):
        history = folder / 'runs' / strategy / f'seed{seed}' / 'search' / 'history.json'
        if history.is_file():
            rows = json.loads(history.read_text(encoding='utf-8'))
            if rows and rows[-1].get('convergence') is not None:
                values.append(float(rows[-1]['convergence']))
    return float(np.mean(values)) if values else None


def top_share(report_row: dict[str, Any], table, share: float = 0.1) -> tuple[int, int]:
    """(seeds whose export is in the table's top ``share``, seeds scored)."""
    threshold = np.quantile(table.accuracies, 1 - share)
    scored = [s for s in report_row['per_seed'] if s['in_table']]
    return sum(s['accuracy'] >= threshold for s in scored), len(scored)


def run_sweep(args: argparse.Namespace, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    from nni_asng.tabular import TabularBenchmark
    rows = []
    for value in args.values:
        folder = args.output / args.strategy / f'{args.param}={_value_text(value)}{_fixed_suffix(args.fixed)}'
        strategy_args = ', '.join([f'{args.param}: {value}'] + ([args.fixed] if args.fixed else []))
        argv = ['--table', str(args.table), '--output', str(folder), '--strategies', f'{args.strategy},random',
                '--seeds', str(args.seeds), '--epochs', str(args.epochs), '--jobs', str(args.jobs),
                '--kendall-archs', '0', '--set', f'strategy.args={{{strategy_args}}}']
        if args.config:
            argv += ['--config', str(args.config)]
        if args.report_only:
            argv.append('--report-only')
        log(f'sweep: {args.strategy} {strategy_args}')
        report = protocol.main(argv, log=lambda line: log(line) if line.startswith(('  [', 'protocol:')) else None)
        row = report['strategies'][args.strategy]
        table = TabularBenchmark.load(args.table)
        top, scored = top_share(row, table)
        rows.append({'value': value, 'fixed': args.fixed, 'seeds': row['seeds'], 'scored': scored,
                     'accuracy': row['accuracy'], 'percentile': row['percentile'], 'top10': top,
                     'p_vs_random': row['p_vs_random'], 'p_vs_table': row['p_vs_table'],
                     'convergence': _convergence(folder, args.strategy, args.seeds), 'search_cpu_s': row['search_cpu_s']['mean'],
                     'table_best': report['table']['best_accuracy'], 'table_mean': report['table']['mean_accuracy'],
                     'random': report['strategies'][protocol.RANDOM]['accuracy']})
    return rows


def pct(x: float | None) -> str:
    """A fraction as a percentage with two decimals; '-' for a missing value."""
    return '-' if x is None else f'{100 * x:.2f}'


def num(x: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; '-' for a missing value."""
    return '-' if x is None else f'{x:.{digits}f}'


def format_sweep(args: argparse.Namespace, rows: Sequence[dict[str, Any]]) -> str:
    first = rows[0] if rows else {}
    lines = [f"sweep of {args.strategy}.{args.param}" + (f" (fixed: {args.fixed})" if args.fixed else '') +
             f"; {args.seeds} seeds x {args.epochs} epochs; table best {pct(first.get('table_best'))}%, "
             f"mean {pct(first.get('table_mean'))}%; random seeds: mean "
             f"{pct(first.get('random', {}).get('mean'))}%", '']
    header = (f"{args.param:>14} {'n':>3} {'acc % mean':>10} {'median':>7} {'pct med':>7} {'top10%':>7} "
              f"{'p(>rand)':>8} {'p(>table)':>9} {'conv':>5} {'CPU s':>6}")
    lines += [header, '-' * len(header)]
    for r in rows:
        med_pct = r['percentile']['median']
        lines.append(f"{r['value']:>14} {r['scored']:>3} {pct(r['accuracy']['mean']):>10} "
                     f"{pct(r['accuracy']['median']):>7} {num(med_pct, 1):>7} {r['top10']:>3}/{r['scored']:<3} "
                     f"{num(r['p_vs_random']):>8} {num(r['p_vs_table']):>9} {num(r['convergence'], 2):>5} "
                     f"{num(r['search_cpu_s'], 0):>6}")
    lines += ['', 'n: seeds scored; pct med: median percentile in the table; top10%: seeds whose export is in the '
              "table's top 10 %; p: one-sided Mann-Whitney U; conv: θ's mean max probability after the search."]
    return '\n'.join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--strategy', required=True, choices=[s for s in protocol.STRATEGIES
                                                         if s not in (protocol.RANDOM, 'multi_complexity')])
    p.add_argument('--param', required=True, help='the strategy argument swept (a constructor parameter)')
    p.add_argument('--values', required=True, help='comma-separated values (YAML scalars)')
    p.add_argument('--fixed', default='', help="fixed strategy arguments for every value, e.g. 'lam: 4'")
    p.add_argument('--seeds', type=int, default=10)
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('--jobs', type=int, default=1)
    p.add_argument('--table', type=Path, default=protocol.DEFAULT_TABLE)
    p.add_argument('--config', type=Path, default=None)
    p.add_argument('--output', type=Path, default=DEFAULT_OUTPUT)
    p.add_argument('--report-only', action='store_true', help='run nothing; re-score the cached searches')
    args = p.parse_args(argv)
    args.values = [yaml_scalar(v.strip()) for v in args.values.split(',') if v.strip()]
    if not args.values:
        p.error('--values is empty')
    return args


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    args = parse_args(argv)
    rows = run_sweep(args, log)
    text = format_sweep(args, rows)
    stem = args.output / args.strategy / (args.param + _fixed_suffix(args.fixed))
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f'{stem}.txt').write_text(text + '\n', encoding='utf-8')
    protocol._write_json(Path(f'{stem}.json'), {'settings': vars(args), 'rows': rows})
    log(text)
    return rows


if __name__ == '__main__':
    main()

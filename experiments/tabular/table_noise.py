"""How much of a tabular benchmark's ranking is the architecture and how much the seed.

The builder's quality figures (``TableQuality``) mix the chance-level architectures (no path through the
cell: far apart from the rest, so easy to rank) with the others. This splits them off and estimates, over the
architectures trained with two seeds, the per-seed noise and the spread the architectures really have
(observed variance = architecture variance + noise variance)::

    python experiments/tabular/table_noise.py [--table DIR] [--chance 0.1]
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def noise_report(table, chance: float, margin: float = 0.05) -> str:
    from nni_asng.tabular import spearman
    first, second = sorted({r['seed'] for r in table.rows})[:2]
    entries = [table.query(a) for a in table.architectures()]
    learning = [e for e in entries if e.accuracy > chance + margin]
    seed_values = [dict(zip(e.seeds, e.per_seed_accuracy)) for e in learning]
    pairs = np.array([(v[first], v[second]) for v in seed_values if first in v and second in v])
    single = np.array([v[first] for v in seed_values if first in v])
    noise = float((pairs[:, 0] - pairs[:, 1]).std(ddof=1) / math.sqrt(2))        # per seed
    observed = float(single.std(ddof=1))
    true_spread = math.sqrt(max(observed ** 2 - noise ** 2, 0.0))
    pct = np.percentile(100 * single, [10, 50, 90])
    # functionally identical cells (an edge whose output is never used) train to identical rows
    distinct = {(r['final'].get('test_acc'), r['final'].get('test_loss')) for r in table.rows if r['seed'] == first}
    return '\n'.join([
        f'architectures: {len(entries)}; at chance (test accuracy <= {100 * (chance + margin):.0f}%): '
        f'{len(entries) - len(learning)}; the others: {len(learning)}',
        f'distinct results among the seed-{first} rows: {len(distinct)} (identical rows: functionally identical cells)',
        f'the others, seed {first}: 10th / 50th / 90th percentile {pct[0]:.2f} / {pct[1]:.2f} / {pct[2]:.2f}%, '
        f'std {100 * observed:.2f} pp',
        f'the others with seeds {first} and {second}: {len(pairs)}; Spearman {spearman(pairs[:, 0], pairs[:, 1]):.3f}, '
        f'Pearson {np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]:.3f}',
        f'noise per seed: {100 * noise:.2f} pp (std of the seed difference / sqrt 2)',
        f'spread of the architectures themselves: {100 * true_spread:.2f} pp '
        f'(sqrt(observed^2 - noise^2)); share of a single-seed value that is the architecture: '
        f'{true_spread ** 2 / observed ** 2:.2f}',
    ])


def main(argv=None) -> str:
    from nni_asng.tabular import TabularBenchmark
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--table', type=Path, default=REPO / 'experiments' / 'results' / 'tabular' / 'nb201_fmnist')
    p.add_argument('--chance', type=float, default=0.1, help='accuracy of guessing (1 / number of classes)')
    args = p.parse_args(argv)
    text = noise_report(TabularBenchmark.load(args.table), args.chance)
    print(text)
    return text


if __name__ == '__main__':
    main()

"""Protocol runs side by side, one row per (strategy, run): e.g. the new defaults against the papers' settings.

Reads the ``results.json`` that ``protocol.py`` wrote into each folder (run it, or ``--report-only``, first) and
prints, for every strategy the runs have in common (pure random sampling once, from the first run): seeds
scored, table accuracy of the exports (mean, median), median percentile, how many seeds reached the table's
top 10 %, the one-sided Mann–Whitney p-values against the random seeds and against every architecture of the
space, Kendall's τ and sup-best (where the run measured them) and the median search CPU time::

    python experiments/tabular/side_by_side.py experiments/results/tabular/protocol_classes \\
        experiments/results/tabular/protocol_classes_warmup0 --labels 'warmup=0.5 (default)' 'warmup=0 (papers)'

``--output FILE`` also writes the text there.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocol  # noqa: E402  (the protocol script beside this one)
from sweep import num, pct, top_share  # noqa: E402


def side_by_side(reports: Sequence[dict[str, Any]], labels: Sequence[str], table) -> str:
    """The text table of the module docstring, from protocol reports (``results.json`` contents)."""
    common = [s for s in protocol.STRATEGIES if all(s in r['strategies'] for r in reports) and s != protocol.RANDOM]
    header = (f"{'strategy':<22} {'setting':<22} {'n':>3} {'acc % mean':>10} {'median':>7} {'pct med':>7} "
              f"{'top10%':>7} {'p(>rand)':>8} {'p(>table)':>9} {'Kendall τ':>9} {'sup-best':>8} {'CPU s':>6}")
    lines = [header, '-' * len(header)]
    rows = [(s, label, report['strategies'][s]) for s in common for label, report in zip(labels, reports)]
    if protocol.RANDOM in reports[0]['strategies']:
        rows.append((protocol.RANDOM, labels[0], reports[0]['strategies'][protocol.RANDOM]))
    for strategy, label, row in rows:
        top, scored = top_share(row, table)
        tau = (row.get('kendall_tau') or {}).get('mean')
        sup = (row.get('supernet_best') or {}).get('median')
        lines.append(f"{protocol.DISPLAY[strategy]:<22} {label:<22} {scored:>3} {pct(row['accuracy']['mean']):>10} "
                     f"{pct(row['accuracy']['median']):>7} {num(row['percentile']['median'], 1):>7} "
                     f"{top:>3}/{scored:<3} {num(row['p_vs_random']):>8} {num(row['p_vs_table']):>9} "
                     f"{num(tau, 2):>9} {pct(sup):>8} {num(row['search_cpu_s']['median'], 1):>6}")
    lines += ['', "pct med: median percentile of the table's entries; top10%: seeds whose export is in the table's "
              "top 10 %; p: one-sided Mann-Whitney U against the random seeds / every architecture of the space; "
              "CPU s: median search CPU time."]
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('runs', type=Path, nargs='+', help='protocol output folders (each with results.json)')
    p.add_argument('--labels', nargs='+', default=None, help='one label per run (default: the folder names)')
    p.add_argument('--table', type=Path, default=protocol.DEFAULT_TABLE)
    p.add_argument('--output', type=Path, default=None)
    args = p.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        p.error(f'{len(args.runs)} runs but {len(labels)} labels')
    missing = [str(run) for run in args.runs if not (run / 'results.json').is_file()]
    if missing:
        p.error(f'no results.json in {", ".join(missing)}: run protocol.py (or --report-only) there first')
    from nni_asng.tabular import TabularBenchmark
    reports = [json.loads((run / 'results.json').read_text(encoding='utf-8')) for run in args.runs]
    text = side_by_side(reports, labels, TabularBenchmark.load(args.table))
    if args.output:
        args.output.write_text(text + '\n', encoding='utf-8')
    print(text)
    return text


if __name__ == '__main__':
    main()

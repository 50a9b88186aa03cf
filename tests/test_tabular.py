"""The tabular benchmark: query API (synthetic rows) and the builder (real training, tiny sizes).

The builder tests train real NAS-Bench-201 cells on Fashion-MNIST at 8x8 pixels for one epoch; the resume test
kills a 2-process ``nni-asng tabulate`` with SIGKILL after its first row, continues it, and compares every row (all
metrics, parameters, FLOPs) with an uninterrupted 1-process build (the same command, run in process: each
``python -m nni_asng`` costs seconds of imports; the continuation runs in process too, only the killed build
needs a process of its own).
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from nni_asng.tabular import (ArchitectureNotInTableError, TabularBenchmark, arch_key, kendall_tau, read_rows,
                              spearman)

ROOT = Path(__file__).resolve().parents[1]
LABELS = ['cell/0_1', 'cell/0_2', 'cell/0_3', 'cell/1_2', 'cell/1_3', 'cell/2_3']


def _rows(accuracy, seeds=(0,)):
    rows = []
    for ops in itertools.product(['skip_connect', 'conv_3x3'], repeat=2):
        arch = dict(zip(LABELS, list(ops) + ['none'] * 4))
        for seed in seeds:
            acc = accuracy(arch, seed)
            rows.append({'architecture': arch, 'seed': seed, 'name': None, 'params': 10, 'flops': 20,
                         'final': {'test_acc': acc, 'val_acc': acc - 0.01}, 'train_time_s': 1.0})
    return rows


def _score(arch, seed):
    return 0.5 + 0.1 * sum(op == 'conv_3x3' for op in arch.values()) + 0.001 * seed


def test_query_rank_percentile_and_mean():
    table = TabularBenchmark(_rows(_score, seeds=(0, 1)))
    assert len(table) == 4
    best = table.best()
    assert best.architecture['cell/0_1'] == best.architecture['cell/0_2'] == 'conv_3x3'
    assert best.rank == 1 and best.percentile == 100.0
    assert best.accuracy == pytest.approx(0.7005) and best.per_seed_accuracy == pytest.approx((0.7, 0.701))
    worst = table.query(dict(zip(LABELS, ['skip_connect'] * 2 + ['none'] * 4)))
    assert worst.rank == 4 and worst.percentile == 25.0
    assert table.mean_accuracy == pytest.approx(0.6005)
    assert worst.val_accuracy == pytest.approx(worst.accuracy - 0.01)


def test_architecture_outside_the_table_is_a_clear_error():
    missing = dict(zip(LABELS, ['conv_3x3', 'skip_connect'] + ['none'] * 4))
    table = TabularBenchmark([r for r in _rows(_score) if r['architecture'] != missing])
    with pytest.raises(ArchitectureNotInTableError, match="values outside the table: {'cell/0_3': 'conv_1x1'}"):
        table.query(dict(zip(LABELS, ['skip_connect', 'skip_connect', 'conv_1x1', 'none', 'none', 'none'])))
    with pytest.raises(ArchitectureNotInTableError, match='not trained'):
        table.query(missing)
    with pytest.raises(ArchitectureNotInTableError, match='labels'):
        table.query({'cell/0_1': 'skip_connect'})
    assert dict(zip(LABELS, ['conv_3x3'] * 2 + ['none'] * 4)) in table and missing not in table


def test_query_by_nas_bench_201_string():
    table = TabularBenchmark(_rows(_score))
    entry = table.query('|conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|')
    assert entry.architecture == dict(zip(LABELS, ['conv_3x3', 'skip_connect'] + ['none'] * 4))


def test_quality_figures():
    noise = np.random.default_rng(0).normal(0, 0.001, size=8)
    table = TabularBenchmark(_rows(lambda arch, seed: _score(arch, 0) + noise[seed * 4 + hash(arch_key(arch)) % 4],
                                   seeds=(0, 1)))
    q = table.quality()
    assert q.architectures == 4 and q.rows == 8 and q.seeds == {0: 4, 1: 4} and q.pairs == 4
    assert q.spread_across_architectures > q.spread_across_seeds
    assert 'Spearman' in q.format()


def test_rank_statistics_match_scipy():
    rng = np.random.default_rng(1)
    a = rng.normal(size=40).round(1)          # ties on purpose
    b = a + rng.normal(scale=0.5, size=40).round(1)
    assert spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic)
    assert kendall_tau(a, b) == pytest.approx(scipy.stats.kendalltau(a, b).statistic)
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_read_rows_ignores_a_cut_off_last_line(tmp_path):
    path = tmp_path / 'table.jsonl'
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b"')
    rows, good = read_rows(path)
    assert rows == [{'a': 1}, {'a': 2}] and good == len('{"a": 1}\n{"a": 2}\n')


# ---------------------------------------------------------------------------------------------- the builder
TINY = '''
name: tiny_table
seed: 0
space: {name: nas_bench_201, args: {channels: 2, num_cells: 1, operations: [none, skip_connect, conv_3x3]}}
strategy: {name: asng}
data: {dataset: fashion_mnist, limit: 128, subset_seed: 0, resolution: 8, batch_size: 32, augment: false}
retrain:
  epochs: 1
  batch_size: 32
  optimizer: {name: sgd, lr: 0.05}
  augment: false
  threads: 1
  progress_bar: false
  device: cpu
tabular: {seeds: [0, 1], sample: 3, validation: 64, processes: 1}
'''


def _tabulate_in_process(config: Path, out: Path, *extra: str) -> None:
    """``nni-asng tabulate`` through ``nni_asng.app.cli.main`` (its workers are still separate processes)."""
    from nni_asng.app.cli import main
    assert main(['tabulate', str(config), '--output', str(out), *extra]) == 0


def _tabulate(config: Path, out: Path, *extra: str, wait: bool = True):
    cmd = [sys.executable, '-m', 'nni_asng', 'tabulate', str(config), '--output', str(out), *extra]
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def _comparable(rows):
    return sorted((r['index'], r['seed'], json.dumps({k: v for k, v in r.items()
                                                      if k not in ('train_time_s', 'train_cpu_s')}, sort_keys=True))
                  for r in rows)


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_rows(tmp_path, capsys):
    config = tmp_path / 'tiny.yaml'
    config.write_text(TINY)
    reference = tmp_path / 'reference'
    _tabulate_in_process(config, reference, '--max-jobs', '4')
    ref_rows, _ = read_rows(reference / 'table.jsonl')
    assert len(ref_rows) == 4
    assert all(len(r['epochs']) == 1 and {'train_acc', 'val_acc', 'test_acc', 'test_loss'} <= set(r['final'])
               for r in ref_rows)
    assert all(r['params'] > 0 and r['flops'] > 0 and r['name'].startswith('|') for r in ref_rows)

    killed = tmp_path / 'killed'
    proc = _tabulate(config, killed, '--max-jobs', '4', '--processes', '2', wait=False)
    rows_file = killed / 'table.jsonl'
    deadline = time.time() + 600
    while time.time() < deadline and len(read_rows(rows_file)[0]) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    done = len(read_rows(rows_file)[0])
    assert 1 <= done < 4, f'the kill came too late to test a resume ({done} rows)'
    with open(rows_file, 'a') as f:                   # a row cut off in the middle of its write
        f.write('{"index": 7, "architecture": {"cell/0_1"')
    capsys.readouterr()
    _tabulate_in_process(config, killed, '--max-jobs', str(4 - done), '--processes', '2')    # the continuation
    assert f'{done} done' in capsys.readouterr().out
    rows, good = read_rows(rows_file)
    assert good == rows_file.stat().st_size          # the cut-off line was dropped
    assert _comparable(rows) == _comparable(ref_rows)
    meta = json.loads((killed / 'meta.json').read_text())
    assert len(meta['sessions']) == 2 and meta['jobs'] == 3 ** 6 + 3


def test_a_table_of_another_recipe_is_refused(tmp_path, capsys):
    from nni_asng.app.cli import main        # what `python -m nni_asng` runs, in process
    config = tmp_path / 'tiny.yaml'
    config.write_text(TINY)
    out = tmp_path / 'table'
    out.mkdir()
    (out / 'meta.json').write_text(json.dumps({'recipe': {'space': {}, 'data': {}, 'retrain': {}, 'tabular': {}}}))
    assert main(['tabulate', str(config), '--output', str(out)]) == 2
    stderr = capsys.readouterr().err
    assert 'another recipe' in stderr and 'space, data, retrain, tabular' in stderr


def test_plan_is_fixed_and_samples_later_seeds():
    from nni_asng.app.runners.tabulate import plan_jobs
    jobs = plan_jobs(20, [0, 1], 5)
    assert jobs == plan_jobs(20, [0, 1], 5)
    assert sorted(i for i, s in jobs if s == 0) == list(range(20))
    assert len([i for i, s in jobs if s == 1]) == 5
    assert [s for _, s in jobs] == [0] * 20 + [1] * 5          # the first seed covers every architecture first
    assert [i for i, _ in jobs[:20]] != list(range(20))         # shuffled: a partial table is a uniform sample


def test_a_table_written_before_new_settings_existed_continues(tmp_path):
    """Settings added to nni-asng later (at their defaults) and speed-only settings don't block a resume."""
    from nni_asng.app import parse_config
    from nni_asng.app.runners.tabulate import _check_meta, _recipe
    cfg = parse_config(TINY)
    old = _recipe(cfg)
    del old['retrain']['optimizer']['momentum'], old['data']['center_fraction']      # as if added since, at defaults
    old['retrain']['progress_bar'] = True                                       # speed/verbosity only
    old['retrain']['momentum_was_here'] = None
    (tmp_path / 'meta.json').write_text(json.dumps({'recipe': old}))
    with pytest.raises(Exception, match='another recipe.*retrain'):           # an unknown old key is a change
        _check_meta(tmp_path, cfg)
    del old['retrain']['momentum_was_here']
    (tmp_path / 'meta.json').write_text(json.dumps({'recipe': old}))
    _check_meta(tmp_path, cfg)
    changed = parse_config(TINY, overrides=['retrain.optimizer.momentum=0.5'])
    with pytest.raises(Exception, match='another recipe.*retrain'):
        _check_meta(tmp_path, changed)

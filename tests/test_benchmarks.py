"""Smoke test of experiments/benchmarks/step_cost.py: a tiny space, two strategies, seconds."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'experiments' / 'benchmarks' / 'step_cost.py'
COLUMNS = ['space', 'strategy', 'stage', 'step_ms', 'iqr_ms', 'cpu_ms', 'x_random', 'x_darts', 'peak_mib', 'mem_x_random',
           'mem_x_darts', 'fwd_ms', 'bwd_ms', 'opt_ms', 'overhead_ms', 'overhead_pct', 'load1', 'status']


def private_home(folder: Path) -> dict:
    """The environment with ``HOME`` in ``folder``: NNI's experiment manifest (read whole several times per
    experiment) starts empty and the user's stays untouched; matplotlib keeps its font cache."""
    import matplotlib
    (folder / 'home').mkdir(parents=True, exist_ok=True)
    return {**os.environ, 'HOME': str(folder / 'home'), 'MPLCONFIGDIR': matplotlib.get_cachedir()}


def test_step_cost_tiny(tmp_path):
    out = tmp_path / 'step_cost_tiny'
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), '--size', 'tiny', '--spaces', 'enas_cell', '--strategies', 'asng,random_one_shot',
         '--warmup', '1', '--steps', '2', '--in-process', '--out', str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=private_home(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]

    text = Path(f'{out}.txt').read_text()
    header = next(line for line in text.splitlines() if line.startswith('space '))
    assert header.split() == COLUMNS
    assert '# command:' in text and '# machine:' in text and 'load average' in text

    with open(f'{out}.csv') as f:
        rows = list(csv.DictReader(f))
    assert {r['strategy'] for r in rows} == {'ASNG(λ=2)', 'NNI RandomOneShot'}
    for r in rows:
        assert r['status'] == 'ok', r
        for key in ('step_ms', 'cpu_ms', 'peak_abs_mib', 'fwd_ms', 'bwd_ms', 'x_random'):
            assert float(r[key]) > 0, (key, r)
        assert float(r['overhead_ms']) >= 0
    random_row = next(r for r in rows if r['strategy'] == 'NNI RandomOneShot')
    assert abs(float(random_row['x_random']) - 1.0) < 1e-9

    data = json.loads(Path(f'{out}.json').read_text())
    assert data['steps'] == 2 and data['machine']['cpu_model']
    assert {t['target'] for t in data['targets']} >= {'ASNG step ≤ 3× RandomOneShot',
                                                      'ASNG search overhead ≤ 2% of its step'}


@pytest.mark.slow
def test_search_quality_and_convergence_tiny(tmp_path):
    """search_quality.py end to end on real Fashion-MNIST at toy scale, then convergence.py plots its JSON."""
    out = tmp_path / 'sq'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'experiments' / 'benchmarks' / 'search_quality.py'), '--strategies',
         'asng,random_one_shot', '--seeds', '1', '--random', '2', '--limit', '128', '--epochs', '1', '--batch', '32',
         '--eval-every', '1', '--eval-examples', '64', '--channels', '4', '--retrain-channels', '4',
         '--retrain-epochs', '1', '--retrain-limit', '128', '--retrain-test-limit', '64', '--out', str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=private_home(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(Path(f'{out}.json').read_text())
    assert data['complete'] and data['machine']['cpu_model']
    searches = {s['strategy']: s for s in data['searches']}
    assert set(searches) == {'asng', 'random_one_shot'} and all(s['ok'] for s in searches.values())
    asng = searches['asng']
    assert asng['steps'] == asng['planned_steps'] == 2 and asng['completed_budget']
    assert [p['step'] for p in asng['trajectory']] == [0, 1, 2]
    assert all(0 <= p['acc'] <= 1 and 0 < p['entropy'] <= 1 for p in asng['trajectory'])
    assert asng['trajectory'][-1]['entropy'] < 1                      # θ moved
    retrains = data['retrains']
    assert [r['label'] for r in retrains].count('random') == 2 and all(r['ok'] for r in retrains)
    assert all(0 <= r['test_acc'] <= 1 and r['params'] > 0 and r['test_examples'] == 64 for r in retrains)
    text = Path(f'{out}.txt').read_text()
    assert 'RANDOM (uniform archs, no search)' in text and 'ASNG(λ=2) beats RANDOM' in text

    benchmarks = str(ROOT / 'experiments' / 'benchmarks')
    sys.path.insert(0, benchmarks)           # convergence.py in process: a `python convergence.py` costs seconds
    try:                                     # of imports (torch, NNI) that this process has already done
        import convergence
        assert convergence.main(['--from', f'{out}.json', '--out', str(tmp_path / 'conv')]) == 0
    finally:
        sys.path.remove(benchmarks)
        for name in ('convergence', 'common', 'search_common'):
            sys.modules.pop(name, None)
    for suffix in ('_wall.png', '_cpu.png'):
        assert (tmp_path / f'conv{suffix}').stat().st_size > 10_000
    with open(tmp_path / 'conv_points.csv') as f:
        points = list(csv.DictReader(f))
    assert [int(p['step']) for p in points if p['strategy'] == 'asng'] == [0, 1, 2]

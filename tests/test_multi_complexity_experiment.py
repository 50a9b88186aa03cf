"""End-to-end smoke test of experiments/multi_complexity_fmnist.py (tiny widths, data and epochs)."""
import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / 'experiments' / 'multi_complexity_fmnist.py'


def _load_script():
    spec = importlib.util.spec_from_file_location('multi_complexity_fmnist', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_multi_complexity_experiment_end_to_end(tmp_path):
    from nni_asng.data import DatasetNotFoundError
    try:
        from nni_asng.data import load_raw
        load_raw('fashion_mnist')
    except DatasetNotFoundError as err:          # the Debian package dataset-fashion-mnist is missing
        pytest.skip(str(err))
    script = _load_script()
    epsilons = ['0.0', '0.5', '2.0']
    doc = script.main(['--out', str(tmp_path), '--channels', '2', '--nodes', '2', '--limit', '96',
                       '--batch-size', '16', '--theta-batch-size', '16', '--weight-epochs', '1', '--theta-epochs', '1',
                       '--epsilons', *epsilons, '--val-size', '40', '--eval-batch-size', '40',
                       '--recalibrate-batches', '2', '--retrain-epochs', '1', '--retrain-limit', '32',
                       '--retrain-batch-size', '16', '--complexity-samples', '40', '--additivity-samples', '3'])

    for name in ('results.json', 'results.csv', 'loss_vs_params.png', 'supernet_weight_stage.pt'):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name

    rows = doc['rows']
    methods = {r['method'] for r in rows}
    assert methods == {'importance_sampling', 'separate'}
    for method in methods:
        mine = [r for r in rows if r['method'] == method]
        assert sorted(r['epsilon'] for r in mine) == [float(e) for e in epsilons]       # N architectures each
        for r in mine:
            assert r['params_exact'] > 0 and r['params_predicted'] is not None
            assert 0.0 <= r['inherited_val_acc'] <= 1.0 and 0.0 <= r['retrained_val_acc'] <= 1.0
            assert r['retrained_params'] > 0

    # Method 2 runs one θ stage per ε from the same weights: N times the θ updates of the proposed method.
    timing = doc['timing']
    n = len(epsilons)
    assert timing['theta_separate']['theta_updates'] == n * timing['theta_importance_sampling']['theta_updates'] > 0
    assert timing['theta_importance_sampling']['start_fingerprint'] == doc['weights_fingerprint']
    assert timing['theta_separate']['start_fingerprint'] == doc['weights_fingerprint']
    assert len(timing['theta_separate']['per_epsilon_wall_s']) == n
    assert doc['complexity_table']['additivity']['samples'] == 3
    assert 'machine' in doc and 'multi_complexity_fmnist.py' in doc['command'] and '--channels 2' in doc['command']

    with open(tmp_path / 'results.csv') as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * n
    assert {r['method'] for r in table} == {'importance_sampling', 'separate'}
    assert all(int(r['params_exact']) > 0 for r in table)
    json.loads((tmp_path / 'results.json').read_text())                    # valid JSON on disk

"""The asng-nas §3.1 toy experiment (experiments/asng_toy.py) at a size that runs in seconds."""
import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from nni_asng.distributions import CategoricalDistribution
from nni_asng.optimizers import ASNG

SCRIPT = Path(__file__).resolve().parents[1] / 'experiments' / 'asng_toy.py'


@pytest.fixture(scope='module')
def toy():
    spec = importlib.util.spec_from_file_location('asng_toy', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules['asng_toy'] = module          # the worker pool pickles functions by module name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop('asng_toy', None)


# D=10, K=5, ε_x=0.05, 1000 iterations: ASNG(δ⁰=1) reaches the target in < 400 iterations on each of
# the first 20 seed indices (base seed 0); θ frozen at uniform needs the all-optimal architecture,
# probability 5⁻¹⁰ per sample, and never gets there.
D, K, EPS_X, CAP, SEEDS = 10, 5, 0.05, 1000, range(3)


class FrozenASNG(ASNG):
    """Broken on purpose: θ never moves."""

    def _step(self, gradient, utility):
        return False


class MaximisingASNG(ASNG):
    """Broken on purpose: ranks the losses the wrong way round."""

    def utility(self, losses):
        return -super().utility(losses)


def test_objective_target_and_schedule(toy):
    x = np.arange(D * K, dtype=float).reshape(D, K) / 100
    c = np.tile(np.arange(D) % K, (2, 1))
    c[1, 0] = 4
    rows = np.arange(D)
    expected = [(x[rows, ci] ** 2).sum() + D / K ** 2 + ci.sum() / K for ci in c]
    np.testing.assert_allclose(toy.actual_objective(x, c), expected)
    # it is the expectation over z ~ N(0, K⁻²I) of the sampled loss Σ(x − z)² + c/K
    z = np.random.default_rng(0).standard_normal((200_000, D)) / K
    sampled = (((x[rows, c[0]] - z) ** 2).sum(axis=1) + c[0].sum() / K).mean()
    assert sampled == pytest.approx(expected[0], rel=2e-3)
    assert toy.target_value(30, 5) == pytest.approx(1 / 5 + 30 / 25)
    optimum = np.zeros((D, K))
    assert toy.actual_objective(optimum, np.zeros((1, D), dtype=int))[0] < toy.target_value(D, K)
    assert toy.actual_objective(optimum, np.eye(1, D, dtype=int))[0] >= toy.target_value(D, K)   # one c_i = 1
    lr = toy.cosine_schedule(0.05, 100)
    assert lr[0] == 0.05 and lr[50] == pytest.approx(0.025) and 0 < lr[-1] < 1e-4 and np.all(np.diff(lr) < 0)


def test_asng_reaches_target_every_seed(toy):
    for i in SEEDS:
        rec = toy.run_toy('ASNG', 1.0, EPS_X, D=D, K=K, max_iter=CAP, seed_index=i)
        assert rec['success'], rec
        assert rec['iterations'] < CAP and rec['best_actual'] < toy.target_value(D, K)
        assert rec['theta_optimal'] > 2 / K             # θ moved towards the optimal category


@pytest.mark.parametrize('broken', [FrozenASNG, MaximisingASNG])
def test_broken_optimizer_fails(toy, broken):
    for i in SEEDS:
        opt = broken(CategoricalDistribution([K] * D), lam=2, seed=i)
        rec = toy.run_toy('ASNG', 1.0, EPS_X, D=D, K=K, max_iter=CAP, seed_index=i, optimizer=opt)
        assert not rec['success'] and rec['iterations'] == CAP, rec


def test_run_is_deterministic(toy):
    a = toy.run_toy('SNG', 0.1, EPS_X, D=D, K=K, max_iter=300, base_seed=7, seed_index=1)
    b = toy.run_toy('SNG', 0.1, EPS_X, D=D, K=K, max_iter=300, base_seed=7, seed_index=1)
    c = toy.run_toy('SNG', 0.1, EPS_X, D=D, K=K, max_iter=300, base_seed=8, seed_index=1)
    strip = lambda r: {k: v for k, v in r.items() if k not in ('wall_s', 'us_per_iter')}  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def _table(path):
    with open(path) as fh:
        return [{k: v for k, v in row.items() if k not in ('us_per_iter', 'wall_s')} for row in csv.DictReader(fh)]


@pytest.mark.slow
def test_cli_quick_writes_table_and_plot(toy, tmp_path, capsys):
    common = ['--quick', '--steps', '0.1', '10', '--max-iter', '400', '--methods', 'ASNG', 'Adam']
    rows = toy.main(common + ['--processes', '1', '--out', str(tmp_path / 'one')])
    printed = capsys.readouterr().out
    assert 'mean/SR' in printed and 'µs/iteration' in printed
    out = tmp_path / 'one'
    for name in ('results.csv', 'results.json', 'runs.csv', 'runs.jsonl', 'table.txt', 'asng_toy.png'):
        assert (out / name).stat().st_size > 0, name
    assert (out / 'asng_toy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    table = _table(out / 'results.csv')
    assert len(table) == len(rows) == 2 * 2 * 2                       # ε_x × methods × steps
    assert all(int(r['runs']) == 3 for r in table)                     # --quick: 3 seeds
    meta = json.loads((out / 'results.json').read_text())
    assert meta['config']['D'] == 10 and meta['config']['max_iter'] == 400 and '--quick' in meta['command']
    asng = [r for r in rows if r['method'] == 'ASNG' and r['eps_x'] == 0.05]
    assert all(r['success_rate'] == 1.0 and math.isfinite(r['mean_iters_over_sr']) for r in asng)
    # two processes give the same numbers
    toy.main(common + ['--processes', '2', '--no-plot', '--out', str(tmp_path / 'two')])
    assert _table(tmp_path / 'two' / 'results.csv') == table
    # re-summarising the streamed records reproduces the table without running anything
    toy.main(common + ['--no-plot', '--from-runs', str(out / 'runs.jsonl'), '--out', str(tmp_path / 'again')])
    assert _table(tmp_path / 'again' / 'results.csv') == table

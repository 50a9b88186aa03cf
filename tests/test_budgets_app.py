"""Budgets and fronts through the application (issue 23): a config's ``strategy.args.budget`` and a multi-complexity
front over latency on the user's own space and data (tests/pipeline_harness.py), the outputs and the NNI trial's
final result reporting the exports' measured complexity."""
from __future__ import annotations

import json

import pytest

from nni_asng.app import load_config
from pipeline_harness import write_config

# TinySpace (width 4, one input channel): stem 40 + op {conv3 148, conv5 404, pool 0} + act 0 + head 20 parameters.
POOL_ONLY = 100


def test_a_configs_budget_holds_the_export_and_the_trial_reports_it(user_module, tmp_path):
    from nni_asng.app import run_search
    from nni_asng.app.experiment.trial import _search_final
    cfg = load_config(write_config(tmp_path / 'c.yaml', search__epochs=1,
                                   strategy__args={'lam': 2, 'budget': {'metric': 'params', 'max': POOL_ONLY}}))
    result = run_search(cfg, tmp_path / 'search', log=lambda m: None)
    doc = json.loads(result.architecture_file.read_text())
    assert doc['architecture']['op'] == 'pool'
    assert doc['budget'] == {'metric': 'params', 'max': POOL_ONLY, 'measured': 60, 'predicted': 60.0, 'within': True}
    final = _search_final(cfg, result.output, result.architecture_file, 1.0)
    assert final['budget']['measured'] == 60


def test_a_budget_no_architecture_meets_stops_the_run_naming_the_smallest(user_module, tmp_path):
    from nni_asng.app import run_search
    cfg = load_config(write_config(tmp_path / 'c.yaml', search__epochs=1,
                                   strategy__args={'budget': {'metric': 'params', 'max': 50}}))
    from nni_asng.app import ConfigError
    with pytest.raises(ConfigError, match='strategy.args: no architecture .* smallest achievable is 60 parameters'):
        run_search(cfg, tmp_path / 'search', log=lambda m: None)


def test_a_latency_front_from_one_search(user_module, tmp_path):
    from nni_asng.app import run_search
    args = {'epsilons': [0.0, 30.0], 'weight_epochs': 1, 'theta_epochs': 1, 'complexity': 'latency_ms',
            'latency': {'warmup': 2, 'repeats': 5}}
    cfg = load_config(write_config(tmp_path / 'c.yaml', search__epochs=2,
                                   strategy={'name': 'multi_complexity', 'args': args}))
    result = run_search(cfg, tmp_path / 'search', log=lambda m: None)
    rows = json.loads(result.architecture_file.read_text())['architectures']
    assert len(rows) == 2 and all(r['latency_ms'] > 0 and r['predicted_latency_ms'] > 0 for r in rows)
    assert [r['latency_ms'] for r in rows] == sorted(r['latency_ms'] for r in rows)
    assert (result.output / 'complexity.png').stat().st_size > 0


@pytest.mark.parametrize('name', ['budget_latency_nb201_fashion_mnist', 'multi_complexity_latency_nb201_fashion_mnist'])
def test_the_budget_and_front_configs_load(name):
    from pathlib import Path
    cfg = load_config(Path(__file__).resolve().parents[1] / 'experiments' / 'configs' / f'{name}.yaml')
    args = cfg.strategy.args
    assert (args.get('budget') or {}).get('metric') == 'latency_ms' or args.get('complexity') == 'latency_ms'


def test_a_bad_budget_in_a_config_is_named(user_module, tmp_path):
    from nni_asng.app import ConfigError
    with pytest.raises(ConfigError, match=r"strategy.args: .*budget metric must be one of .*'watts'"):
        load_config(write_config(tmp_path / 'c.yaml', strategy__args={'budget': {'metric': 'watts', 'max': 1}}))


def test_a_search_trial_of_a_latency_front_reports_each_export(user_module, tmp_path, monkeypatch):
    """The pipeline's search trial of a front over latency: its final result holds each export's measured latency,
    and the sweep plans one retraining per export, as for a front over parameters."""
    import nni.trial
    from nni.runtime import trial_command_channel as channels

    from nni_asng.app.cli import main
    from nni_asng.app.experiment.sweep import exported_count
    from pipeline_harness import FakeTrialChannel
    monkeypatch.setenv('NNI_PLATFORM', 'local')
    monkeypatch.setenv('NNI_OUTPUT_DIR', str(tmp_path / 'trial'))
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'trial').mkdir()
    monkeypatch.setattr(nni.trial, '_params', None)
    saved = channels._channel
    args = {'epsilons': [0.0, 30.0], 'weight_epochs': 1, 'theta_epochs': 1, 'complexity': 'latency_ms',
            'latency': {'warmup': 2, 'repeats': 5}}
    write_config(tmp_path / 'config.yaml', search__epochs=2, strategy={'name': 'multi_complexity', 'args': args})
    fake = FakeTrialChannel({'phase': 'search', 'search': 'multi_complexity-seed0', 'strategy': 'multi_complexity',
                             'seed': 0, 'config': 'config.yaml'})
    channels.set_default_trial_command_channel(fake)
    try:
        assert main(['trial']) == 0
    finally:
        channels._channel = saved
    [final] = fake.final()
    assert len(final['architectures']) == 2 and sorted(final['epsilons']) == [0.0, 30.0]
    assert len(final['latency_ms_per_architecture']) == 2 and all(v > 0 for v in final['latency_ms_per_architecture'])
    assert exported_count(load_config(tmp_path / 'config.yaml')) == 2

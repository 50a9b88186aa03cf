"""The search-and-retrain pipeline without an NNI manager: the sweep plan, the advisor's decisions (with
a recording channel and a fake REST API) and a trial's reports (with a recording trial channel).
The real experiments are in tests/test_pipeline.py."""
from __future__ import annotations

import json
import os

import pytest

from nni_asng.app import ConfigError, load_config
from pipeline_harness import FakeTrialChannel, write_config

SWEEP = [{'name': 'asng', 'args': {'lam': 2}}, {'name': 'pdas'}, {'name': 'asng', 'args': {'lam': 4}}]


def test_sweep_plan_and_trial_parameters(user_module, tmp_path):
    from nni_asng.app.experiment.sweep import (planned_trials, retrain_parameters, search_config, search_parameters,
                                               search_specs)
    cfg = load_config(write_config(tmp_path / 'c.yaml', launch__sweep={'seeds': [0, 3], 'strategies': SWEEP},
                                   retrain__seeds=[0, 1]))
    specs = search_specs(cfg)
    assert [s.key for s in specs] == ['asng1-seed0', 'asng1-seed3', 'pdas-seed0', 'pdas-seed3', 'asng2-seed0',
                                      'asng2-seed3']
    assert planned_trials(cfg) == 6 * (1 + 2)
    pdas = search_config(cfg, specs[3])
    assert pdas.strategy.name == 'pdas' and pdas.seed == 3 and pdas.space == cfg.space
    params = search_parameters(specs[4], 'config.yaml')
    assert params == {'phase': 'search', 'search': 'asng2-seed0', 'strategy': 'asng', 'seed': 0,
                      'strategy_args': {'lam': 4}, 'config': 'config.yaml'}
    final = {'default': 0.5, 'architectures': [{'op': 'pool', 'act': 'relu'}]}
    retrains = retrain_parameters(cfg, specs[1], final, 'config.yaml', ['search.epochs=1'])
    assert [(p['phase'], p['seed'], p['search_seed'], p['index']) for p in retrains] == [('retrain', 0, 3, 0),
                                                                                     ('retrain', 1, 3, 0)]
    assert all(p['architecture'] == final['architectures'][0] and p['overrides'] == ['search.epochs=1']
               for p in retrains)


def test_multi_complexity_plans_one_retraining_per_epsilon(tmp_path):
    from nni_asng.app.experiment.sweep import exported_count, planned_trials
    path = os.path.join(os.path.dirname(__file__), '..', 'nni_asng', 'app', 'configs',
                        'multi_complexity_enas_fashion_mnist.yaml')
    cfg = load_config(path)
    assert exported_count(cfg) == 4 and planned_trials(cfg) == 1 + 4 * len(cfg.retrain.seeds)


def test_sweep_errors_are_located(user_module, tmp_path):
    path = write_config(tmp_path / 'c.yaml', launch__sweep={'strategies': [{'name': 'asng', 'args': {'lamda': 2}},
                                                                          {'name': 'pdsa'}], 'seeds': [2, 2]})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "launch.sweep.strategies[0].args.lamda: unknown key; did you mean 'lam'?" in text
    assert "launch.sweep.strategies[1].name: unknown strategy 'pdsa'; did you mean 'pdas'?" in text
    assert 'launch.sweep.seeds: seeds must be distinct, got [2, 2]' in text


# ---------------------------------------------------------------------------------------------- the advisor
class FakeRest:
    """The few REST calls the advisor makes (experiment profile, trial list, maxTrialNumber updates)."""

    def __init__(self, code_dir, jobs=()):
        self.profile = {'id': 'exp', 'params': {'trialCodeDirectory': str(code_dir), 'maxTrialNumber': 999}}
        self.jobs = list(jobs)
        self.max_trial_updates: list[int] = []

    def __call__(self, method, path, body=None):
        if method == 'GET' and path == '/experiment':
            return json.loads(json.dumps(self.profile))
        if method == 'GET' and path == '/trial-jobs':
            return self.jobs
        if method == 'PUT' and 'MAX_TRIAL_NUM' in path:
            self.profile = body
            self.max_trial_updates.append(body['params']['maxTrialNumber'])
            return {}
        raise AssertionError((method, path))


def make_advisor(config_path, rest: FakeRest, resumed: bool = False):
    from nni_asng.app.experiment.advisor import PipelineAdvisor
    advisor = PipelineAdvisor(config=config_path.name, command_channel_url='ws://_unittest_')
    advisor._rest = rest
    advisor.sent = []
    advisor.send = lambda command, data: advisor.sent.append((command.value, data))
    advisor.resumed = resumed
    return advisor


def new_trials(advisor):
    out = [json.loads(d) for c, d in advisor.sent if c == 'TR']
    advisor.sent.clear()
    return out


def test_advisor_hands_out_searches_then_their_retraining(user_module, tmp_path):
    path = write_config(tmp_path / 'c.yaml', launch__sweep={'seeds': [0, 1, 2]}, retrain__seeds=[0, 1])
    rest = FakeRest(tmp_path)
    advisor = make_advisor(path, rest)
    advisor.handle_initialize({})
    assert ('ID', '') in advisor.sent and rest.max_trial_updates == [3 * 3]
    advisor.sent.clear()

    advisor.handle_request_trial_jobs(2)                  # two slots: the first two searches
    first = new_trials(advisor)
    assert [(t['parameters']['phase'], t['parameters']['search']) for t in first] == [('search', 'asng-seed0'),
                                                                                      ('search', 'asng-seed1')]
    assert [t['parameter_id'] for t in first] == [0, 1]

    final = {'default': 0.7, 'architectures': [{'op': 'conv3', 'act': 'tanh'}], 'architecture_file': '/x.json'}
    advisor.handle_report_metric_data({'type': 'FINAL', 'parameter_id': 0, 'value': json.dumps(final)})
    assert new_trials(advisor) == [], 'no free slot yet: the retraining waits'
    advisor.handle_trial_end({'event': 'SUCCEEDED', 'hyper_params': json.dumps(first[0])})
    advisor.handle_request_trial_jobs(1)                  # NNI asks again once a trial ended
    third = new_trials(advisor)
    assert [t['parameters']['search'] for t in third] == ['asng-seed2'], 'searches first, in order'
    advisor.handle_request_trial_jobs(2)
    retrains = new_trials(advisor)
    assert [(t['parameters']['phase'], t['parameters']['seed']) for t in retrains] == [('retrain', 0), ('retrain', 1)]
    assert all(t['parameters']['architecture'] == {'op': 'conv3', 'act': 'tanh'} for t in retrains)

    # A failed search starts no retraining and the experiment's trial budget shrinks by what it would have run.
    advisor.handle_trial_end({'event': 'FAILED', 'hyper_params': json.dumps(first[1])})
    assert rest.max_trial_updates[-1] == 3 * 3 - 2
    advisor.handle_report_metric_data({'type': 'FINAL', 'parameter_id': 1, 'value': json.dumps(final)})
    advisor.handle_request_trial_jobs(5)
    assert new_trials(advisor) == [], 'a final result after the failure changes nothing'
    # The third search reports nothing usable: no retraining either.
    advisor.handle_report_metric_data({'type': 'FINAL', 'parameter_id': 2, 'value': json.dumps({'default': 0.1})})
    assert rest.max_trial_updates[-1] == 3 + 2 == advisor.issued


@pytest.mark.parametrize('strategy, exported', [({'name': 'asng'}, 2),
                                                ({'name': 'multi_complexity', 'args': {'epsilons': [0, 0.5, 1]}}, 2)])
def test_advisor_sets_max_trials_to_what_a_search_exported(user_module, tmp_path, strategy, exported):
    """A search that exports more (or fewer) architectures than planned changes maxTrialNumber at once: NNI ends the
    experiment when that many trials ran, so a stale number cuts the retraining short or never ends it."""
    path = write_config(tmp_path / 'c.yaml', strategy=strategy, launch__sweep={'seeds': [0, 1]}, retrain__seeds=[0, 1])
    planned = 3 if strategy['name'] == 'multi_complexity' else 1
    rest = FakeRest(tmp_path)
    advisor = make_advisor(path, rest)
    advisor.handle_initialize({})
    assert rest.max_trial_updates == [2 * (1 + planned * 2)]
    advisor.handle_request_trial_jobs(2)
    new_trials(advisor)
    final = {'architectures': [{'op': 'conv3', 'act': 'tanh'}, {'op': 'pool', 'act': 'relu'}][:exported]}
    advisor.handle_report_metric_data({'type': 'FINAL', 'parameter_id': 0, 'value': json.dumps(final)})
    assert rest.max_trial_updates[-1] == 2 + exported * 2 + planned * 2, 'the first search\'s retraining as exported'
    advisor.handle_request_trial_jobs(10)
    assert len(new_trials(advisor)) == exported * 2


def test_advisor_resumes_from_the_experiments_trials(user_module, tmp_path):
    from nni_asng.app.experiment.sweep import retrain_parameters, search_parameters, search_specs
    path = write_config(tmp_path / 'c.yaml', launch__sweep={'seeds': [0, 1, 2]}, retrain__seeds=[0, 1])
    cfg = load_config(path)
    specs = search_specs(cfg)
    final = {'default': 0.7, 'architectures': [{'op': 'pool', 'act': 'relu'}]}

    def job(pid, params, status, final=None):
        out = {'trialJobId': f't{pid}', 'status': status,
               'hyperParameters': [json.dumps({'parameter_id': pid, 'parameters': params})]}
        if final is not None:
            out['finalMetricData'] = [{'data': json.dumps(json.dumps(final))}]
        return out

    retrain0 = retrain_parameters(cfg, specs[0], final, path.name)
    jobs = [job(0, search_parameters(specs[0], path.name), 'SUCCEEDED', final),
            job(1, search_parameters(specs[1], path.name), 'RUNNING'),       # NNI restarts it itself
            job(2, search_parameters(specs[2], path.name), 'FAILED'),
            job(3, retrain0[0], 'SUCCEEDED', {'default': 0.8})]
    rest = FakeRest(tmp_path, jobs)
    advisor = make_advisor(path, rest, resumed=True)
    advisor.handle_initialize({})
    advisor.sent.clear()
    advisor.handle_request_trial_jobs(3)
    trials = new_trials(advisor)
    assert [(t['parameters']['phase'], t['parameters']['search'], t['parameters']['seed']) for t in trials] == [
        ('retrain', 'asng-seed0', 1)], 'only the missing retraining; no search runs twice'
    assert trials[0]['parameter_id'] == 4, 'parameter ids continue after the earlier ones'
    assert rest.max_trial_updates[-1] == 4 + 1 + 2     # earlier trials + the missing one + seed1's retraining
    advisor.handle_report_metric_data({'type': 'FINAL', 'parameter_id': 1, 'value': json.dumps(final)})
    assert [t['parameters']['search_seed'] for t in new_trials(advisor)] == [1, 1]


def test_advisor_writes_the_trial_table_page(user_module, tmp_path, monkeypatch):
    """<web UI>/logs/trials.html: NNI serves the experiment's log folder (NNI_LOG_DIRECTORY) there; the page sets the
    table's columns and opens it (what it shows: test_pipeline.py, in Chromium)."""
    from nni_asng.app.experiment.webui import COLUMNS
    monkeypatch.setenv('NNI_LOG_DIRECTORY', str(tmp_path))
    make_advisor(write_config(tmp_path / 'c.yaml'), FakeRest(tmp_path)).handle_initialize({})
    page = (tmp_path / 'trials.html').read_text()
    assert json.dumps(COLUMNS) in page and "location.replace('../detail')" in page
    assert COLUMNS[-4:] == ['space/phase', 'space/strategy', 'space/seed', 'space/search']


def test_advisor_reports_a_broken_config(tmp_path):
    path = tmp_path / 'broken.yaml'
    path.write_text('name: x\nspace: {name: nas_bench_201}\nstrategy: {name: asgn}\n')
    advisor = make_advisor(path, FakeRest(tmp_path))
    errors = []
    advisor.report_error = errors.append
    with pytest.raises(ConfigError):
        advisor.handle_initialize({})
    assert "unknown strategy 'asgn'" in errors[0] and 'nni-asng pipeline advisor' in errors[0]


# ---------------------------------------------------------------------------------------------- a trial
@pytest.fixture
def trial_env(tmp_path, monkeypatch):
    """What NNI's local training service sets for a trial, with a recording trial command channel."""
    import nni.trial
    from nni.runtime import trial_command_channel as channels
    monkeypatch.setenv('NNI_PLATFORM', 'local')
    monkeypatch.setenv('NNI_OUTPUT_DIR', str(tmp_path / 'trial'))
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'trial').mkdir()
    saved = channels.get_default_trial_command_channel() if channels._channel is not None else None
    monkeypatch.setattr(nni.trial, '_params', None)

    def use(parameters):
        fake = FakeTrialChannel(parameters)
        channels.set_default_trial_command_channel(fake)
        nni.trial._params = None
        return fake
    yield use
    channels._channel = saved


def argmax_checks(monkeypatch) -> list[tuple[dict, dict, dict]]:
    """Wraps every report of a search trial: (the record, the metrics of the path that was active before the report
    -- the last one sampled --, the metrics of the argmax architecture activated here, by the test itself)."""
    from nni_asng.app.runners.reporter import SearchTrialReporter, evaluate_architecture
    report, checks = SearchTrialReporter.report, []

    def checked(self, trainer, module):
        sampled = evaluate_architecture(module, None, self.loader, self.task, self.batches)   # leaves the search as is
        record = report(self, trainer, module)
        module.activate(module.encoding.to_architecture(module.searcher.most_likely_rows()[0]))
        checks.append((record, sampled, evaluate_architecture(module, None, self.loader, self.task, self.batches)))
        return record
    monkeypatch.setattr(SearchTrialReporter, 'report', checked)
    return checks


def test_search_trial_reports_every_epoch_and_what_it_exported(user_module, tmp_path, trial_env, monkeypatch):
    """What the web UI plots of a search trial: the argmax architecture's accuracy on D_θ (not the path sampled
    last), at every 3rd step and every epoch's end, under a key of its own (no ``default``: that is the retrained
    test accuracy alone); and no NNI experiment of its own in NNI's manifest (``nnictl experiment list``)."""
    from nni.tools.nnictl.config_utils import Experiments

    from nni_asng.app.cli import main
    write_config(tmp_path / 'config.yaml', search__epochs=2, launch__report_every_n_steps=3)
    fake = trial_env({'phase': 'search', 'search': 'asng-seed0', 'strategy': 'asng', 'seed': 0,
                      'config': 'config.yaml'})
    checks = argmax_checks(monkeypatch)
    assert main(['trial']) == 0
    reports = fake.intermediate()
    assert [(r['epoch'], r['step']) for r in reports] == [(0, 3), (0, 6), (0, 8), (1, 9), (1, 12), (1, 15), (1, 16)], \
        'every 3 steps (8 steps/epoch) and at every epoch end, each step once'
    for r in reports:
        assert list(r)[0] == 'argmax_acc' and 'default' not in r, 'the web UI\'s dialog opens on the first key'
        assert {'loss', 'entropy', 'mean_max_prob', 'step_size', 'params', 'epoch', 'step'} <= set(r)
        assert 0.0 <= r['argmax_acc'] <= 1.0 and 0.0 < r['mean_max_prob'] <= 1.0 and r['params'] > 0
    assert [c[0] for c in checks] == reports
    for record, _, argmax in checks:
        assert (record['argmax_acc'], record['loss']) == pytest.approx((argmax['acc'], argmax['loss']), rel=1e-6)
    assert sum(sampled['loss'] != pytest.approx(argmax['loss'], rel=1e-6) for _, sampled, argmax in checks) >= 3, \
        'the argmax must differ from the path sampled last at some reports, else this test could not tell them apart'
    assert Experiments().get_all_experiments() == {}, 'the search trial registers no NNI experiment of its own'
    [final] = fake.final()
    folder = tmp_path / 'trial' / 'search'
    doc = json.loads((folder / 'architecture.json').read_text())
    assert final['architectures'] == [doc['architecture']] and final['architecture_file'] == str(folder /
                                                                                                 'architecture.json')
    assert 'default' not in final and final['argmax_acc'] == reports[-1]['argmax_acc']
    assert final['params'] == reports[-1]['params']
    for name in ('history.json', 'probabilities.json', 'summary.json', 'checkpoints/last.ckpt', 'trial_reports.json',
                 'history.png'):
        assert (folder / name).is_file(), name
    assert {m[1] for m in fake.sent} == {7}, 'every metric carries the trial\'s own parameter id'

    # the retraining trial of that architecture reports per epoch and its final test accuracy
    fake = trial_env({'phase': 'retrain', 'search': 'asng-seed0', 'strategy': 'asng', 'seed': 1, 'search_seed': 0,
                      'index': 0, 'architecture': doc['architecture'], 'config': 'config.yaml'})
    assert main(['trial']) == 0
    assert [r['epoch'] for r in fake.intermediate()] == [0, 1]
    [final] = fake.final()
    record = json.loads((tmp_path / 'trial' / 'retrain' / 'retrain.json').read_text())
    assert record['seed'] == 1 and record['architecture'] == doc['architecture']
    assert final['default'] == record['test']['acc'] and final['params'] == record['params']


def test_trial_outside_nni_or_with_foreign_parameters(user_module, tmp_path, trial_env, monkeypatch, capsys):
    from nni_asng.app.cli import main
    trial_env({'learning_rate': 0.1})
    assert main(['trial']) == 2
    assert 'unexpected trial parameters' in capsys.readouterr().err
    monkeypatch.delenv('NNI_PLATFORM')
    assert main(['trial']) == 2
    assert 'runs inside a trial of an NNI experiment' in capsys.readouterr().err


def test_reports_do_not_change_the_search(tmp_path, monkeypatch):
    """The per-epoch evaluation inside a trial (batch-statistics BatchNorm, frozen RNGs) leaves the search as it
    would have been outside NNI: the same θ trajectory and the same architecture."""
    pytest.importorskip('search_spaces.enas_cell')
    from nni_asng.data.fashion_mnist import DEFAULT_ROOT
    if not (DEFAULT_ROOT / 'train-images-idx3-ubyte.gz').is_file():
        pytest.skip('needs Fashion-MNIST')
    from nni.runtime import trial_command_channel as channels

    from nni_asng.app import run_search
    config = os.path.join(os.path.dirname(__file__), '..', 'nni_asng', 'app', 'configs', 'asng_enas_fashion_mnist.yaml')
    cfg = load_config(config, ['data.limit=192', 'data.batch_size=32', 'space.args.channels=2', 'search.epochs=2',
                               'search.progress_bar=false', 'launch.report_every_n_steps=2'])
    plain = run_search(cfg, tmp_path / 'plain', log=lambda m: None)
    monkeypatch.setenv('NNI_PLATFORM', 'local')
    saved = channels._channel
    fake = FakeTrialChannel({'phase': 'search'})
    channels.set_default_trial_command_channel(fake)
    try:
        import nni.trial
        monkeypatch.setattr(nni.trial, '_params', None)
        reported = run_search(cfg, tmp_path / 'trial', log=lambda m: None)
    finally:
        channels._channel = saved
    assert len(fake.intermediate()) >= 3
    history = [json.loads((tmp_path / name / 'history.json').read_text()) for name in ('plain', 'trial')]
    assert history[0] == history[1] and plain.architectures == reported.architectures
    for name in ('plain', 'trial'):
        assert (tmp_path / name / 'probabilities.json').read_text() == (tmp_path / 'plain' / 'probabilities.json'
                                                                      ).read_text()

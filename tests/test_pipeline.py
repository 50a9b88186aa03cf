"""Search and retraining as ONE real NNI experiment (local training service, CPU), end to end:

* ``nni-asng launch`` on the main Fashion-MNIST config (tiny): an ASNG and a PDAS search side by side,
  each reporting every epoch, then the retraining of what each exported; the web UI's real page in
  headless Chromium lists the search and retraining trials and shows a search trial's curve;
* the user's own space and data (a module outside nni_asng) through ``nni-asng launch``, where one of
  two searches fails: it shows FAILED with its error in the trial log and starts no retraining;
* the plain NNI route: ``nni-asng register`` (``nnictl algo register``), ``nnictl create`` with the
  YAML of experiments/nni, ``nnictl stop`` (the search saves a checkpoint), ``nnictl view`` and
  ``nnictl resume`` (the search continues from its checkpoint, the retraining follows).

NNI writes to tmp only (HOME, NNI_CONFIG_DIR, experiment folders); every experiment is stopped in a
``finally`` block.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli_harness import Launch, decode, free_port, job_parameters, rest
from pipeline_harness import MODULE, write_config, write_user_module

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MAIN_CONFIG = REPO / 'nni_asng' / 'app' / 'configs' / 'asng_enas_fashion_mnist.yaml'
PIPELINE_YML = REPO / 'experiments' / 'nni' / 'asng_enas_fashion_mnist_pipeline.yml'
TINY = ['data.limit=192', 'data.batch_size=32', 'space.args.channels=2', 'search.epochs=2',
        'search.progress_bar=false', 'search.checkpoint_every_n_steps=2', 'retrain.space_args.channels=2',
        'retrain.epochs=1', 'retrain.limit=128', 'retrain.test_limit=100', 'retrain.batch_size=64',
        'retrain.eval_every_n_epochs=1', 'retrain.progress_bar=false', 'retrain.seeds=[0]']
TERMINAL = ('SUCCEEDED', 'FAILED', 'USER_CANCELED', 'SYS_CANCELED', 'EARLY_STOPPED')


def needs_fashion_mnist():
    from nni_asng.data.fashion_mnist import DEFAULT_ROOT
    if not (DEFAULT_ROOT / 'train-images-idx3-ubyte.gz').is_file():
        pytest.skip('needs Fashion-MNIST (apt-get install dataset-fashion-mnist)')


def metrics(port: int, trial: str, kind: str) -> list[dict]:
    return [decode(m['data']) for m in rest(port, '/metric-data') if m['trialJobId'] == trial and m['type'] == kind]


def environment(root: Path, python_path: Path | None = None) -> dict[str, str]:
    import matplotlib
    env = dict(os.environ)
    env.update(HOME=str(root / 'home'), NNI_CONFIG_DIR=str(root / 'nni-config'), PYTHONWARNINGS='ignore',
               OMP_NUM_THREADS='1', MPLCONFIGDIR=matplotlib.get_cachedir(),
               PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}')
    if python_path is not None:
        env['PYTHONPATH'] = f'{python_path}{os.pathsep}{env["PYTHONPATH"]}' if env.get('PYTHONPATH') else str(
            python_path)
    (root / 'home').mkdir(parents=True, exist_ok=True)
    return env


def trial_folder(working: Path, trial: str) -> Path:
    [folder] = [p for p in Path(working).rglob(trial) if p.is_dir() and p.parent.name == 'trials']
    return folder


# ---------------------------------------------------------------------------------------------- main config
@pytest.fixture(scope='module')
def enas_pipeline(tmp_path_factory):
    """The main job's config, tiny, with launch.sweep: ASNG and PDAS side by side, then their retraining."""
    pytest.importorskip('search_spaces.enas_cell')
    needs_fashion_mnist()
    root = tmp_path_factory.mktemp('pipeline')
    sweep = 'launch.sweep.strategies=[{name: asng, args: {lam: 2}}, {name: pdas}]'
    extra = [a for item in TINY + [sweep, 'launch.trial_concurrency=2', 'launch.poll_interval=1']
             for a in ('--set', item)]
    launch = None
    try:
        launch = Launch(MAIN_CONFIG, root / 'run', environment(root), extra)
        yield launch
    finally:
        if launch is not None:
            launch.stop()


def test_searches_run_as_trials_then_their_retraining(enas_pipeline):
    launch = enas_pipeline
    assert launch.result.returncode == 0, launch.output()
    port, stdout = launch.port, launch.result.stdout
    jobs = sorted(rest(port, '/trial-jobs'), key=lambda j: j['sequenceId'])
    assert len(jobs) == 4 and all(j['status'] == 'SUCCEEDED' for j in jobs), [(j['status'], job_parameters(j))
                                                                              for j in jobs]
    searches = [j for j in jobs if job_parameters(j)['phase'] == 'search']
    retrains = [j for j in jobs if job_parameters(j)['phase'] == 'retrain']
    assert sorted(job_parameters(j)['strategy'] for j in searches) == ['asng', 'pdas']
    assert {j['sequenceId'] for j in searches} == {0, 1}, 'both searches start first, side by side'
    for search in searches:
        key, final = job_parameters(search)['search'], decode(search['finalMetricData'][0]['data'])
        [retrain] = [j for j in retrains if job_parameters(j)['search'] == key]
        p = job_parameters(retrain)
        assert p['architecture'] == final['architectures'][0] and p['seed'] == 0 and p['strategy'] == key[:4]
        assert Path(final['architecture_file']).is_file() and final['architecture_file'].endswith(
            'search/architecture.json')
        test = decode(retrain['finalMetricData'][0]['data'])
        assert 0.0 <= test['default'] <= 1.0 and test['params'] > 0
        assert f'search {key} (SUCCEEDED' in stdout
    assert rest(port, '/check-status')['status'] == 'DONE'
    assert rest(port, '/experiment')['params']['maxTrialNumber'] == 4
    # `nnictl experiment list` shows this experiment only: the search trials registered none of their own
    manifest = json.loads((Path(launch.env['HOME']) / 'nni-experiments' / '.experiment').read_text())
    assert list(manifest) == [launch.record['id']] and manifest[launch.record['id']]['port'] == port, manifest

    # each search trial's folder holds what `nni-asng search` writes
    working = Path(launch.record['working_directory'])
    for search in searches:
        folder = trial_folder(working, search['trialJobId']) / 'search'
        for name in ('architecture.json', 'history.json', 'probabilities.json', 'summary.json', 'config.yaml',
                     'history.png', 'distribution.png', 'checkpoints/last.ckpt', 'trial_reports.json'):
            assert (folder / name).is_file(), name
        assert json.loads((folder / 'summary.json').read_text())['status'] == 'done'
    # the command ends with the retrained test accuracy and the web UI's URL, and says who can reach it
    tail = stdout.strip().splitlines()[-3:]
    assert tail[-2].startswith('retrained: ') and tail[-2].count('TEST ACCURACY') == 2, tail
    assert tail[-1].startswith(f'web UI: http://127.0.0.1:{port}/'), tail
    assert 'listens on every network interface' in stdout and f'ssh -L {port}:localhost:{port}' in stdout
    results = json.loads((launch.out / 'launch' / 'results.json').read_text())
    assert sorted(r['strategy'] for r in results) == ['asng', 'pdas']
    assert all(len(r['retrain']) == 1 and r['retrain'][0]['status'] == 'SUCCEEDED' for r in results)


def test_search_trials_report_every_epoch(enas_pipeline):
    port = enas_pipeline.port
    for job in rest(port, '/trial-jobs'):
        p = job_parameters(job)
        reports = metrics(port, job['trialJobId'], 'PERIODICAL')
        if p['phase'] == 'search':
            assert [r['epoch'] for r in reports] == [0, 1], 'one intermediate result per epoch'
            step = 'delta' if p['strategy'] == 'asng' else 'eta'
            for r in reports:
                assert 0.0 <= r['argmax_acc'] <= 1.0 and r['loss'] > 0 and r['params'] > 0 and 'default' not in r
                assert r['entropy'] > 0 and 0.0 < r['mean_max_prob'] <= 1.0 and r['step_size'] > 0, (step, r)
            [final] = metrics(port, job['trialJobId'], 'FINAL')
            assert 'default' not in final and final['argmax_acc'] == reports[-1]['argmax_acc']
        else:
            assert [r['epoch'] for r in reports] == [0], 'retraining: the test accuracy per epoch'
            assert all(0.0 <= r['default'] <= 1.0 for r in reports + metrics(port, job['trialJobId'], 'FINAL'))


def test_launch_yml_runs_with_nnictl(enas_pipeline):
    from nni.experiment.config import ExperimentConfig
    path = enas_pipeline.out / 'launch' / 'launch.yml'
    assert 'nnictl create --config' in path.read_text()
    config = ExperimentConfig.load(str(path))
    config.validate()
    canonical = config.canonical_copy()
    assert canonical.tuner.class_name == 'nni_asng.app.experiment.advisor.PipelineAdvisor'
    assert canonical.tuner.class_args == {'config': 'config.yaml'} and canonical.max_trial_number == 4
    assert canonical.trial_command.endswith('-m nni_asng trial') and canonical.trial_concurrency == 2
    assert (Path(canonical.trial_code_directory) / 'config.yaml').is_file()


def test_web_ui_lists_search_and_retraining_trials(enas_pipeline, tmp_path):
    """The real page in headless Chromium, opened as ``nni-asng launch`` prints it (``logs/trials.html``): every
    row of the trial table shows its phase, search, strategy and seed without being expanded, and a default metric
    for retraining trials only (so the overview's best metric is a retrained test accuracy); a search and a
    retraining trial's parameters, the search trial's intermediate results; plus a screenshot."""
    if not Path(shutil.which('chromium') or '/usr/bin/chromium').is_file():
        pytest.skip('chromium is not installed')
    from webui_browser import trials_page
    launch = enas_pipeline
    assert launch.result.returncode == 0, launch.output()
    jobs = rest(launch.port, '/trial-jobs')
    ids = [j['trialJobId'] for j in jobs]
    search = next(j['trialJobId'] for j in jobs if job_parameters(j)['phase'] == 'search')
    retrain = next(j for j in jobs if job_parameters(j)['phase'] == 'retrain')
    screenshot = tmp_path / 'web_ui_search_trial.png'
    assert launch.record['trials_url'] == launch.record['url'] + 'logs/trials.html'
    assert f"web UI: {launch.record['trials_url']}" in launch.result.stdout
    page = trials_page(launch.record['url'], ids, expand=[search, retrain['trialJobId']], chart=search,
                       screenshot=screenshot, page='logs/trials.html', overview=True)
    assert all(i in page['table'] for i in ids) and 'SUCCEEDED' in page['table']
    columns = ['Trial No.', 'ID', 'Duration', 'Status', 'Default metric', 'phase (space)', 'strategy (space)',
               'seed (space)', 'search (space)']                 # the experiment's search space first, then the rest
    assert page['columns'][:9] == columns, page['columns']
    for job in jobs:                                               # each row as shown; its icons are private-use glyphs
        cells = [c for c in page['collapsed'][job['trialJobId']].split('\n')
                 if c.strip() and not '\ue000' <= c <= '\uf8ff']
        row, p = dict(zip(columns, cells)), job_parameters(job)
        assert [row[c] for c in columns[5:]] == [p['phase'], p['strategy'], str(p['seed']), p['search']], (p, cells)
        assert row['Default metric'].endswith('(FINAL)') == (p['phase'] == 'retrain'), ('retraining only', p, cells)
    best = max(decode(j['finalMetricData'][0]['data'])['default'] for j in jobs if job_parameters(j)['phase'] ==
               'retrain')
    assert re.search(rf'{best:.6f}\s*Best metric', page['overview']), page['overview']
    search_row = re.sub(r'\s+', '', page['rows'][search])
    assert 'phase:"search"' in search_row and 'strategy:' in search_row and 'seed:0' in search_row
    retrain_row = re.sub(r'\s+', '', page['rows'][retrain['trialJobId']])
    label = next(iter(job_parameters(retrain)['architecture']))
    assert 'phase:"retrain"' in retrain_row and 'architecture:' in retrain_row and label in retrain_row
    assert 'Intermediate results' in page['dialog'] and 'argmax_acc' in page['dialog']
    assert len(metrics(launch.port, search, 'PERIODICAL')) >= 2, 'the curve has a point per epoch'

    import matplotlib.image
    image = matplotlib.image.imread(str(screenshot))
    assert image.shape[:2] == (1000, 1400) and float(image[..., :3].std()) > 0.05, 'the screenshot is blank'
    assert screenshot.stat().st_size < 300_000
    print(f'web UI screenshot: {screenshot}')


# ---------------------------------------------------------------------------------------------- failure, user code
def test_failed_search_starts_no_retraining_with_the_users_space_and_data(tmp_path):
    """The user's own ModelSpace and data factory (a module outside nni_asng, on PYTHONPATH) through the
    pipeline; the factory fails on purpose for search seed 1."""
    write_user_module(tmp_path / 'usermod')
    config = write_config(tmp_path / 'user.yaml', launch__sweep={'seeds': [0, 1]},
                          data__factory_args={'n': 256, 'fail_for_seed': 1})
    launch = None
    try:
        launch = Launch(config, tmp_path / 'run', environment(tmp_path, python_path=tmp_path / 'usermod'))
        result = launch.result
        assert result.returncode == 1, launch.output()
        port = launch.port
        jobs = {(job_parameters(j)['phase'], job_parameters(j)['search']): j for j in rest(port, '/trial-jobs')}
        assert set(jobs) == {('search', 'asng-seed0'), ('search', 'asng-seed1'), ('retrain', 'asng-seed0')}
        assert jobs['search', 'asng-seed1']['status'] == 'FAILED'
        assert jobs['search', 'asng-seed0']['status'] == jobs['retrain', 'asng-seed0']['status'] == 'SUCCEEDED'
        assert set(job_parameters(jobs['retrain', 'asng-seed0'])['architecture']) == {'op', 'act'}
        assert rest(port, '/check-status')['status'] == 'DONE', 'the experiment still ends'
        assert rest(port, '/experiment')['params']['maxTrialNumber'] == 3

        failed = trial_folder(Path(launch.record['working_directory']), jobs['search', 'asng-seed1']['trialJobId'])
        assert 'deliberate failure of the data factory for seed 1' in (failed / 'trial.stderr').read_text()
        assert 'did not succeed' in result.stderr and 'deliberate failure of the data factory' in result.stderr
        assert 'search asng-seed1 (FAILED)' in result.stdout and 'no retraining: the search did not succeed' in \
            result.stdout
        assert re.search(r'retrained: asng-seed0 arch 0 seed 0: TEST ACCURACY \d+\.\d\d%', result.stdout)
        retrain = decode(jobs['retrain', 'asng-seed0']['finalMetricData'][0]['data'])
        assert 0.0 <= retrain['default'] <= 1.0
    finally:
        if launch is not None:
            launch.stop()
        sys.modules.pop(MODULE, None)


# ---------------------------------------------------------------------------------------------- plain NNI YAML
def nnictl(*args, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / 'nnictl'), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def start_with_nnictl(command: list, port: int, env: dict, attempts: int = 3) -> str:
    """``nnictl create|resume|view ...``; a start that misses NNI's startup deadlines on a busy machine (REST
    server slow to answer, tuner not connected within 10 s) is stopped and tried again. The wait for that error
    (10 s + 2) ends early where the start shows itself complete: ``view`` (no tuner) once the status is VIEWED,
    ``create`` once a trial job exists (the tuner connected and sent its parameters)."""
    for attempt in range(attempts):
        result = nnictl(*command, '--port', port, env=env)
        output = result.stdout + result.stderr
        match = re.search(r'Experiment ID: (?:\x1b\[\d+m)?(\w+)', output)
        if match and 'Web portal URLs' in output:
            experiment_id = match.group(1)
            deadline = time.time() + 12
            while True:
                status = rest(port, '/check-status')
                started = (command[0] == 'view' and status.get('status') == 'VIEWED') or (
                    command[0] == 'create' and rest(port, '/trial-jobs'))
                if started or time.time() >= deadline or 'did not connect' in ' '.join(status.get('errors') or []):
                    break
                time.sleep(0.5)
            if 'did not connect' not in ' '.join(status.get('errors') or []):
                return experiment_id
            nnictl('stop', experiment_id, env=env)
        elif command[0] in ('view', 'resume'):      # a half-started manager keeps the experiment from starting again
            nnictl('stop', command[1], env=env)
        time.sleep(3)
    raise AssertionError(f'nnictl {command[0]} did not start: {result.stdout[-2000:]} {result.stderr[-2000:]}')


def wait_for(predicate, timeout: float, interval: float = 2.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f'timed out after {timeout} s')


def nni_asng_register(env: dict, *args: str) -> int:
    """``nni-asng register [--unregister]`` in process (what ``python -m nni_asng`` runs, without its seconds of
    imports); its ``nnictl algo`` subprocess sees ``env``'s HOME and NNI_CONFIG_DIR."""
    from nni_asng.app.cli import main
    with pytest.MonkeyPatch.context() as mp:
        for key in ('HOME', 'NNI_CONFIG_DIR', 'PYTHONWARNINGS', 'PATH'):
            mp.setenv(key, env[key])
        return main(['register', *args])


def test_plain_nni_yaml_with_register_stop_view_and_resume(tmp_path, capsys):
    pytest.importorskip('search_spaces.enas_cell')
    needs_fashion_mnist()
    env = environment(tmp_path)
    capsys.readouterr()
    assert nni_asng_register(env) == 0
    registered = capsys.readouterr()
    assert 'NniAsngPipeline' in registered.out, registered.err
    listing = nnictl('algo', 'list', env=env).stdout
    assert 'NniAsngPipeline' in listing and 'nni_asng.app.experiment.advisor' in listing

    experiment = yaml.safe_load(PIPELINE_YML.read_text())
    assert experiment['tuner']['name'] == 'NniAsngPipeline'
    experiment['trialCodeDirectory'] = str(REPO)
    experiment['experimentWorkingDirectory'] = str(tmp_path / 'experiments')
    experiment['tuner']['classArgs']['overrides'] = [o for o in TINY if not o.startswith('search.epochs')] + [
        'search.epochs=20']
    config = tmp_path / 'pipeline.yml'
    config.write_text(yaml.safe_dump(experiment, sort_keys=False))
    port, experiment_id = free_port(), None
    try:
        experiment_id = start_with_nnictl(['create', '--config', config], port, env)
        search = wait_for(lambda: next((j['trialJobId'] for j in rest(port, '/trial-jobs')
                                        if metrics(port, j['trialJobId'], 'PERIODICAL')), None), 600)
        assert job_parameters(rest(port, '/trial-jobs')[0])['phase'] == 'search'

        # nnictl stop: NNI sends the trial SIGINT; the search saves a checkpoint and says how far it got
        assert nnictl('stop', experiment_id, env=env).returncode == 0
        folder = trial_folder(tmp_path / 'experiments', search)
        summary = wait_for(lambda: (json.loads((folder / 'search' / 'summary.json').read_text())
                                    if 'interrupted' in (folder / 'search' / 'summary.json').read_text() else None),
                           60)
        assert summary['error'].startswith('SearchInterrupted: search stopped by SIGINT'), summary['error']
        assert (folder / 'search' / 'checkpoints' / 'last.ckpt').is_file() and summary['global_step'] < 60
        assert 'SIGINT received' in (folder / 'trial.stderr').read_text()

        # nnictl view: the stopped experiment, read-only
        view_port = free_port()
        start_with_nnictl(['view', experiment_id], view_port, env)
        assert rest(view_port, '/check-status')['status'] == 'VIEWED'
        assert [j['trialJobId'] for j in rest(view_port, '/trial-jobs')] == [search]
        nnictl('stop', experiment_id, env=env)

        # nnictl resume: the same trial restarts in its folder and continues from the checkpoint; then retraining
        start_with_nnictl(['resume', experiment_id], port, env)
        wait_for(lambda: rest(port, '/check-status')['status'] == 'DONE', 900, interval=1)
        jobs = {job_parameters(j)['phase']: j for j in rest(port, '/trial-jobs')}
        assert jobs['search']['trialJobId'] == search and jobs['search']['status'] == 'SUCCEEDED'
        assert jobs['retrain']['status'] == 'SUCCEEDED'
        assert 'continuing the interrupted search' in (folder / 'trial.log').read_text()
        summary = json.loads((folder / 'search' / 'summary.json').read_text())
        assert summary['status'] == 'done' and summary['resumed'] and summary['global_step'] == 60
        reports = json.loads((folder / 'search' / 'trial_reports.json').read_text())
        assert [r['epoch'] for r in reports] == list(range(20)), 'each epoch reported once across the two runs'
    finally:
        if experiment_id is not None:
            nnictl('stop', experiment_id, env=env)
        nni_asng_register(env, '--unregister')

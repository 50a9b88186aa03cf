"""The pipeline (``nni-asng launch``) on NNI's remote training service, for real: trials started over SSH.

The "remote machines" are OpenSSH servers on loopback ports of this machine (:mod:`ssh_harness`), listed as two
machines of one ``remote`` training service; each has its own HOME, where NNI's remote service keeps the trials
of that machine. Checked:

* a two-search sweep runs its searches on the two machines (one each), then the retraining: every trial ran
  through NNI's remote service (NNI logged in over SSH, the trial folders are in the machines' HOMEs, none in
  the local service's folder), intermediate and final results reached NNI, every trial ran the parameters NNI
  records for it, the architecture files came back to ``<output>/launch/architectures/``, and ``nni-asng launch``
  printed the retrained accuracy;
* what a user sees when a machine cannot be reached (refused at once, before NNI starts, naming the machine),
  when nniManagerIp is missing, when the machine's Python has NNI but not nni-asng (the search trial fails, the
  command ends with the trial's error and what to install), and when it has no NNI at all (NNI's manager gives
  up at the start; the command ends with NNI's own words and what to do) -- errors, not hangs.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from cli_harness import Launch, decode, free_port, job_parameters, rest
from pipeline_harness import MODULE, write_config, write_user_module
from ssh_harness import Machines, missing_tools, python_without_nni_asng, venv_python_path

pytestmark = [pytest.mark.slow, pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or '')]

#: One retraining seed, two search epochs (an intermediate result each), one thread per process.
SWEEP = {'seeds': [0, 1]}


def environment(root: Path, user_module: Path) -> dict[str, str]:
    """The launching side: private HOME and NNI config folder, the user's module importable."""
    import matplotlib
    (root / 'home').mkdir(parents=True, exist_ok=True)
    return {**os.environ, 'HOME': str(root / 'home'), 'NNI_CONFIG_DIR': str(root / 'nni-config'),
            'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': '1', 'MPLCONFIGDIR': matplotlib.get_cachedir(),
            'PYTHONPATH': os.pathsep.join(filter(None, [str(user_module), os.environ.get('PYTHONPATH')])),
            'PATH': f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}'}


def machine_environment(user_module: Path) -> dict[str, str]:
    """What each "machine" has of its own besides its HOME (sshd's SetEnv): the user's module, pip offline."""
    import matplotlib
    return {'PYTHONPATH': str(user_module), 'PIP_NO_INDEX': '1', 'PIP_DISABLE_PIP_VERSION_CHECK': '1',
            'OMP_NUM_THREADS': '1', 'PYTHONWARNINGS': 'ignore', 'MPLCONFIGDIR': matplotlib.get_cachedir()}


def remote_service(machines, python_paths) -> dict:
    return {'platform': 'remote', 'nniManagerIp': '127.0.0.1',
            'machineList': [m.entry(machines.client_key, p) for m, p in zip(machines, python_paths)]}


@pytest.fixture(scope='module')
def user_module_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp('usermod')
    write_user_module(folder)
    return folder


@pytest.fixture(scope='module')
def machines(tmp_path_factory, user_module_folder):
    machines = Machines(tmp_path_factory.mktemp('ssh'), 2, machine_environment(user_module_folder))
    try:
        yield machines
    finally:
        machines.stop()


def trial_folders(home: Path) -> dict[str, Path]:
    """trial id -> its folder, of the trials NNI's remote service ran on the machine with this HOME."""
    return {p.name: p for p in home.glob('nni-experiments/*/environments/*/trials/*') if p.is_dir()}


# ---------------------------------------------------------------------------------------------- the pipeline
def test_two_searches_on_two_machines_then_the_retraining(machines, user_module_folder, tmp_path, monkeypatch):
    from nni_asng.app.runners.nni_trial import _manager_url
    python = venv_python_path()
    config = write_config(tmp_path / 'remote.yaml', launch__sweep=SWEEP,
                          launch__training_service=remote_service(machines, [python, python]))
    env = environment(tmp_path, user_module_folder)
    logins = [m.logins() for m in machines]
    launch = None
    try:
        launch = Launch(config, tmp_path / 'run', env)
        result, port = launch.result, launch.port
        assert result.returncode == 0, launch.output()
        print(f'nni-asng launch on two SSH machines: {launch.seconds:.0f} s')

        jobs = sorted(rest(port, '/trial-jobs'), key=lambda j: j['sequenceId'])
        assert [j['status'] for j in jobs] == ['SUCCEEDED'] * 4, [(j['status'], job_parameters(j)) for j in jobs]
        searches = [j for j in jobs if job_parameters(j)['phase'] == 'search']
        retrains = [j for j in jobs if job_parameters(j)['phase'] == 'retrain']
        assert [job_parameters(j)['search'] for j in searches] == ['asng-seed0', 'asng-seed1']

        # through SSH: NNI logged in to both machines, and every trial ran in a machine's HOME, one search on each
        assert all(m.logins() > before for m, before in zip(machines, logins)), [m.log.read_text() for m in machines]
        ran_on = {}
        for index, machine in enumerate(machines):
            for trial in trial_folders(machine.home):
                ran_on[trial] = index
        assert set(ran_on) == {j['trialJobId'] for j in jobs}, (ran_on, [j['trialJobId'] for j in jobs])
        assert sorted(ran_on[j['trialJobId']] for j in searches) == [0, 1], 'the searches ran side by side'
        for job in jobs:
            assert job['logPath'].startswith('127.0.0.1:~/nni-experiments/'), job['logPath']
        local = Path(launch.record['working_directory'])
        assert not list(local.rglob('local-env')), 'nothing ran on the local training service'

        # intermediate and final results reached NNI; each trial ran the parameters NNI records for it
        metrics = rest(port, '/metric-data')
        for job in jobs:
            trial, params = job['trialJobId'], job_parameters(job)
            periodical = [decode(m['data']) for m in metrics if m['trialJobId'] == trial and m['type'] == 'PERIODICAL']
            finals = [decode(m['data']) for m in metrics if m['trialJobId'] == trial and m['type'] == 'FINAL']
            assert len(finals) == 1, (trial, finals)
            folder = trial_folders(machines[ran_on[trial]].home)[trial]
            # where a trial on a machine finds NNI's manager, to ask for its own parameters (NNI's remote service
            # hands the queued parameters to whichever trial asks first)
            monkeypatch.setenv('NNI_PLATFORM', 'remote')
            monkeypatch.setenv('NNI_OUTPUT_DIR', str(folder))
            assert _manager_url() == f'http://127.0.0.1:{port}', folder
            if params['phase'] == 'search':
                assert [r['epoch'] for r in periodical] == [0, 1], periodical
                summary = json.loads((folder / 'search' / 'summary.json').read_text())
                assert summary['status'] == 'done' and summary['config']['seed'] == params['seed']
                assert finals[0]['architecture_file'] == str(folder / 'search' / 'architecture.json')
            else:
                assert [r['epoch'] for r in periodical] == [0, 1] and 0.0 <= finals[0]['default'] <= 1.0
                retrained = json.loads((folder / 'retrain' / 'retrain.json').read_text())
                assert retrained['seed'] == params['seed'] == 0

        # the architecture files came back: <output>/launch/architectures/<search>/architecture.json
        results = {r['search']: r for r in json.loads((launch.out / 'launch' / 'results.json').read_text())}
        for search in searches:
            key, trial = job_parameters(search)['search'], search['trialJobId']
            remote_file = trial_folders(machines[ran_on[trial]].home)[trial] / 'search' / 'architecture.json'
            copy = launch.out / 'launch' / 'architectures' / key / 'architecture.json'
            assert json.loads(copy.read_text()) == json.loads(remote_file.read_text())
            assert results[key]['architecture_copy'] == str(copy) and results[key]['architecture_file'] == str(
                remote_file)
            [retrain] = [j for j in retrains if job_parameters(j)['search'] == key]
            assert job_parameters(retrain)['architecture'] == json.loads(copy.read_text())['architecture']
        assert 'architecture files of the searches:' in result.stdout

        # and the command printed the retrained accuracy of both searches
        retrained = [line for line in result.stdout.splitlines() if line.startswith('retrained: ')]
        assert len(retrained) == 1 and len(re.findall(r'TEST ACCURACY \d+\.\d\d%', retrained[0])) == 2, retrained
        assert rest(port, '/check-status')['status'] == 'DONE'
    finally:
        if launch is not None:
            launch.stop()


# ---------------------------------------------------------------------------------------------- what goes wrong
def test_an_unreachable_machine_is_refused_before_nni_starts(machines, user_module_folder, tmp_path, capsys,
                                                            monkeypatch):
    """In process (the refusal comes before NNI starts): a machine nobody listens on, then no nniManagerIp."""
    from nni_asng.app.cli import main
    monkeypatch.setenv('HOME', str(tmp_path))          # were NNI to start after all: its records in tmp
    python = venv_python_path()
    service = remote_service(machines, [python, python])
    dead = free_port()
    service['machineList'][1]['port'] = dead
    config = write_config(tmp_path / 'unreachable.yaml', launch__training_service=service)
    sys.path.insert(0, str(user_module_folder))
    try:
        started = time.time()
        code = main(['launch', str(config), '--output', str(tmp_path / 'run'), '--port', str(free_port())])
        seconds = time.time() - started
        err = capsys.readouterr().err
        assert code == 1 and seconds < 60, (code, seconds, err)
        assert f'trainingService.machineList[1] (127.0.0.1:{dead}) cannot be reached: Connection refused' in err, err
        assert 'Traceback' not in err and not (tmp_path / 'run' / 'launch' / 'launch.json').exists()
        with capsys.disabled():
            print(f'unreachable machine: refused in {seconds:.1f} s, saying\n{err}')

        del service['nniManagerIp']
        config = write_config(tmp_path / 'no_ip.yaml', launch__training_service=service)
        code = main(['launch', str(config), '--output', str(tmp_path / 'run2'), '--port', str(free_port())])
        err = capsys.readouterr().err
        assert code == 1 and 'needs nniManagerIp: an address of THIS machine' in err, err
    finally:
        sys.path.remove(str(user_module_folder))
        sys.modules.pop(MODULE, None)


def test_a_machine_whose_python_lacks_nni_asng(machines, user_module_folder, tmp_path):
    """pythonPath names a Python with NNI but without nni-asng: NNI starts, the search trial fails at once, and
    the command ends (exit 1) with the trial's error from that machine and what to install."""
    python = python_without_nni_asng(tmp_path / 'venv-without-nni-asng')
    service = remote_service(machines, [python])
    service['machineList'] = service['machineList'][:1]
    config = write_config(tmp_path / 'lacking.yaml', launch__training_service=service)
    launch = None
    try:
        launch = Launch(config, tmp_path / 'run', environment(tmp_path, user_module_folder),
                        extra=('--stop-when-done',), timeout=300)
        err = launch.result.stderr
        assert launch.result.returncode == 1, launch.output()
        assert 'No module named nni_asng' in err and 'on 127.0.0.1: FAILED' in err, launch.output()
        assert 'has no nni-asng: install nni-asng there' in err and 'Traceback' not in err.split('FAILED')[0]
        assert 'search asng-seed0 (FAILED)' in launch.result.stdout
        print(f'Python without nni-asng: failed in {launch.seconds:.0f} s, saying\n{err}')
    finally:
        if launch is not None:
            launch.stop()


def test_a_machine_whose_python_has_no_nni(machines, user_module_folder, tmp_path):
    """pythonPath names a Python without NNI: NNI's remote service fails at its start (its `pip install nni`
    cannot succeed offline) and its manager exits; the command says so in NNI's words, with what to do."""
    bare = tmp_path / 'bare-python' / 'bin'
    bare.mkdir(parents=True)
    base = Path(getattr(sys, '_base_executable', sys.executable)).resolve()
    for name in ('python', 'python3'):
        (bare / name).symlink_to(base)
    service = remote_service(machines, [bare])
    service['machineList'] = service['machineList'][:1]
    config = write_config(tmp_path / 'bare.yaml', launch__training_service=service)
    launch = None
    try:
        launch = Launch(config, tmp_path / 'run', environment(tmp_path, user_module_folder), timeout=300)
        err = launch.result.stderr
        assert launch.result.returncode == 1, launch.output()
        assert 'the NNI experiment failed at its start' in err and "NNI's manager stopped" in err, launch.output()
        assert 'pip install nni' in err and 'that Python needs pip, nni 3.0 and nni-asng installed' in err, err
        assert f'is trainingService.machineList[0] (127.0.0.1:{machines[0].port})' in err, err
        assert launch.seconds < 120, launch.seconds
        print(f'Python without NNI: failed in {launch.seconds:.0f} s, saying\n{err}')
    finally:
        if launch is not None:
            launch.stop()


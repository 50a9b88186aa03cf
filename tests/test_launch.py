"""``nni-asng launch``: a REAL NNI experiment (local training service, CPU) whose trials retrain an
architecture; metrics read back from NNI's REST API, the web UI rendered by headless Chromium.

Everything NNI writes goes to tmp (HOME and the experiment working directory); every experiment is
stopped in teardown, even when an assertion fails.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_harness import alive, decode, free_port, job_parameters, rest

CONFIGS = Path(__file__).resolve().parents[1] / 'nni_asng' / 'app' / 'configs'
CONFIG = CONFIGS / 'asng_enas_fashion_mnist.yaml'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'

pytestmark = pytest.mark.slow      # two real NNI experiments (manager, trials): minutes

TINY = ['data.limit=192', 'data.batch_size=32', 'space.args.channels=2', 'retrain.space_args.channels=2',
        'retrain.epochs=2', 'retrain.limit=128', 'retrain.test_limit=100', 'retrain.batch_size=64',
        'retrain.eval_every_n_epochs=1', 'retrain.progress_bar=false', 'retrain.threads=1',
        'launch.poll_interval=1', 'launch.trial_concurrency=2']


def sets(items):
    return [arg for item in items for arg in ('--set', item)]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    pytest.importorskip('search_spaces.enas_cell')
    from nni_asng.data.fashion_mnist import DEFAULT_ROOT
    if not (DEFAULT_ROOT / 'train-images-idx3-ubyte.gz').is_file():
        pytest.skip('needs Fashion-MNIST (apt-get install dataset-fashion-mnist)')
    root = tmp_path_factory.mktemp('launch')
    env = {**os.environ, 'HOME': str(root / 'home'), 'PYTHONWARNINGS': 'ignore'}
    (root / 'home').mkdir()
    return root, env


def write_architecture(folder: Path, seed: int = 0) -> Path:
    """An architecture of the main job's space, as `nni-asng search` writes it (sampled, not searched)."""
    from nni_asng.app import load_config
    from nni_asng.oneshot import SearchSpaceEncoding
    from nni_asng.app import DataInfo, space_entry
    cfg = load_config(CONFIG, TINY)
    space = space_entry('enas_cell').build_space(cfg.space.args, DataInfo(1, 10, (1, 28, 28)))
    encoding = SearchSpaceEncoding(space)
    row = encoding.distribution().sample(1, np.random.default_rng(seed))[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / 'architecture.json'
    path.write_text(json.dumps({'space': 'enas_cell', 'space_args': cfg.space.args, 'strategy': 'asng',
                                'architecture': encoding.to_architecture(row)}))
    return path


class Launched:
    """`nni-asng launch --arch` in a subprocess on a free port; `stop()` ends its experiment whatever happened."""

    def __init__(self, out: Path, env: dict):
        self.out, self.port, self.env = out, free_port(), env
        self.args = [sys.executable, '-m', 'nni_asng', 'launch', str(CONFIG), '--output', str(out), '--port',
                     str(self.port)]
        self.result: subprocess.CompletedProcess | None = None

    def run(self, settings: list[str], seeds: list[int]) -> subprocess.CompletedProcess:
        """Retrain an architecture of :func:`write_architecture` with ``seeds``, ``settings`` passed as ``--set``."""
        arch = write_architecture(self.out)
        self.result = subprocess.run(self.args + sets(settings) + ['--arch', str(arch), '--seeds', *map(str, seeds)],
                                     capture_output=True, text=True, env=self.env, timeout=420)
        return self.result

    @property
    def record(self) -> dict:
        return json.loads((self.out / 'launch' / 'launch.json').read_text())

    def stop(self) -> None:
        record_file = self.out / 'launch' / 'launch.json'
        if not record_file.is_file():
            return
        subprocess.run(self.args + ['--stop'], capture_output=True, text=True, env=self.env, timeout=120)
        pid = self.record.get('pid')
        deadline = time.time() + 30
        while time.time() < deadline and alive(pid):
            time.sleep(0.5)
        if alive(pid):
            os.kill(pid, 9)


@pytest.fixture(scope='module')
def launched(workspace):
    root, env = workspace
    launch = Launched(root / 'run', env)
    try:
        launch.run(TINY, seeds=[0, 1])
        yield launch
    finally:
        launch.stop()


def test_launch_runs_trials_that_report_to_nni(launched):
    result = launched.result
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    port = launched.port
    assert f'web UI: http://127.0.0.1:{port}/' in result.stdout
    assert result.stdout.count('SUCCEEDED') == 2

    jobs = rest(port, '/trial-jobs')
    assert len(jobs) == 2 and all(j['status'] == 'SUCCEEDED' for j in jobs)
    seeds = sorted(job_parameters(j)['seed'] for j in jobs)
    assert seeds == [0, 1]
    for job in jobs:
        final = decode(job['finalMetricData'][0]['data'])
        assert 0.0 <= final['default'] <= 1.0 and final['params'] > 0
    metrics = rest(port, '/metric-data')
    periodical = [m for m in metrics if m['type'] == 'PERIODICAL']
    assert {m['trialJobId'] for m in periodical} == {j['trialJobId'] for j in jobs}
    assert len(periodical) == 4, 'one intermediate result per epoch and trial'
    assert rest(port, '/check-status')['status'] == 'DONE'

    # every trial wrote its own retrain.json into its NNI trial folder
    records = list(Path(launched.record['working_directory']).rglob('retrain.json'))
    assert len(records) == 2 and all(json.loads(p.read_text())['status'] == 'done' for p in records)
    trials = json.loads((launched.out / 'launch' / 'trials.json').read_text())
    assert sorted(t['status'] for t in trials) == ['SUCCEEDED', 'SUCCEEDED']


def test_launch_yml_is_an_nnictl_config(launched):
    from nni.experiment.config import ExperimentConfig
    path = launched.out / 'launch' / 'launch.yml'
    text = path.read_text()
    assert 'nnictl create --config' in text and 'platform: remote' in text and 'platform: kubeflow' in text
    config = ExperimentConfig.load(str(path))
    config.validate()
    assert config.tuner.name == 'GridSearch' and config.max_trial_number == 2
    assert config.trial_gpu_number == (1 if torch.cuda.is_available() else 0)
    assert config.training_service.platform == 'local'
    assert 'nni_asng retrain config.yaml' in config.trial_command


def test_web_ui_renders_the_experiment(launched, tmp_path):
    assert launched.result.returncode == 0
    url = launched.record['url']
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             '--window-size=1280,800', '--virtual-time-budget=15000']
    if not Path(CHROMIUM).is_file():
        pytest.skip('chromium is not installed')
    dom = subprocess.run([CHROMIUM, *flags, f'--user-data-dir={tmp_path / "profile1"}', '--dump-dom', url],
                         capture_output=True, text=True, timeout=120).stdout
    experiment_id = launched.record['id']
    assert experiment_id in dom and 'asng_enas_fashion_mnist' in dom, dom[:2000]
    screenshot = tmp_path / 'web_ui.png'
    subprocess.run([CHROMIUM, *flags, f'--user-data-dir={tmp_path / "profile2"}', f'--screenshot={screenshot}', url],
                   capture_output=True, timeout=120)
    import matplotlib.image
    image = matplotlib.image.imread(str(screenshot))
    assert image.shape[:2] == (800, 1280)
    assert float(image[..., :3].std()) > 0.05, 'the screenshot is blank'
    print(f'web UI screenshot: {screenshot}')


def test_busy_port_is_a_clear_error(launched, workspace, capsys):
    from nni_asng.app.cli import main
    root, _ = workspace
    code = main(['launch', str(CONFIG), '--output', str(root / 'other'), '--port', str(launched.port),
                 '--arch', str(launched.out / 'architecture.json'), *sets(TINY)])
    err = capsys.readouterr().err
    assert code != 0
    assert f'port {launched.port} is already in use' in err and 'Traceback' not in err
    assert not (root / 'other' / 'launch').exists(), 'nothing is written when the port is busy'


def test_stop_ends_the_experiment(launched):
    assert launched.result.returncode == 0
    pid = launched.record['pid']
    assert alive(pid)
    launched.stop()
    assert not alive(pid)
    with pytest.raises(OSError):
        rest(launched.port, '/check-status')


@pytest.mark.skipif(torch.cuda.is_available(), reason='the crash is provoked by asking for CUDA on a CPU machine')
def test_crashing_trial_is_failed_in_nni_and_reported(workspace):
    root, env = workspace
    launch = Launched(root / 'crash', env)
    try:
        result = launch.run(TINY + ['retrain.device=cuda'], seeds=[0])
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
        assert 'FAILED' in result.stdout
        assert 'did not succeed' in result.stderr and 'no CUDA device is visible' in result.stderr
        jobs = rest(launch.port, '/trial-jobs')
        assert [j['status'] for j in jobs] == ['FAILED']
    finally:
        record = launch.out / 'launch' / 'launch.json'
        if record.is_file():     # stop in process (the CLI's --stop is tested above)
            from nni.tools.nnictl.config_utils import Experiments
            from nni_asng.app.experiment.manager import stop_experiment
            info = json.loads(record.read_text())
            saved = Experiments.__init__.__defaults__
            Experiments.__init__.__defaults__ = (str(Path(env['HOME']) / 'nni-experiments'),)  # the launch's manifest
            try:
                stop_experiment(info['id'], info['port'], info.get('pid'))
            finally:
                Experiments.__init__.__defaults__ = saved
            assert not alive(info['pid'])

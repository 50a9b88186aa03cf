"""The example NNI experiment configs for retraining trials on remote machines and Kubernetes
(experiments/nni/*.yml) pass NNI 3.0's own validation (``nni.experiment.config.ExperimentConfig``).

Hosts, NFS servers and images are placeholders, so only what NNI checks offline is checked; the one
local file NNI insists on (the SSH key of a remote machine) is replaced by a temporary file. (The remote
service itself runs in tests/test_remote_service.py.) Also here: the GPUs the pipeline asks NNI for per trial
(``search.devices``), what ``nni-asng launch`` refuses before NNI would fail (a remote service without
nniManagerIp, a multi-node search as a trial), and the YAML for two machines in docs/multi-machine.md.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from nni.experiment.config import ExperimentConfig as NniConfig

from nni_asng.app import parse_config
from nni_asng.app.experiment.launch import build_nni_config

FOLDER = Path(__file__).resolve().parents[1] / 'experiments' / 'nni'
EXAMPLES = sorted(FOLDER.glob('*_training_service.yml'))       # (the *_pipeline.yml run locally)
COMMAND = 'python3 -m nni_asng retrain config.yaml --base .'


def load(path: Path, tmp_path: Path) -> dict:
    raw = yaml.safe_load(path.read_text())
    key = tmp_path / 'id_rsa'
    key.write_text('placeholder key\n')
    for machine in raw['trainingService'].get('machineList', []):
        machine['sshKeyFile'] = str(key)
    return raw


def test_remote_and_kubernetes_examples_exist():
    assert {'remote_training_service.yml', 'kubernetes_training_service.yml'} <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize('path', EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_a_valid_nni_experiment(path, tmp_path):
    raw = load(path, tmp_path)
    config = NniConfig(**raw)
    config.validate()                                   # raises on any schema or value error
    canonical = config.canonical_copy()
    service = canonical.training_service
    assert service.platform == raw['trainingService']['platform'] in ('remote', 'kubeflow')
    command = canonical.trial_command or service.worker.command
    assert command == COMMAND
    assert set(canonical.search_space) == {'arch', 'seed'} and canonical.tuner.name == 'GridSearch'
    arches, seeds = canonical.search_space['arch']['_value'], canonical.search_space['seed']['_value']
    assert canonical.max_trial_number == len(arches) * len(seeds)


@pytest.mark.parametrize('path', EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_training_service_block_works_as_launch_training_service(path, tmp_path):
    """Under ``launch.training_service`` of an nni-asng config, ``nni-asng launch`` writes an experiment
    config that NNI accepts."""
    service = load(path, tmp_path)['trainingService']
    text = yaml.safe_dump({'name': 'remote_retrain', 'space': {'name': 'nas_bench_201'},
                           'strategy': {'name': 'asng'}, 'launch': {'training_service': service}})
    cfg = parse_config(text, source=str(path))
    assert cfg.launch.training_service == service
    nni_config = build_nni_config(cfg, ['archs/a.json', 'archs/b.json'], [0, 1], tmp_path, tmp_path / 'nni')
    assert nni_config['trainingService'] == service and nni_config['trialCommand'] == COMMAND
    NniConfig(**nni_config).validate()


@pytest.mark.parametrize('path', EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_search_and_retrain_pipeline_config_for_the_service(path, tmp_path):
    """``nni-asng launch`` without --arch (searches + retraining as trials, our advisor as the tuner) writes an
    experiment config that NNI accepts for remote machines and Kubeflow too."""
    from nni_asng.app.experiment.advisor import ADVISOR_CLASS
    from nni_asng.app.experiment.pipeline import build_pipeline_config
    service = load(path, tmp_path)['trainingService']
    text = yaml.safe_dump({'name': 'remote_pipeline', 'space': {'name': 'nas_bench_201'},
                           'strategy': {'name': 'asng'}, 'retrain': {'seeds': [0, 1]},
                           'launch': {'training_service': service,
                                      'sweep': {'seeds': [0, 1], 'strategies': [{'name': 'asng'}, {'name': 'pdas'}]}}})
    cfg = parse_config(text, source=str(path))
    nni_config = build_pipeline_config(cfg, tmp_path / 'nni')
    pipeline_command = 'python3 -m nni_asng trial'
    assert nni_config['trialCommand'] == pipeline_command
    assert nni_config['maxTrialNumber'] == 4 * (1 + 2)
    assert nni_config['tuner']['className'] == ADVISOR_CLASS and nni_config['tuner']['classArgs'] == {
        'config': 'config.yaml'}
    if 'worker' in service:                              # Kubeflow's worker runs the trial command
        assert nni_config['trainingService']['worker']['command'] == pipeline_command
    config = NniConfig(**nni_config)
    config.validate()
    canonical = config.canonical_copy()
    assert canonical.training_service.platform == service['platform']
    assert canonical.tuner.class_name == ADVISOR_CLASS


# ---------------------------------------------------------------------------------------------- GPUs per trial
def pipeline_cfg(tmp_path: Path, search: dict | None = None, launch: dict | None = None, retrain: dict | None = None):
    text = yaml.safe_dump({'name': 'gpus', 'space': {'name': 'nas_bench_201'}, 'strategy': {'name': 'asng'},
                           'search': search or {}, 'retrain': retrain or {}, 'launch': launch or {}})
    return parse_config(text, source='gpus.yaml')


@pytest.mark.parametrize('cuda', [True, False], ids=['cuda', 'cpu-only'])
def test_a_search_on_n_devices_asks_nni_for_n_gpus(cuda, tmp_path, monkeypatch):
    """``search.devices: N`` on a CUDA machine: every trial of the pipeline reserves N GPUs (NNI has one
    trialGpuNumber per experiment); a retraining-only launch one; a machine without CUDA none."""
    import torch

    from nni_asng.app.experiment.pipeline import build_pipeline_config
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    cfg = pipeline_cfg(tmp_path, search={'devices': 2})
    nni_config = build_pipeline_config(cfg, tmp_path / 'nni')
    assert nni_config['trialGpuNumber'] == (2 if cuda else 0)
    assert nni_config['trainingService'].get('useActiveGpu') is (True if cuda else None)
    NniConfig(**nni_config).validate()
    retrain_only = build_nni_config(cfg, ['archs/a.json'], [0], tmp_path, tmp_path / 'nni')
    assert retrain_only['trialGpuNumber'] == (1 if cuda else 0), 'a retraining trial uses one GPU'
    # one process per trial: one GPU; everything on the CPU: none, whatever the machine
    assert build_pipeline_config(pipeline_cfg(tmp_path), tmp_path / 'nni')['trialGpuNumber'] == (1 if cuda else 0)
    cpu = pipeline_cfg(tmp_path, search={'devices': 2, 'device': 'cpu'}, retrain={'device': 'cpu'})
    assert build_pipeline_config(cpu, tmp_path / 'nni')['trialGpuNumber'] == 0


def test_gpus_for_trials_on_other_machines(tmp_path, monkeypatch):
    """A launching machine without CUDA: ``device: cuda`` says the trial machines of a remote service have GPUs
    (on the local service, where the trials run here, it does not); an explicit number below search.devices is
    refused with what to set."""
    import torch

    from nni_asng.app.config.errors import LaunchError
    from nni_asng.app.experiment.pipeline import build_pipeline_config
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    remote = {'platform': 'remote', 'nniManagerIp': '10.0.0.1', 'machineList': [{'host': 'h', 'user': 'u'}]}
    cfg = pipeline_cfg(tmp_path, search={'devices': 4, 'device': 'cuda'}, retrain={'device': 'cuda'},
                       launch={'training_service': remote})
    assert build_pipeline_config(cfg, tmp_path / 'nni')['trialGpuNumber'] == 4
    cfg = pipeline_cfg(tmp_path, search={'devices': 4, 'device': 'cuda'}, retrain={'device': 'cuda'})
    assert build_pipeline_config(cfg, tmp_path / 'nni')['trialGpuNumber'] == 0, 'local trials: no GPU here'
    cfg = pipeline_cfg(tmp_path, search={'devices': 4}, launch={'trial_gpu_number': 2})
    with pytest.raises(LaunchError, match=r'launch.trial_gpu_number is 2, but a search trial runs search.devices=4 '
                                          r'processes with one GPU each: set launch.trial_gpu_number to 4'):
        build_pipeline_config(cfg, tmp_path / 'nni')
    cfg = pipeline_cfg(tmp_path, search={'devices': 4}, launch={'trial_gpu_number': 0})
    assert build_pipeline_config(cfg, tmp_path / 'nni')['trialGpuNumber'] == 0, '0: the trials run on CPUs'


# ---------------------------------------------------------------------------------------------- several machines
def test_pipeline_refuses_what_nni_cannot_run(tmp_path):
    from nni_asng.app.config.errors import LaunchError
    from nni_asng.app.experiment.pipeline import build_pipeline_config
    remote = {'platform': 'remote', 'machineList': [{'host': 'h', 'user': 'u', 'sshKeyFile': str(tmp_path)}]}
    cases = [({'training_service': remote}, 'needs nniManagerIp: an address of THIS machine'),
             ({'training_service': {**remote, 'nniManagerIp': '10.0.0.1', 'machineList': [{'host': 'h'}]}},
              r'machineList\[0\] needs user'),
             ({'training_service': {'platform': 'remote', 'nniManagerIp': '10.0.0.1'}}, 'needs a machineList')]
    for launch, message in cases:
        with pytest.raises(LaunchError, match=message):
            build_pipeline_config(pipeline_cfg(tmp_path, launch=launch), tmp_path / 'nni')
    with pytest.raises(LaunchError, match='search.num_nodes is 2: a search on several machines does not run as an '
                                          'NNI trial'):
        build_pipeline_config(pipeline_cfg(tmp_path, search={'num_nodes': 2}), tmp_path / 'nni')


def test_the_yaml_for_two_real_machines_in_the_docs(tmp_path):
    """docs/multi-machine.md's `launch` block for two machines: the pipeline config nni-asng writes from it passes
    NNI's validation (the key file replaced by a temporary one), with the keys the SSH test runs."""
    import re

    from nni_asng.app.experiment.pipeline import build_pipeline_config
    text = (FOLDER.parents[1] / 'docs' / 'multi-machine.md').read_text()
    launch = yaml.safe_load(re.search(r'```yaml\n(launch:\n.*?)```', text, re.S).group(1))['launch']
    service = launch['training_service']
    assert service['platform'] == 'remote' and not service.get('reuseMode', False) and service['nniManagerIp']
    assert len(service['machineList']) == 2
    key = tmp_path / 'id_ed25519'
    key.write_text('placeholder key\n')
    for machine in service['machineList']:
        assert {'host', 'port', 'user', 'sshKeyFile', 'pythonPath'} <= set(machine)
        machine['sshKeyFile'] = str(key)
    cfg = pipeline_cfg(tmp_path, launch=launch)
    nni_config = build_pipeline_config(cfg, tmp_path / 'nni')
    assert nni_config['trialGpuNumber'] == 0 and nni_config['trialConcurrency'] == 2
    assert nni_config['maxTrialNumber'] == 2 * (1 + 1)
    canonical = NniConfig(**nni_config).canonical_copy()
    assert canonical.training_service.nni_manager_ip == '10.0.0.10'
    assert [m.python_path for m in canonical.training_service.machine_list] == [
        '/home/alice/nni-asng/.venv/bin'] * 2

"""The example NNI experiment configs for retraining trials on remote machines and Kubernetes
(experiments/nni/*.yml) pass NNI 3.0's own validation (``nni.experiment.config.ExperimentConfig``).

Hosts, NFS servers and images are placeholders, so only what NNI checks offline is checked; the one
local file NNI insists on (the SSH key of a remote machine) is replaced by a temporary file.
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

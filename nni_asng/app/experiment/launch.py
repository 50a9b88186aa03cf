"""``nni-asng launch``: trials of a real NNI experiment (web UI, REST API, nnictl).

Without ``--arch`` it runs the searches AND the retraining as trials of one experiment: see
:mod:`nni_asng.app.experiment.pipeline`. With ``--arch`` it retrains given architectures,
``nni-asng launch CONFIG --arch ARCH.json``, and writes ``<output>/launch/``::

    config.yaml        the complete experiment config (with --set applied) the trials read
    archs/*.json       one file per architecture (multi_complexity: one per ε)
    launch.yml         the NNI experiment config, runnable as ``nnictl create --config launch.yml --port P``
    launch.json        experiment id, port, web UI URL, trial table (what ``--stop`` reads)
    trials.json        status and metrics of every trial once they ended

and starts the same ``launch.yml`` through NNI's experiment manager (:mod:`.manager`). The search space is a
grid of ``{"arch": <file>, "seed": <n>}`` (NNI's ``GridSearch`` tuner): one trial per architecture and seed,
each running ``python -m nni_asng retrain config.yaml`` which reads its parameters with
``nni.get_next_parameter()``, reports the test metric of every evaluated epoch as an intermediate
result and the final one at the end. The command then polls ``/api/v1/nni/trial-jobs`` until all
trials ended, prints their metrics and fails (exit 1) when a trial failed. ``--stop`` (or
``nnictl stop <id>``) ends the experiment and its web server.
"""
from __future__ import annotations

import time
import urllib.error
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config.errors import LaunchError, OutputExistsError
from ..config.loading import dump_config
from ..config.schema import ExperimentConfig
from ..runners.assembly import retrain_data, validate_architecture
from ..runners.jobs import TERMINAL_STATES
from ..runners.outputs import prepare_output, read_json, write_json, write_text
from ..runners.quiet import quiet_warnings
from ..runners.runs import load_architectures
from .manager import (announce_and_wait, describe_trial, experiment_config, port_in_use, rest_get, start_experiment,
                      stop_experiment, training_service, trial_command, trial_failure, trial_jobs)
from .pipeline import launch_pipeline

__all__ = ['launch_command', 'build_nni_config', 'wait_for_trials']

Log = Callable[[str], None]

_REMOTE_EXAMPLES = """
# ------------------------------------------------------------------------------------------------
# Other training services (NNI 3.0 config reference:
# https://nni.readthedocs.io/en/stable/reference/experiment_config.html). Put the block under
# `launch.training_service` of the nni-asng config (keys as below) and run `nni-asng launch` again,
# or edit `trainingService` here and run `nnictl create --config launch.yml --port 8080`.
# Complete, validated examples: experiments/nni/{remote,kubernetes}_training_service.yml.
# The trial machines need this package (`pip install nni-asng`) and the dataset: docs/multi-machine.md.
#
# trainingService:
#   platform: remote
#   nniManagerIp: 10.0.0.10               # an address of this machine the trial machines reach
#   machineList:
#     - host: 10.0.0.11
#       user: alice
#       sshKeyFile: ~/.ssh/id_rsa
#       pythonPath: /opt/venv/bin          # where `python` with nni-asng lives
#       useActiveGpu: false
#
# trainingService:                          # Kubernetes through Kubeflow's PyTorchJob operator
#   platform: kubeflow
#   reuseMode: true
#   apiVersion: v1
#   operator: pytorch-operator
#   storage:
#     storageType: nfs
#     server: 10.0.0.20
#     path: /exports/nni
#   worker:
#     replicas: 1
#     command: python3 -m nni_asng retrain config.yaml --base .
#     codeDirectory: .
#     gpuNumber: 1
#     cpuNumber: 4
#     memorySize: 16g
#     dockerImage: msranni/nni:latest     # an image with nni-asng installed
# ------------------------------------------------------------------------------------------------
"""


def launch_command(cfg: ExperimentConfig, args, log: Log = print) -> int:
    out = Path(args.output) if args.output else cfg.output_dir
    folder = out / 'launch'
    if args.stop:
        return _stop_command(folder, log)

    port = args.port or cfg.launch.port
    if port_in_use(port):
        raise LaunchError(f'port {port} is already in use (another NNI experiment? `nnictl experiment list`); '
                          f'choose another one with --port or launch.port')
    previous = folder / 'launch.json'
    if previous.is_file() and not args.overwrite:
        info = read_json(previous)
        raise OutputExistsError(f'{folder} already holds a launch (experiment {info.get("id")}, port '
                                f'{info.get("port")}); stop it with `nni-asng launch {cfg.source} --output {out} '
                                f'--stop` and pass --overwrite, or use another --output')
    if previous.is_file():
        info = read_json(previous)
        stop_experiment(info.get('id', ''), info.get('port'), info.get('pid'))
    if not args.arch:            # search + retraining as trials of one experiment (.pipeline)
        return launch_pipeline(cfg, args, out, folder, port, log)
    arch_files = args.arch
    seeds = list(args.seeds or cfg.retrain.seeds)
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise LaunchError(f'--seeds must be distinct non-negative integers, got {seeds}')
    folder = prepare_output(folder, overwrite=args.overwrite, what='a launch')
    names = _write_arch_files(cfg, arch_files, folder, log)
    write_text(folder / 'config.yaml', dump_config(cfg))
    working = Path(cfg.launch.experiment_working_directory or (out / 'nni-experiments')).expanduser().resolve()
    nni_config = build_nni_config(cfg, names, seeds, folder, working)
    header = (f'# NNI experiment: retrain {len(names)} architecture(s) x {len(seeds)} seed(s) of {cfg.name}.\n'
              f'# Written by `nni-asng launch`; start it again with\n'
              f'#   nnictl create --config {folder.resolve() / "launch.yml"} --port {port}\n')
    write_text(folder / 'launch.yml', header + yaml.safe_dump(nni_config, sort_keys=False) + _REMOTE_EXAMPLES)

    experiment = start_experiment(folder / 'launch.yml', port, log=log)
    url = f'http://127.0.0.1:{port}/'
    pid = experiment._proc.pid if experiment._proc is not None else None   # noqa: SLF001 (NNI keeps it there)
    record = {'id': experiment.id, 'port': port, 'url': url, 'pid': pid, 'launch_yml': str(folder / 'launch.yml'),
              'working_directory': str(working), 'trials': [{'arch': n, 'seed': s} for n in names for s in seeds],
              'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    write_json(folder / 'launch.json', record)
    expected = len(names) * len(seeds)
    jobs = announce_and_wait(experiment.id, f'{expected} trial(s)', cfg, out, port, no_wait=args.no_wait, log=log,
                             wait=lambda: wait_for_trials(port, expected, cfg.launch.poll_interval, log))
    if jobs is None:
        return 0
    write_json(folder / 'trials.json', jobs)
    failed = [j for j in jobs if j.get('status') != 'SUCCEEDED']
    if args.stop_when_done:
        stop_experiment(experiment.id, port, pid)
        log(f'experiment {experiment.id} stopped')
    else:
        log(f'all trials ended; the web UI stays at {url} until you stop the experiment')
    if failed:
        raise LaunchError(f'{len(failed)} of {len(jobs)} trial(s) did not succeed:\n' +
                          '\n'.join(trial_failure(j) for j in failed))
    return 0


def _stop_command(folder: Path, log: Log) -> int:
    record_file = folder / 'launch.json'
    if not record_file.is_file():
        raise LaunchError(f'nothing to stop: {record_file} does not exist (was the experiment launched with this '
                          '--output?); `nnictl experiment list` shows running experiments')
    info = read_json(record_file)
    running = stop_experiment(info['id'], info.get('port'), info.get('pid'))
    log(f'experiment {info["id"]} ' + ('stopped' if running else 'was not running'))
    return 0


# ---------------------------------------------------------------------------------------------- --arch
def build_nni_config(cfg: ExperimentConfig, arch_names: list[str], seeds: list[int], folder: Path,
                     working_directory: Path) -> dict[str, Any]:
    """The nnictl-format (camelCase) experiment config of the retraining trials."""
    service, gpus = training_service(cfg, search=False)
    command = trial_command(cfg, 'retrain config.yaml --base .')
    return experiment_config(cfg, search_space={'arch': {'_type': 'choice', '_value': arch_names},
                                                'seed': {'_type': 'choice', '_value': list(seeds)}},
                             command=command, max_trials=len(arch_names) * len(seeds),
                             tuner={'name': 'GridSearch'}, service=service, gpus=gpus,
                             working_directory=working_directory)


def _write_arch_files(cfg: ExperimentConfig, files: list[str | Path], folder: Path, log: Log) -> list[str]:
    """Validate every architecture against the space and write one file per architecture into archs/."""
    info = None
    names: list[str] = []
    for path in files:
        path = Path(path)
        archs = load_architectures(path, cfg)
        if info is None:
            with quiet_warnings():
                info = retrain_data(cfg, cfg.seed).info
        for i, arch in enumerate(archs):
            validate_architecture(cfg, arch, info, path)
            stem = path.stem if len(archs) == 1 else f'{path.stem}_{i}'
            name = f'archs/{stem}.json'
            while name in names:
                stem += '_'
                name = f'archs/{stem}.json'
            doc = {'space': cfg.space.name, 'space_args': dict(cfg.space.args), 'source': str(path.resolve()),
                   'index': i, 'architecture': arch}
            write_json(folder / name, doc)
            names.append(name)
    log(f'{len(names)} architecture(s) validated against space {cfg.space.name!r}')
    return names


def _metric_text(final: Any) -> str:
    if isinstance(final, dict):
        return ', '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}' for k, v in final.items())
    return f'{final:.4f}' if isinstance(final, float) else str(final)


def wait_for_trials(port: int, expected: int, interval: float, log: Log, timeout: float | None = None) -> list[dict]:
    """Poll the REST API until ``expected`` trials reached a terminal state (or the experiment ended)."""
    seen: dict[str, str] = {}
    started = time.time()
    while True:
        try:
            jobs = trial_jobs(port)
            status = rest_get(port, '/check-status').get('status')
        except (urllib.error.URLError, OSError) as err:
            raise LaunchError(f'lost the NNI experiment on port {port}: {err}') from err
        for job in jobs:
            state = job.get('status')
            key = job.get('trialJobId')
            if seen.get(key) != state:
                seen[key] = state
                extra = f': {_metric_text(job["final"])}' if state == 'SUCCEEDED' and job['final'] is not None else ''
                log(f'{describe_trial(job)} {state}{extra}')
        finished = [j for j in jobs if j.get('status') in TERMINAL_STATES]
        if len(finished) >= expected or status in ('DONE', 'STOPPED', 'ERROR'):
            if status == 'ERROR' and len(finished) < expected:
                raise LaunchError(f'the NNI experiment reported an error (status ERROR) after {len(finished)} of '
                                  f'{expected} trial(s); see its log under the experiment working directory')
            return jobs
        if timeout is not None and time.time() - started > timeout:
            raise LaunchError(f'timed out after {timeout:.0f} s waiting for {expected} trial(s)')
        time.sleep(interval)

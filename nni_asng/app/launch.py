"""Trials of a real NNI experiment (web UI, REST API, nnictl).

``nni-asng launch CONFIG`` runs the searches AND the retraining as trials of one experiment: see
:mod:`nni_asng.app.pipeline`. This module holds what both kinds of launch share (start, announce, stop, REST) and
the retraining-only launch of given architectures, ``nni-asng launch CONFIG --arch ARCH.json``, which
writes ``<output>/launch/``::

    config.yaml        the complete experiment config (with --set applied) the trials read
    archs/*.json       one file per architecture (multi_complexity: one per ε)
    launch.yml         the NNI experiment config, runnable as ``nnictl create --config launch.yml --port P``
    launch.json        experiment id, port, web UI URL, trial table (what ``--stop`` reads)
    trials.json        status and metrics of every trial once they ended

and starts the same ``launch.yml`` through NNI's experiment manager (``nni.experiment.Experiment``,
as ``nnictl create`` does, detached: the web UI outlives the command). The search space is a grid of
``{"arch": <file>, "seed": <n>}`` (NNI's ``GridSearch`` tuner): one trial per architecture and seed,
each running ``python -m nni_asng retrain config.yaml`` which reads its parameters with
``nni.get_next_parameter()``, reports the test metric of every evaluated epoch as an intermediate
result and the final one at the end. The command then polls ``/api/v1/nni/trial-jobs`` until all
trials ended, prints their metrics and fails (exit 1) when a trial failed. ``--stop`` (or
``nnictl stop <id>``) ends the experiment and its web server.
"""
from __future__ import annotations

import json
import shlex
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

from .config import ExperimentConfig, dump_config
from .errors import LaunchError, OutputExistsError
from .jobs import TERMINAL_STATES, final_metric, job_parameters
from .outputs import prepare_output, read_json, write_json, write_text

__all__ = ['launch_command', 'start_experiment', 'stop_experiment', 'announce_and_wait', 'rest_get', 'trial_jobs',
           'port_in_use']

Log = Callable[[str], None]
API = '/api/v1/nni'

_REMOTE_EXAMPLES = """
# ------------------------------------------------------------------------------------------------
# Other training services (NNI 3.0 config reference:
# https://nni.readthedocs.io/en/stable/reference/experiment_config.html). Put the block under
# `launch.training_service` of the nni-asng config (keys as below) and run `nni-asng launch` again,
# or edit `trainingService` here and run `nnictl create --config launch.yml --port 8080`.
# Complete, validated examples: experiments/nni/{remote,kubernetes}_training_service.yml.
# The trial machines need this package (`pip install nni-asng`) and the dataset.
#
# trainingService:
#   platform: remote
#   reuseMode: true
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


# ---------------------------------------------------------------------------------------------- REST
def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(('127.0.0.1', port)) == 0


def rest_get(port: int, path: str, timeout: float = 10.0) -> Any:
    """GET ``http://127.0.0.1:<port>/api/v1/nni<path>`` as JSON."""
    with urllib.request.urlopen(f'http://127.0.0.1:{port}{API}{path}', timeout=timeout) as response:
        return json.loads(response.read().decode('utf-8'))


def trial_jobs(port: int) -> list[dict[str, Any]]:
    """The experiment's trials (``/trial-jobs``), with parameters and final metric decoded."""
    jobs = rest_get(port, '/trial-jobs')
    for job in jobs:
        job['parameters'] = job_parameters(job)
        job['final'] = final_metric(job)
    return sorted(jobs, key=lambda j: j.get('sequenceId', 0))


# ---------------------------------------------------------------------------------------------- start / stop
def _gpu_number(cfg: ExperimentConfig) -> int:
    value = cfg.launch.trial_gpu_number
    if value == 'auto':
        import torch
        return 1 if torch.cuda.is_available() else 0
    return int(value)


def training_service(cfg: ExperimentConfig) -> tuple[dict[str, Any], int]:
    """The configured NNI training service (local: may use GPUs other processes use) and the GPUs per trial."""
    service = dict(cfg.launch.training_service)
    gpus = _gpu_number(cfg)
    if service.get('platform') == 'local' and gpus > 0:
        service.setdefault('useActiveGpu', True)
    return service, gpus


def experiment_config(cfg: ExperimentConfig, *, search_space: dict[str, Any], command: str, max_trials: int,
                      tuner: dict[str, Any], service: dict[str, Any], gpus: int,
                      working_directory: Path) -> dict[str, Any]:
    """The nnictl-format (camelCase) experiment config shared by retraining launches and the pipeline."""
    config: dict[str, Any] = {
        'experimentName': cfg.name,
        'searchSpace': search_space,
        'trialCommand': command,
        'trialCodeDirectory': '.',
        'trialConcurrency': cfg.launch.trial_concurrency,
        'trialGpuNumber': gpus,
        'maxTrialNumber': max_trials,
        'tuner': tuner,
        'experimentWorkingDirectory': str(working_directory),
        'trainingService': service,
    }
    if cfg.launch.max_trial_duration:
        config['maxTrialDuration'] = cfg.launch.max_trial_duration
    if cfg.launch.max_experiment_duration:
        config['maxExperimentDuration'] = cfg.launch.max_experiment_duration
    return config


def build_nni_config(cfg: ExperimentConfig, arch_names: list[str], seeds: list[int], folder: Path,
                     working_directory: Path) -> dict[str, Any]:
    """The nnictl-format (camelCase) experiment config of the retraining trials."""
    service, gpus = training_service(cfg)
    python = cfg.launch.python or (sys.executable if service.get('platform') == 'local' else 'python3')
    command = f'{shlex.quote(python)} -m nni_asng retrain config.yaml --base .'
    return experiment_config(cfg, search_space={'arch': {'_type': 'choice', '_value': arch_names},
                                                'seed': {'_type': 'choice', '_value': list(seeds)}},
                             command=command, max_trials=len(arch_names) * len(seeds),
                             tuner={'name': 'GridSearch'}, service=service, gpus=gpus,
                             working_directory=working_directory)


def start_experiment(launch_yml: Path, port: int, attempts: int = 3, log: Callable[[str], None] | None = None):
    """Start ``launch.yml`` as ``nnictl create --config launch.yml --port P`` does (detached).

    NNI gives its REST server a few seconds to answer and the tuner (dispatcher) process 10 seconds to
    connect; on a machine with busy CPUs either can miss its deadline although nothing is wrong. Such a
    start is stopped and tried again (``attempts`` times in all); real errors are raised at once.
    """
    from nni.experiment import Experiment, RunMode
    from nni.experiment.config import ExperimentConfig as NniConfig
    try:
        config = NniConfig.load(str(launch_yml))
        config.validate()
    except Exception as err:
        raise LaunchError(f'{launch_yml}: NNI rejects the experiment config: {err}') from err
    for attempt in range(1, attempts + 1):
        experiment = Experiment(config)
        try:
            experiment.start(port, debug=False, run_mode=RunMode.Detach)
        except Exception as err:
            slow = 'Expecting value' in str(err) or 'Timeout' in str(err)
            if not slow or attempt == attempts:
                raise LaunchError(f'NNI could not start the experiment on port {port}: {err}') from err
            _retry_note(log, attempt, f'its REST server did not answer in time ({err})')
            _wait_port_free(port)
            continue
        problem = _startup_problem(port)
        if problem is None:
            return experiment
        pid = experiment._proc.pid if experiment._proc is not None else None   # noqa: SLF001
        stop_experiment(experiment.id, port, pid)
        if 'did not connect' not in problem or attempt == attempts:
            raise LaunchError(f'the NNI experiment failed at its start: {problem}')
        _retry_note(log, attempt, problem)
        _wait_port_free(port)
    raise AssertionError('unreachable')


def _retry_note(log, attempt: int, why: str) -> None:
    (log or (lambda m: print(m, file=sys.stderr)))(f'NNI start {attempt} failed: {why}; trying again')


def _wait_port_free(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while port_in_use(port) and time.time() < deadline:
        time.sleep(0.5)


def _startup_problem(port: int, timeout: float = 60.0) -> str | None:
    """None once the experiment runs (a trial was submitted, or no error for ``timeout`` s); else NNI's error."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            status = rest_get(port, '/check-status', timeout=10)
            if status.get('status') == 'ERROR':
                return '; '.join(status.get('errors') or []) or 'status ERROR'
            if rest_get(port, '/trial-jobs', timeout=10):
                return None
        except (urllib.error.URLError, OSError, ValueError, AttributeError):
            pass
        time.sleep(1.0)
    return None


def _serves(port: int, experiment_id: str) -> bool:
    """Whether the NNI manager on ``port`` runs ``experiment_id`` (the port may have been reused since)."""
    try:
        return rest_get(port, '/experiment', timeout=5).get('id') == experiment_id
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _manager_process(pid: int | None, experiment_id: str):
    """The NNI manager process ``pid`` if it still runs ``experiment_id`` (never an unrelated reused pid)."""
    import psutil
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        command = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    if any(part.endswith('main.js') for part in command) and experiment_id in command:
        return process
    return None


def stop_experiment(experiment_id: str, port: int | None, pid: int | None = None, timeout: float = 30.0) -> bool:
    """Stop the NNI manager of ``experiment_id`` (and its trials): gracefully through the REST API, then by
    killing its process if it does not exit within ``timeout``. True if it was running."""
    import psutil
    running = False
    if port is not None and _serves(port, experiment_id):
        try:
            request = urllib.request.Request(f'http://127.0.0.1:{port}{API}/experiment', method='DELETE')
            urllib.request.urlopen(request, timeout=10).read()
            running = True
        except (urllib.error.URLError, OSError, ValueError):
            pass
    process = _manager_process(pid, experiment_id)
    if process is not None:
        running = True
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(10)
        except psutil.NoSuchProcess:
            pass
    try:
        from nni.tools.nnictl.config_utils import Experiments
        manifest = Experiments()
        if experiment_id in manifest.get_all_experiments():
            manifest.update_experiment(experiment_id, 'status', 'STOPPED')
            manifest.update_experiment(experiment_id, 'endTime', int(time.time() * 1000))
    except Exception:  # the manifest is bookkeeping only
        pass
    return running


# ---------------------------------------------------------------------------------------------- the command
def _write_arch_files(cfg: ExperimentConfig, files: list[str | Path], folder: Path, log: Log) -> list[str]:
    """Validate every architecture against the space and write one file per architecture into archs/."""
    from .assembly import quiet_warnings, retrain_data, validate_architecture
    from .runs import load_architectures
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
    if not args.arch:            # search + retraining as trials of one experiment (nni_asng.app.pipeline)
        from .pipeline import launch_pipeline
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
                          '\n'.join(_failure(j) for j in failed))
    return 0


def announce_and_wait(experiment_id: str, trials: str, cfg: ExperimentConfig, out: Path, port: int, *,
                      no_wait: bool, wait: Callable[[], list[dict]], log: Log) -> list[dict] | None:
    """Log that the experiment started (``trials``: what it runs), its web UI, the security note and how to stop
    it; then return ``wait()``, the ended trials (None with ``no_wait``). Ctrl-C leaves the experiment running."""
    from .pipeline import security_note
    url = f'http://127.0.0.1:{port}/'
    log(f'NNI experiment {experiment_id} started: {trials}')
    log(f'web UI: {url}   (REST: {url}api/v1/nni/trial-jobs)')
    log(f'note: {security_note(port)}')
    log(f'stop it with: nni-asng launch {cfg.source} --output {out} --stop   (or: nnictl stop {experiment_id})')
    if no_wait:
        return None
    try:
        return wait()
    except KeyboardInterrupt:
        log(f'stopped waiting; the experiment keeps running at {url}')
        raise


def _stop_command(folder: Path, log: Log) -> int:
    record_file = folder / 'launch.json'
    if not record_file.is_file():
        raise LaunchError(f'nothing to stop: {record_file} does not exist (was the experiment launched with this '
                          '--output?); `nnictl experiment list` shows running experiments')
    info = read_json(record_file)
    running = stop_experiment(info['id'], info.get('port'), info.get('pid'))
    log(f'experiment {info["id"]} ' + ('stopped' if running else 'was not running'))
    return 0


def _describe(job: dict) -> str:
    params = job.get('parameters') or {}
    what = ', '.join(f'{k}={v}' for k, v in params.items())
    return f'trial {job.get("trialJobId")} ({what})'


def _metric_text(final: Any) -> str:
    if isinstance(final, dict):
        return ', '.join(f'{k} {v:.4f}' if isinstance(v, float) else f'{k} {v}' for k, v in final.items())
    return f'{final:.4f}' if isinstance(final, float) else str(final)


def _failure(job: dict) -> str:
    text = f'  {_describe(job)}: {job.get("status")}'
    stderr = _stderr_tail(job)
    if stderr:
        text += '\n' + '\n'.join('      ' + line for line in stderr)
    return text


def _stderr_tail(job: dict, lines: int = 12) -> list[str]:
    """Last lines of a local trial's stderr (NNI 3.0 writes ``trial.stderr`` into the trial's folder)."""
    candidates = []
    for key in ('stderrPath', 'logPath'):
        value = job.get(key) or ''
        if value.startswith('file://'):
            value = value.split(':', 2)[-1]
        if value:
            path = Path(value)
            candidates += [path, path / 'trial.stderr', path / 'stderr', path.parent / 'trial.stderr']
    for path in candidates:
        if path.is_file():
            text = path.read_text(encoding='utf-8', errors='replace')
            return [line for line in text.splitlines() if line.strip()][-lines:]
    return []


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
                log(f'{_describe(job)} {state}{extra}')
        finished = [j for j in jobs if j.get('status') in TERMINAL_STATES]
        if len(finished) >= expected or status in ('DONE', 'STOPPED', 'ERROR'):
            if status == 'ERROR' and len(finished) < expected:
                raise LaunchError(f'the NNI experiment reported an error (status ERROR) after {len(finished)} of '
                                  f'{expected} trial(s); see its log under the experiment working directory')
            return jobs
        if timeout is not None and time.time() - started > timeout:
            raise LaunchError(f'timed out after {timeout:.0f} s waiting for {expected} trial(s)')
        time.sleep(interval)

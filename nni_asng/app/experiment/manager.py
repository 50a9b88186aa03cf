"""Talking to NNI's experiment manager: the experiment config, start and stop, the REST API, what to tell the user.

Shared by the two kinds of ``nni-asng launch``: the search-and-retrain pipeline (:mod:`.pipeline`) and the
retraining of given architectures (:mod:`.launch`). An experiment is started as ``nnictl create`` starts it
(``nni.experiment.Experiment``, detached: the web UI outlives the command) and stopped through the REST API,
or by killing its manager process when that does not answer.
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

import psutil
import torch
from nni.experiment import Experiment, RunMode
from nni.experiment.config import ExperimentConfig as NniConfig
from nni.tools.nnictl.config_utils import Experiments

from ..config.errors import LaunchError
from ..config.schema import ExperimentConfig
from ..runners.jobs import final_metric, job_parameters

__all__ = ['API', 'port_in_use', 'rest_get', 'trial_jobs', 'training_service', 'trial_command', 'experiment_config',
           'start_experiment', 'stop_experiment', 'security_note', 'announce_and_wait', 'describe_trial',
           'trial_failure']

Log = Callable[[str], None]
API = '/api/v1/nni'


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


# ---------------------------------------------------------------------------------------------- the experiment
def _gpu_number(cfg: ExperimentConfig) -> int:
    value = cfg.launch.trial_gpu_number
    if value == 'auto':
        return 1 if torch.cuda.is_available() else 0
    return int(value)


def training_service(cfg: ExperimentConfig) -> tuple[dict[str, Any], int]:
    """The configured NNI training service (local: may use GPUs other processes use) and the GPUs per trial."""
    service = dict(cfg.launch.training_service)
    gpus = _gpu_number(cfg)
    if service.get('platform') == 'local' and gpus > 0:
        service.setdefault('useActiveGpu', True)
    return service, gpus


def trial_command(cfg: ExperimentConfig, arguments: str) -> str:
    """``python -m nni_asng <arguments>`` with the trials' Python (``launch.python``; on the local training service
    the one running this command, elsewhere ``python3``)."""
    platform = cfg.launch.training_service.get('platform')
    python = cfg.launch.python or (sys.executable if platform == 'local' else 'python3')
    return f'{shlex.quote(python)} -m nni_asng {arguments}'


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


def start_experiment(launch_yml: Path, port: int, attempts: int = 3, log: Callable[[str], None] | None = None):
    """Start ``launch.yml`` as ``nnictl create --config launch.yml --port P`` does (detached).

    NNI gives its REST server a few seconds to answer and the tuner (dispatcher) process 10 seconds to
    connect; on a machine with busy CPUs either can miss its deadline although nothing is wrong. Such a
    start is stopped and tried again (``attempts`` times in all); real errors are raised at once.
    """
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
        manifest = Experiments()
        if experiment_id in manifest.get_all_experiments():
            manifest.update_experiment(experiment_id, 'status', 'STOPPED')
            manifest.update_experiment(experiment_id, 'endTime', int(time.time() * 1000))
    except Exception:  # the manifest is bookkeeping only
        pass
    return running


# ---------------------------------------------------------------------------------------------- the user
def security_note(port: int) -> str:
    """What to tell whoever gets the web UI's URL."""
    return (f"NNI's web server listens on every network interface of this machine (port {port}) without "
            f'authentication; whoever reaches the port can read the experiment, stop it and kill its trials through '
            f'the REST API. Keep it private: block port {port} in the firewall and open the UI through an SSH tunnel '
            f'from your own machine (ssh -L {port}:localhost:{port} HOST, then http://localhost:{port}/).')


def announce_and_wait(experiment_id: str, trials: str, cfg: ExperimentConfig, out: Path, port: int, *,
                      no_wait: bool, wait: Callable[[], list[dict]], log: Log) -> list[dict] | None:
    """Log that the experiment started (``trials``: what it runs), its web UI, the security note and how to stop
    it; then return ``wait()``, the ended trials (None with ``no_wait``). Ctrl-C leaves the experiment running."""
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


def describe_trial(job: dict) -> str:
    """``trial ID (key=value, ...)``: a trial and its parameters."""
    params = job.get('parameters') or {}
    what = ', '.join(f'{k}={v}' for k, v in params.items())
    return f'trial {job.get("trialJobId")} ({what})'


def trial_failure(job: dict) -> str:
    """A failed trial, with the last lines of its stderr where they can be read."""
    text = f'  {describe_trial(job)}: {job.get("status")}'
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

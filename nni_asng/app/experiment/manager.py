"""Talking to NNI's experiment manager: the experiment config, start and stop, the REST API, what to tell the user.

Shared by the two kinds of ``nni-asng launch``: the search-and-retrain pipeline (:mod:`.pipeline`) and the
retraining of given architectures (:mod:`.launch`). An experiment is started as ``nnictl create`` starts it
(``nni.experiment.Experiment``, detached: the web UI outlives the command) and stopped through the REST API,
or by killing its manager process when that does not answer.
"""
from __future__ import annotations

import json
import re
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
def _gpu_number(cfg: ExperimentConfig, search: bool) -> int:
    """GPUs NNI reserves for every trial (``trialGpuNumber``; NNI has one number per experiment).

    ``launch.trial_gpu_number: auto``: none where the trials will not use CUDA, else what the largest trial uses:
    a search trial runs ``search.devices`` processes, one GPU each (the pipeline, ``search``), a retraining trial
    one GPU. The trials use CUDA when this machine has it, or -- on other machines (not the local service) --
    when the config says ``device: cuda``. A number smaller than a search trial's GPUs is refused (Lightning
    would find fewer GPUs than ``search.devices`` in the trial)."""
    value = cfg.launch.trial_gpu_number
    search_gpus = cfg.search.devices if search and cfg.search.device != 'cpu' else 0
    retrain_gpus = 1 if cfg.retrain.device != 'cpu' else 0
    if value == 'auto':
        elsewhere = cfg.launch.training_service.get('platform') != 'local'
        cuda = torch.cuda.is_available() or (
            elsewhere and 'cuda' in ((cfg.search.device if search else None), cfg.retrain.device))
        return max(search_gpus, retrain_gpus) if cuda else 0
    value = int(value)
    if 0 < value < search_gpus:
        raise LaunchError(f'launch.trial_gpu_number is {value}, but a search trial runs search.devices='
                          f'{cfg.search.devices} processes with one GPU each: set launch.trial_gpu_number to '
                          f'{cfg.search.devices} (or auto), or 0 to run the trials on CPUs')
    return value


def training_service(cfg: ExperimentConfig, search: bool = True) -> tuple[dict[str, Any], int]:
    """The configured NNI training service (local: may use GPUs other processes use) and the GPUs per trial
    (``search``: the trials include searches, as in the pipeline; else only retraining trials)."""
    if search and cfg.search.num_nodes > 1:
        raise LaunchError(f'search.num_nodes is {cfg.search.num_nodes}: a search on several machines does not run '
                          'as an NNI trial (NNI starts every trial on one machine). Run it with `nni-asng search` on '
                          'every node (docs/multi-machine.md), or set search.num_nodes to 1 for the pipeline')
    service = dict(cfg.launch.training_service)
    _check_service(service)
    gpus = _gpu_number(cfg, search)
    if service.get('platform') == 'local' and gpus > 0:
        service.setdefault('useActiveGpu', True)
    return service, gpus


def _check_service(service: dict[str, Any]) -> None:
    """What NNI 3.0 accepts but cannot run: a remote service without ``nniManagerIp`` (its machines would be told
    to connect back to *their own* localhost) or a machine without ``host``/``user``."""
    if service.get('platform') != 'remote':
        return
    machines = service.get('machineList')
    if not isinstance(machines, list) or not machines:
        raise LaunchError('launch.training_service (platform remote) needs a machineList with at least one machine '
                          '(host, user, sshKeyFile, pythonPath); see docs/multi-machine.md')
    if not service.get('nniManagerIp'):
        raise LaunchError('launch.training_service (platform remote) needs nniManagerIp: an address of THIS machine '
                          'that every remote machine can reach (NNI 3.0 otherwise tells them to connect to their own '
                          'localhost, and no trial ever starts); see docs/multi-machine.md')
    for i, machine in enumerate(machines):
        missing = [key for key in ('host', 'user') if not (isinstance(machine, dict) and machine.get(key))]
        if missing:
            raise LaunchError(f'launch.training_service.machineList[{i}] needs {" and ".join(missing)}; see '
                              'docs/multi-machine.md')


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
    canonical = config.canonical_copy()
    remote = getattr(canonical.training_service, 'platform', None) == 'remote'
    if remote:
        for i, machine in enumerate(canonical.training_service.machine_list):
            _check_ssh_server(machine.host, machine.port, f'trainingService.machineList[{i}]')
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
        manager_log = Path(canonical.experiment_working_directory) / experiment.id / 'log' / 'nnimanager.log'
        machines = [f'{m.host}:{m.port}' for m in canonical.training_service.machine_list] if remote else []
        problem = _startup_problem(port, experiment._proc, manager_log,           # noqa: SLF001
                                   first_trial_within=REMOTE_START_TIMEOUT if remote else None, machines=machines)
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


#: Seconds NNI's remote training service gets to start its first trial (SSH logins, NNI's ``pip install nni
#: --upgrade`` and trial keeper on every machine, the upload of the trial code) before ``nni-asng launch`` gives up.
REMOTE_START_TIMEOUT = 300.0


def _startup_problem(port: int, process=None, manager_log: Path | None = None, timeout: float = 60.0,
                     first_trial_within: float | None = None, machines: list[str] = ()) -> str | None:
    """None once the experiment runs (a trial was submitted, or no error for ``timeout`` s); else NNI's error.

    NNI's manager reports some errors through ``/check-status``, but a training service that fails to start
    (an SSH login refused, a remote Python without NNI) makes it log the error and exit: then the error lines of
    ``manager_log`` are the problem. ``first_trial_within``: a trial must have been submitted by then (NNI's
    remote service waits silently for machines that never connect back). ``machines``: ``host:port`` of the remote
    service's machines, in order (NNI's log numbers them from 1)."""
    started = time.time()
    deadline = started + max(timeout, first_trial_within or 0.0)
    while time.time() < deadline:
        try:
            status = rest_get(port, '/check-status', timeout=10)
            if status.get('status') == 'ERROR':
                return '; '.join(status.get('errors') or []) or 'status ERROR'
            if rest_get(port, '/trial-jobs', timeout=10):
                return None
        except (urllib.error.URLError, OSError, ValueError, AttributeError):
            if process is not None and process.poll() is not None:
                return _manager_exit(manager_log, machines)
        if first_trial_within is None and time.time() - started > timeout:
            return None
        time.sleep(1.0)
    if first_trial_within is None:
        return None
    return (f'no trial started within {first_trial_within:.0f} s. NNI\'s remote training service is still waiting '
            f'for its machines: check that every machine can reach nniManagerIp on port {port} (firewall) and '
            f'that NNI can log in and run pythonPath\'s python there.' + _log_errors(manager_log, prefix=' '))


#: What to do about the errors NNI's remote service logs when a machine fails at the start (its words -> ours).
_REMOTE_HINTS = {
    'pip install nni': "NNI 3.0 runs `python -m pip install nni --upgrade` with every machine's Python (the one in "
                       "pythonPath) when it starts, and gives up when that fails: that Python needs pip, nni 3.0 and "
                       "nni-asng installed, and pip must succeed (without internet: PIP_NO_INDEX=1, e.g. `pip config "
                       "--site set global.no-index true` in that environment)",
    'authentication methods failed': 'NNI could not log in: check user and sshKeyFile, and that the public key is in '
                                     '~/.ssh/authorized_keys of that user on the machine',
    'Cannot find python': 'NNI found no Python on the machine: set pythonPath to the folder (not the file) of the '
                          'python that has nni and nni-asng, e.g. /opt/nni-asng/.venv/bin',
}


def _manager_exit(manager_log: Path | None, machines: list[str] = ()) -> str:
    errors = _log_errors(manager_log, prefix=' ')
    hints = [hint for words, hint in _REMOTE_HINTS.items() if words in errors]
    for number in sorted({int(n) for n in re.findall(r'\(RemoteV3\.(?:Ssh|Worker)\.(\d+)\)', errors)}):
        if 0 < number <= len(machines):
            hints.insert(0, f'RemoteV3.*.{number} in NNI\'s log is trainingService.machineList[{number - 1}] '
                            f'({machines[number - 1]})')
    return ("NNI's manager stopped." + (errors or (f' Its log is {manager_log}' if manager_log else '')) +
            ''.join(f'\n{hint}' for hint in hints))


def _log_errors(manager_log: Path | None, prefix: str = '', lines: int = 6) -> str:
    """The last ERROR lines of NNI's manager log (its own words for what failed), with the log's path."""
    if manager_log is None or not manager_log.is_file():
        return ''
    entries: list[list[str]] = []                 # an entry: '[time] LEVEL (source) message', then its lines
    for line in manager_log.read_text(encoding='utf-8', errors='replace').splitlines():
        if line.startswith('[') or not entries:
            entries.append([line])
        elif not line.strip().startswith('at '):   # details (a failed command's stderr), not a stack trace
            entries[-1].append(line)
    errors = [entry[:8] for entry in entries if ' ERROR (' in entry[0]]
    if not errors:
        return ''
    return (f'{prefix}NNI\'s manager logged ({manager_log}):\n' +
            '\n'.join('  ' + line[:400] for entry in errors[-lines:] for line in entry))


def _check_ssh_server(host: str, port: int, where: str, timeout: float = 10.0) -> None:
    """A machine of NNI's remote service answers as an SSH server (NNI itself would fail later, less clearly)."""
    what = f'{where} ({host}:{port})'
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(256)
    except OSError as err:
        reason = 'no answer' if isinstance(err, (socket.timeout, TimeoutError)) else (err.strerror or str(err))
        raise LaunchError(f'the remote machine {what} cannot be reached: {reason} (after at most {timeout:.0f} s). '
                          f'Check host and port, that its SSH server runs, and that no firewall blocks the port; '
                          f'or remove the machine from launch.training_service.machineList') from None
    if not banner.startswith(b'SSH-'):
        raise LaunchError(f'the remote machine {what} answers, but not as an SSH server (it sent {banner[:40]!r}); '
                          f'check the port')


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
        jobs = wait()
    except KeyboardInterrupt:
        log(f'stopped waiting; the experiment keeps running at {url}')
        raise
    for job in jobs:
        if job.get('status') not in (None, 'SUCCEEDED') and not _stderr_tail(job):
            job['stderr_tail'] = _stderr_from_manager(port, job)
    return jobs


def describe_trial(job: dict) -> str:
    """``trial ID (key=value, ...)``: a trial and its parameters."""
    params = job.get('parameters') or {}
    what = ', '.join(f'{k}={v}' for k, v in params.items())
    return f'trial {job.get("trialJobId")} ({what})'


def trial_failure(job: dict) -> str:
    """A failed trial, with the last lines of its stderr where they can be read (``stderr_tail``: fetched from
    NNI's manager, for trials on other machines), and what to do where the trial's Python lacks nni-asng."""
    where = _trial_machine(job)
    text = f'  {describe_trial(job)}{f" on {where}" if where else ""}: {job.get("status")}'
    stderr = job.get('stderr_tail') or _stderr_tail(job)
    if stderr:
        text += '\n' + '\n'.join('      ' + line for line in stderr)
    if any("No module named nni_asng" in line or "No module named 'nni_asng'" in line for line in stderr):
        text += (f'\n    the Python that ran this trial{f" on {where}" if where else ""} has no nni-asng: install '
                 'nni-asng there (the same version as here), or point the machine\'s pythonPath (remote service) or '
                 'launch.python to a Python that has it; docs/multi-machine.md lists what every machine needs')
    return text


def _trial_machine(job: dict) -> str:
    """``HOST`` of a trial NNI ran on another machine (its logPath is ``HOST:~/nni-experiments/...``)."""
    log_path = str(job.get('logPath') or '')
    if ':' not in log_path or log_path.startswith(('/', 'file:')):
        return ''
    return log_path.split(':', 1)[0]


def _stderr_from_manager(port: int, job: dict, lines: int = 12) -> list[str]:
    """Last lines of a trial's stderr through NNI's REST API (``/trial-file/ID/stderr``; NNI's remote service
    fetches it from the trial's machine over SSH)."""
    trial = job.get('trialJobId')
    if not trial:
        return []
    try:
        with urllib.request.urlopen(f'http://127.0.0.1:{port}{API}/trial-file/{trial}/stderr', timeout=30) as response:
            text = response.read().decode('utf-8', errors='replace')
    except (urllib.error.URLError, OSError, ValueError):
        return []
    if text.strip() == 'stderr is empty.' or text.startswith('NNI internal error'):
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


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

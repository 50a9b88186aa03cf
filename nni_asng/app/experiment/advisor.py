"""The NNI advisor of the search-and-retrain pipeline (``tuner: {name: NniAsngPipeline}`` once registered).

An advisor (``MsgDispatcherBase``) rather than a ``Tuner``: NNI asks a tuner for parameters only when a
trial slot frees up, and its dispatcher sends "no more trials" as soon as ``generate_parameters``
raises ``NoMoreTrialError`` -- a search still running would leave its retraining without slots. The
advisor instead keeps the requests it could not serve (``credit``) and serves them when a search
trial's final result arrives with the exported architecture(s)::

    requested trial slots  -> search trials first (launch.sweep: strategies x seeds), in order
    a search's FINAL result -> retraining trials: every exported architecture x retrain.seeds
    a search ends without one (FAILED, killed, ...) -> no retraining; the experiment's maxTrialNumber
                              shrinks by the trials it would have started, so NNI still ends it (DONE)

The experiment's maxTrialNumber is set (through NNI's REST API, the one the web UI uses) to exactly
the trials that will run, so the experiment is DONE when the last one ends. After ``nnictl resume``,
the advisor rebuilds its state from the experiment's trials: searches that had finished do not run
again, retraining trials not yet started are handed out, and trials that were running when the
experiment stopped are restarted by NNI itself (in their own folders: an interrupted search continues
from its checkpoint, see :mod:`nni_asng.app.experiment.trial`). At the start the advisor writes
``<web UI>/logs/trials.html`` (:mod:`.webui`): the trial table with phase, strategy, seed and search as columns.

This module imports only NNI's dispatcher, :mod:`~nni_asng.app.runners.jobs` (``json``) and :mod:`.webui` (the
standard library) at import time: NNI gives the dispatcher process 10 seconds to connect. The nni-asng config
(and the torch-heavy code that reads it) is loaded afterwards, when NNI initialises the advisor.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

from nni.runtime.msg_dispatcher_base import MsgDispatcherBase
from nni.runtime.tuner_command_channel import CommandType

from ..runners.jobs import TERMINAL_STATES, final_metric, job_parameter_id, job_parameters, parameter_record
from .webui import write_trials_page

__all__ = ['PipelineAdvisor', 'ADVISOR_CLASS', 'ADVISOR_NAME']

#: The name NNI experiment YAMLs give the advisor once ``nni-asng register`` registered it.
ADVISOR_NAME = 'NniAsngPipeline'

_logger = logging.getLogger('nni_asng.advisor')


class _Search:
    """What the advisor knows about one search of the sweep."""

    def __init__(self, spec, exported: int, retrain_seeds: int):
        self.spec = spec
        self.planned_retrains = exported * retrain_seeds
        self.state = 'planned'            # planned -> queued -> issued -> done | failed
        self.parameter_id: int | None = None


class PipelineAdvisor(MsgDispatcherBase):
    """Hands out the pipeline's search trials, then the retraining of what each search exports.

    Parameters (``classArgs``)
    ----------
    config
        The nni-asng experiment config (YAML); a relative path is relative to the experiment's
        ``trialCodeDirectory``, where the trials run (they receive the same path).
    overrides
        ``key.path=value`` strings applied to it, as ``--set`` does.
    """

    def __init__(self, config: str, overrides: list[str] | None = None, command_channel_url: str | None = None,
                 rest_url: str | None = None):
        super().__init__(command_channel_url)           # connects to the NNI manager first (10 s limit)
        if not isinstance(config, str) or not config:
            raise ValueError(f'{type(self).__name__}: classArgs.config must be the path of an nni-asng config, '
                             f'got {config!r}')
        self.config_ref = config
        self.overrides = [str(o) for o in (overrides or [])]
        self.rest_url = rest_url or _rest_url_from_env()
        self.lock = threading.RLock()
        self.cfg = None
        self.searches: dict[str, _Search] = {}
        self.queue: deque[dict] = deque()
        self.credit = 0
        self.issued = 0                                  # trials the manager knows of or will submit
        self.params: dict[int, dict] = {}               # parameter_id -> parameters
        self.next_id = 0
        self.max_trials: int | None = None
        self.resumed = False
        self.ended_without_final: set[int] = set()

    # ------------------------------------------------------------------ NNI's commands
    def load_checkpoint(self):
        self.resumed = True                              # NNI calls this first when the experiment resumes

    def save_checkpoint(self):
        pass

    def handle_initialize(self, data):
        self._write_trials_page()
        try:
            self._load_config()
            with self.lock:
                if self.resumed:
                    self._rebuild_from_trials()
                else:
                    for search in self.searches.values():
                        self._queue_search(search)
                self._update_max_trials()
        except Exception as err:
            message = f'nni-asng pipeline advisor: {type(err).__name__}: {err}'
            _logger.error(message)
            self.report_error(message)
            raise
        self.send(CommandType.Initialized, '')

    def handle_request_trial_jobs(self, data):
        with self.lock:
            self.credit += int(data)
            self._flush()

    def handle_update_search_space(self, data):
        pass                                             # the sweep comes from the nni-asng config

    def handle_import_data(self, data):
        pass                                             # resume: rebuilt from the REST API instead

    def handle_add_customized_trial(self, data):
        pass

    def handle_report_metric_data(self, data):
        if data.get('type') == 'REQUEST_PARAMETER':
            self.send(CommandType.SendTrialJobParameter, json.dumps({
                'parameter_id': None, 'parameter_source': 'algorithm', 'parameters': None,
                'trial_job_id': data.get('trial_job_id'), 'parameter_index': data.get('parameter_index')}))
            return
        if data.get('type') != 'FINAL':
            return
        value = data.get('value')
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        with self.lock:
            params = self.params.get(data.get('parameter_id'))
            if params is None or params.get('phase') != 'search':
                return
            search = self.searches.get(params.get('search'))
            if search is None or search.state in ('done', 'failed'):
                return
            self._search_finished(search, value)

    def handle_trial_end(self, data):
        hyper = parameter_record(data.get('hyper_params') or '{}')
        if hyper is None:
            return
        parameter_id = hyper.get('parameter_id')
        params = hyper.get('parameters') or self.params.get(parameter_id) or {}
        if params.get('phase') != 'search':
            return
        if data.get('event') == 'SUCCEEDED':
            # The final result travels on another queue of this dispatcher: give it a moment.
            deadline = time.time() + 30
            while time.time() < deadline:
                with self.lock:
                    search = self.searches.get(params.get('search'))
                    if search is None or search.state in ('done', 'failed'):
                        return
                time.sleep(0.2)
        with self.lock:
            search = self.searches.get(params.get('search'))
            if search is not None and search.state not in ('done', 'failed'):
                _logger.warning('search %s ended (%s) without a final result: no retraining', search.spec.key,
                                data.get('event'))
                self._search_failed(search)

    def _write_trials_page(self) -> None:
        """``<web UI>/logs/trials.html``: the trial table with phase, strategy, seed and search as columns
        (:mod:`.webui`). A page that cannot be written costs the columns only."""
        try:
            path = write_trials_page()
        except OSError as err:
            _logger.warning('could not write the web UI page of the trial table: %s', err)
            return
        if path is not None:
            _logger.info('trial table with the pipeline\'s columns: <web UI>/logs/%s (%s)', path.name, path)

    # ------------------------------------------------------------------ the plan
    def _load_config(self) -> None:
        # lazy: the dispatcher connects within 10 s (see the module docstring)
        from ..config.loading import load_config
        from .sweep import exported_count, search_config, search_specs
        path = Path(self.config_ref)
        if not path.is_absolute():
            base = self._trial_code_directory()
            path = (base / path) if base is not None else path.resolve()
        cfg = load_config(path, self.overrides)
        self.cfg = cfg
        seeds = len(cfg.retrain.seeds)
        for spec in search_specs(cfg):
            self.searches[spec.key] = _Search(spec, exported_count(search_config(cfg, spec)), seeds)
        _logger.info('pipeline of %s: searches %s, %d retraining seed(s) each', path, list(self.searches), seeds)

    def _trial_code_directory(self) -> Path | None:
        profile = self._rest('GET', '/experiment')
        folder = (profile or {}).get('params', {}).get('trialCodeDirectory')
        return Path(folder) if folder else None

    def _queue_search(self, search: _Search) -> None:
        from .sweep import search_parameters  # lazy: the dispatcher connects within 10 s
        search.state = 'queued'
        self.queue.append(search_parameters(search.spec, self.config_ref, self.overrides))

    def _search_finished(self, search: _Search, final: Any) -> None:
        from .sweep import retrain_parameters  # lazy: the dispatcher connects within 10 s
        archs = final.get('architectures') if isinstance(final, dict) else None
        if not archs:
            _logger.warning('search %s reported no architectures (%r): no retraining', search.spec.key, final)
            self._search_failed(search)
            return
        search.state = 'done'
        retrains = retrain_parameters(self.cfg, search.spec, final, self.config_ref, self.overrides)
        _logger.info('search %s exported %d architecture(s): %d retraining trial(s)', search.spec.key, len(archs),
                     len(retrains))
        self.queue.extend(retrains)
        if len(retrains) != search.planned_retrains:
            search.planned_retrains = len(retrains)
            self._update_max_trials()
        self._flush()

    def _search_failed(self, search: _Search) -> None:
        search.state = 'failed'
        self._update_max_trials()

    def _flush(self) -> None:
        while self.credit > 0 and self.queue:
            params = self.queue.popleft()
            parameter_id = self.next_id
            self.next_id += 1
            self.params[parameter_id] = params
            if params.get('phase') == 'search':
                search = self.searches[params['search']]
                search.state, search.parameter_id = 'issued', parameter_id
            self.send(CommandType.NewTrialJob, json.dumps({
                'parameter_id': parameter_id, 'parameter_source': 'algorithm', 'parameters': params,
                'parameter_index': 0}))
            self.credit -= 1
            self.issued += 1

    def _expected(self) -> int:
        """Trials the manager knows of (or will submit) + the ones still to come."""
        future = len(self.queue)
        for search in self.searches.values():
            if search.state in ('planned', 'queued', 'issued'):
                future += search.planned_retrains
        return self.issued + future

    def _update_max_trials(self) -> None:
        expected = self._expected()
        if expected == self.max_trials:
            return
        profile = self._rest('GET', '/experiment')
        if not profile:
            _logger.warning('could not read the experiment profile to set maxTrialNumber=%d', expected)
            return
        profile['params']['maxTrialNumber'] = expected
        if self._rest('PUT', '/experiment?update_type=MAX_TRIAL_NUM', profile) is not None:
            self.max_trials = expected
            _logger.info('maxTrialNumber = %d', expected)

    # ------------------------------------------------------------------ resume
    def _rebuild_from_trials(self) -> None:
        """After ``nnictl resume``: which searches ended (with which result), which retraining trials exist."""
        from .sweep import retrain_parameters  # lazy: the dispatcher connects within 10 s
        jobs = self._rest('GET', '/trial-jobs') or []
        retrains_seen: dict[str, set] = {}
        finals: dict[str, Any] = {}
        for job in jobs:
            params = job_parameters(job)
            key = params.get('search')
            if key not in self.searches:
                continue
            self.issued += 1
            if params.get('phase') == 'retrain':
                retrains_seen.setdefault(key, set()).add((params.get('index', 0), params.get('seed')))
                continue
            search = self.searches[key]
            final = final_metric(job)
            if isinstance(final, dict) and final.get('architectures'):
                search.state = 'done'
                finals[key] = final
            elif job.get('status') in TERMINAL_STATES:
                search.state = 'failed'
            else:
                search.state = 'issued'                 # NNI restarts it; its final result will come
        # Parameter ids of this advisor must not collide with the earlier ones (NNI keys metrics by them).
        self.next_id = 1 + max([job_parameter_id(j) for j in jobs if job_parameter_id(j) is not None] or [-1])
        for key, search in self.searches.items():
            if search.state == 'planned':
                self._queue_search(search)
            elif search.state == 'done':
                seen = retrains_seen.get(key, set())
                todo = [p for p in retrain_parameters(self.cfg, search.spec, finals[key], self.config_ref,
                                                      self.overrides)
                        if (p['index'], p['seed']) not in seen]
                self.queue.extend(todo)
        for job in jobs:                                  # remember the restarted searches' parameters
            params, pid = job_parameters(job), job_parameter_id(job)
            if pid is not None and params:
                self.params[pid] = params
        _logger.info('resumed: %d earlier trial(s); %d trial(s) queued', len(jobs), len(self.queue))

    # ------------------------------------------------------------------ REST
    def _rest(self, method: str, path: str, body: Any = None) -> Any:
        if self.rest_url is None:
            return None
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.rest_url + path, data=data, method=method,
                                         headers={'Content-Type': 'application/json'} if data else {})
        for attempt in range(5):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    text = response.read().decode('utf-8')
                    return json.loads(text) if text.strip() else {}
            except (urllib.error.URLError, OSError, ValueError) as err:
                _logger.warning('REST %s %s failed (%s), attempt %d', method, path, err, attempt + 1)
                time.sleep(1.0)
        return None


#: How NNI experiment configs name the advisor by class (``tuner.className``, and ``nnictl algo register``).
ADVISOR_CLASS = f'{PipelineAdvisor.__module__}.{PipelineAdvisor.__qualname__}'


def _rest_url_from_env() -> str | None:
    """The manager's REST API, beside the dispatcher's WebSocket (``ws://localhost:PORT[/prefix]/tuner``)."""
    url = os.environ.get('NNI_TUNER_COMMAND_CHANNEL', '')
    if not url.startswith('ws://') or not url.endswith('/tuner'):
        return None
    return 'http://' + url[len('ws://'):-len('/tuner')] + '/api/v1/nni'

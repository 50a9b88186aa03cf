"""This process as a trial of an NNI experiment: its own parameter record and the channel its metrics go to.

Used by a search run inside a trial (:class:`~nni_asng.app.runners.reporter.SearchTrialReporter`), by
``nni-asng retrain`` inside a trial and by the pipeline's trial command (:mod:`nni_asng.app.experiment.trial`).
"""
from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

import nni
import nni.trial
from nni.runtime.env_vars import trial_env_vars
from nni.runtime.trial_command_channel import get_default_trial_command_channel

from .jobs import hyper_parameters

__all__ = ['TrialChannel']

_logger = logging.getLogger(__name__)


class TrialChannel:
    """Sends this trial's metrics to NNI's manager, whatever channel is current when they are sent.

    A one-shot search runs in NNI's sequential execution engine, which swaps the trial command channel
    (and ``nni.trial``'s current parameters) for its own while the search trains: a plain
    ``nni.report_intermediate_result`` would go to that engine, not to the experiment. This object keeps
    the real channel and parameter record from before the search.
    """

    def __init__(self):
        if nni.trial._params is None:                      # noqa: SLF001 - NNI keeps the record there
            nni.get_next_parameter()
            _use_recorded_parameters()
        self.record = nni.trial._params                    # noqa: SLF001
        self.channel = get_default_trial_command_channel()
        self.sequence = 0

    @property
    def parameter_id(self):
        return self.record['parameter_id'] if self.record else None

    def _send(self, kind: str, value: Any, sequence: int) -> None:
        try:
            self.channel.send_metric(type=kind, parameter_id=self.parameter_id,
                                     trial_job_id=trial_env_vars.NNI_TRIAL_JOB_ID, sequence=sequence, value=value)
        except Exception as err:  # noqa: BLE001 - e.g. `nnictl stop`: the manager's server goes before our SIGINT
            # A lost report must not end the search: the stop signal follows, and a checkpoint is written then.
            _logger.warning('could not send the %s result to NNI (%s: %s); the search goes on', kind.lower(),
                            type(err).__name__, str(err).splitlines()[0][:200])

    def intermediate(self, value: Mapping[str, Any]) -> None:
        self._send('PERIODICAL', dict(value), self.sequence)
        self.sequence += 1

    def final(self, value: Mapping[str, Any]) -> None:
        nni.trial._params = self.record                    # noqa: SLF001 - restore what the engine replaced
        self._send('FINAL', dict(value), 0)


def _use_recorded_parameters() -> None:
    """Make ``nni.trial``'s parameters the ones NNI's manager records (and the web UI shows) for this trial.

    NNI 3.0's local and remote training services hand the queued parameter sets to trial processes in the
    order the processes ask for them, not the order the trials were submitted in: with several trials starting
    together (on one machine or on several), a trial can receive the parameters the manager lists for another
    one. The manager's REST API tells the trial its own record; it is used when it differs. Where the API cannot
    be reached (other training services), the received parameters stay.
    """
    received = nni.trial._params                            # noqa: SLF001
    recorded = _recorded_parameters()
    if received is None or recorded is None or recorded.get('parameter_id') == received.get('parameter_id'):
        return
    _logger.warning('NNI handed this trial the parameters of another one (parameter id %s instead of %s, which '
                    'the manager records for it); using its own', received.get('parameter_id'),
                    recorded.get('parameter_id'))
    nni.trial._params = recorded                            # noqa: SLF001


def _manager_url() -> str | None:
    """``http://HOST:PORT[/prefix]`` of NNI's manager, as this trial can reach it.

    Local service: the trial's command channel (``http://localhost:PORT/env/...``) is served beside the REST API.
    Remote service: the channel belongs to the trial keeper on this machine; the manager is where the trial keeper
    connects to, ``managerCommandChannel`` (``ws://nniManagerIp:PORT/platform/...``) of the ``launcher_config.json``
    NNI 3.0 writes into ``<environment>/trial_keeper*/`` beside ``<environment>/trials/<trial>`` (NNI_OUTPUT_DIR).
    """
    url = os.environ.get('NNI_TRIAL_COMMAND_CHANNEL', '')
    if os.environ.get('NNI_PLATFORM') == 'remote':
        output = os.environ.get('NNI_OUTPUT_DIR')
        if not output:
            return None
        configs = sorted(Path(output).parent.parent.glob('trial_keeper*/launcher_config.json'),
                         key=lambda p: p.stat().st_mtime)
        try:
            channel = json.loads(configs[-1].read_text(encoding='utf-8'))['managerCommandChannel']
        except (IndexError, OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(channel, str) or '/platform/' not in channel or not channel.startswith('ws://'):
            return None
        return channel.split('/platform/')[0].replace('ws://', 'http://', 1)
    if '/env/' not in url or not url.startswith(('http://', 'ws://')):
        return None
    return url.split('/env/')[0].replace('ws://', 'http://', 1)


def _recorded_parameters() -> dict | None:
    trial, base = os.environ.get('NNI_TRIAL_JOB_ID'), _manager_url()
    if not trial or base is None:
        return None
    for attempt in range(3):
        try:
            with urllib.request.urlopen(f'{base}/api/v1/nni/trial-jobs/{trial}', timeout=20) as response:
                job = json.loads(response.read().decode('utf-8'))
            break
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(1.0)
    else:
        return None
    record = next((r for r in hyper_parameters(job) if 'parameters' in r), None)
    if record is None:
        return None
    return {'parameter_id': record.get('parameter_id'), 'parameter_source': record.get('parameter_source'),
            'parameters': record['parameters'], 'parameter_index': record.get('parameter_index', 0)}

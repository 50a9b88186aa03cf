"""The trial records of NNI (``/api/v1/nni/trial-jobs`` and the dispatcher's commands), decoded.

The one decoder of a trial's parameter records (``hyperParameters``): used by a trial that looks up its own
record (:mod:`~nni_asng.app.runners.nni_trial`), the commands that watch an experiment and the pipeline's
advisor (which must import fast: only ``json`` here).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

__all__ = ['TERMINAL_STATES', 'parameter_record', 'hyper_parameters', 'job_parameters', 'job_parameter_id',
           'final_metric', 'argmax_metric']

#: The states in which a trial has ended.
TERMINAL_STATES = ('SUCCEEDED', 'FAILED', 'USER_CANCELED', 'SYS_CANCELED', 'EARLY_STOPPED')


def parameter_record(text: Any) -> dict | None:
    """One parameter record (``{"parameter_id", "parameters", ...}``) from NNI's JSON text; None if it is not
    a JSON object."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def hyper_parameters(job: dict) -> Iterator[dict]:
    """The decoded ``hyperParameters`` records of a trial (JSON objects only)."""
    for text in job.get('hyperParameters') or []:
        record = parameter_record(text)
        if record is not None:
            yield record


def job_parameters(job: dict) -> dict:
    """The parameters the trial was given (``{}`` when no record holds them)."""
    return next((v['parameters'] for v in hyper_parameters(job) if isinstance(v.get('parameters'), dict)), {})


def job_parameter_id(job: dict) -> int | None:
    """The parameter id of the trial's parameters (NNI keys its metrics by it)."""
    return next((v['parameter_id'] for v in hyper_parameters(job) if isinstance(v.get('parameter_id'), int)), None)


def final_metric(job: dict) -> Any:
    """The trial's final result, decoded from NNI's (possibly repeatedly) JSON-encoded text; None before it ends."""
    final = job.get('finalMetricData') or []
    if not final:
        return None
    data = final[-1].get('data')
    while isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            break
    return data


def argmax_metric(result: Any) -> float | None:
    """A search trial's result (intermediate or final): the argmax architecture's metric on D_θ (``argmax_acc``,
    or ``argmax_psnr`` for inpainting; see :mod:`~nni_asng.app.runners.reporter`); None when it holds none."""
    if isinstance(result, dict):
        for key in ('argmax_acc', 'argmax_psnr'):
            if isinstance(result.get(key), (int, float)):
                return float(result[key])
    return None

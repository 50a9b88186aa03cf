"""What one trial of the search-and-retrain pipeline does (``python -m nni_asng trial``).

NNI's experiment manager starts every trial of the pipeline with the same command; the trial's
parameters (handed out by :class:`nni_asng.app.experiment.advisor.PipelineAdvisor`) say what to do::

    {"phase": "search",  "search": "asng-seed0", "strategy": "asng", "seed": 0, "config": "config.yaml"}
    {"phase": "retrain", "search": "asng-seed0", "strategy": "asng", "search_seed": 0, "seed": 1, "index": 0,
     "architecture": {...}, "config": "config.yaml"}

``config`` is the nni-asng experiment config (relative to the trial's working directory, NNI's
``trialCodeDirectory``), with ``overrides`` (``--set`` strings) when given; the ``search`` key names the
entry of ``launch.sweep`` (strategy x seed) the trial belongs to.

Search trials run :func:`~nni_asng.app.runners.runs.run_search` into ``$NNI_OUTPUT_DIR/search`` (the files
``nni-asng search`` writes; inside a trial it reports its progress, see :mod:`nni_asng.app.runners.reporter`).
The final result repeats the last evaluation (``argmax_acc`` or ``argmax_psnr``, no ``default``: the web UI's
default metric is the retrained test metric alone) and says what was exported: ``architectures`` (one, or
one per ε for multi_complexity, with ``epsilons`` and the measured ``params``/``flops``/``latency_ms`` of each),
``budget`` (a search with a budget: each export's measured cost and the budget's max), ``architecture_file`` and
``search_time_s``. A search stopped by SIGINT/SIGTERM (``nnictl stop`` sends SIGINT) saves
``search/checkpoints/last.ckpt``; when the same trial runs again (``nnictl resume``), it continues from there.

Retraining trials write the architecture to ``$NNI_OUTPUT_DIR/architecture.json`` and run
:func:`~nni_asng.app.runners.runs.run_retrain` into ``$NNI_OUTPUT_DIR/retrain`` (per-epoch and final test
metric reported to NNI, as ``nni-asng retrain`` does inside a trial).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ...evaluators.classification import in_nni_trial
from ..config.errors import UserError
from ..config.loading import load_config
from ..runners.jobs import argmax_metric
from ..runners.nni_trial import TrialChannel
from ..runners.outputs import read_json, write_json
from ..runners.reporter import ARGMAX_METRICS
from ..runners.runs import load_architectures, run_retrain, run_search
from .sweep import find_search, search_config

__all__ = ['run_trial', 'copy_architectures']

Log = Callable[[str], None]


def _trial_folder() -> Path:
    return Path(os.environ.get('NNI_OUTPUT_DIR', '.')).resolve()


def _load_trial_config(params: Mapping[str, Any], base: Path):
    if 'config' not in params:
        raise UserError(f'the trial parameters {dict(params)} name no config (expected "config": "<path>.yaml"); '
                        'this trial was not created by the nni-asng pipeline advisor')
    path = Path(params['config'])
    path = path if path.is_absolute() else base / path
    cfg = load_config(path, list(params.get('overrides', [])))
    spec = find_search(cfg, params.get('search'))
    return search_config(cfg, spec), spec


def run_trial(base: str | os.PathLike | None = None, log: Log = print) -> int:
    """The trial command of the pipeline: read the parameters, run the search or the retraining."""
    if not in_nni_trial():
        raise UserError('`nni-asng trial` runs inside a trial of an NNI experiment (NNI sets NNI_PLATFORM); start '
                        'the pipeline with `nni-asng launch CONFIG` or `nnictl create --config PIPELINE.yml`')
    channel = TrialChannel()
    params = channel.record['parameters'] if channel.record else None
    if not isinstance(params, dict) or params.get('phase') not in ('search', 'retrain'):
        raise UserError(f'unexpected trial parameters {params!r}: expected {{"phase": "search" | "retrain", ...}} '
                        'from the nni-asng pipeline advisor')
    base = Path(base) if base else Path.cwd()
    cfg, spec = _load_trial_config(params, base)
    shown = {k: v for k, v in params.items() if k != 'architecture'}
    log(f'nni-asng trial {os.environ.get("NNI_TRIAL_JOB_ID", "?")}: {json.dumps(shown)}')
    if params['phase'] == 'search':
        return _search_trial(cfg, spec, channel, log)
    return _retrain_trial(cfg, spec, params, channel, log)


def _search_trial(cfg, spec, channel: TrialChannel, log: Log) -> int:
    out = _trial_folder() / 'search'
    summary = out / 'summary.json'
    state = read_json(summary).get('status') if summary.is_file() else None
    resume = (out / 'checkpoints' / 'last.ckpt').is_file() and state != 'done'
    if resume:
        log(f'continuing the interrupted search in {out} from its last checkpoint')
    if state == 'done':
        log(f'the search in {out} had finished; reporting its result again')
        arch_file, wall = _architecture_file(out), read_json(summary).get('wall_time_s', 0.0)
    else:
        started = time.time()
        result = run_search(cfg, out, resume=resume, overwrite=not resume, log=log)
        arch_file, wall = result.architecture_file, time.time() - started
    final = _search_final(cfg, out, arch_file, wall)
    channel.final(final)
    value = argmax_metric(final)
    shown = f'{value:.4f}' if value is not None else 'not measured'
    log(f'search trial done: {shown} ({_metric_name(cfg)} of the exported architecture on D_θ), '
        f'{len(final["architectures"])} architecture(s) exported to {arch_file}')
    return 0


def _metric_name(cfg) -> str:
    return 'PSNR' if cfg.task == 'inpainting' else 'accuracy'


def _architecture_file(out: Path) -> Path:
    for name in ('architectures.json', 'architecture.json'):
        if (out / name).is_file():
            return out / name
    raise UserError(f'{out} holds no architecture.json / architectures.json')


def _search_final(cfg, out: Path, arch_file: Path, wall: float) -> dict[str, Any]:
    """The search trial's final result: the last evaluation and what was exported. Like the intermediate
    results it has no ``default`` key: NNI's web UI ranks the retrained test metric alone."""
    archs = load_architectures(arch_file, cfg)
    reports = read_json(out / 'trial_reports.json') if (out / 'trial_reports.json').is_file() else []
    last = reports[-1] if reports else {}
    final: dict[str, Any] = {}
    for key in (*ARGMAX_METRICS.values(), 'loss', 'entropy', 'mean_max_prob', 'step_size', 'params', 'epoch'):
        if key in last:
            final[key] = last[key]
    doc = read_json(arch_file)
    if 'architectures' in doc:                      # multi_complexity: one per ε, smallest first
        final['epsilons'] = [row.get('epsilon') for row in doc['architectures']]
        final['params_per_architecture'] = [row.get('params') for row in doc['architectures']]
        for metric in ('flops', 'latency_ms'):       # a front over another metric: its measured values
            if any(metric in row for row in doc['architectures']):
                final[f'{metric}_per_architecture'] = [row.get(metric) for row in doc['architectures']]
        if any('budget' in row for row in doc['architectures']):
            final['budget'] = [row.get('budget') for row in doc['architectures']]
    elif 'budget' in doc:                           # the export's measured cost against the budget
        final['budget'] = doc['budget']
    final.update(architectures=archs, architecture_file=str(Path(arch_file).resolve()), search_time_s=round(wall, 1),
                 architecture_document=doc)
    return final


def copy_architectures(jobs: list[dict], folder: Path, log: Log = print) -> dict[str, Path]:
    """Write every successful search trial's architecture file into ``folder/<search>/`` on THIS machine, from
    the ``architecture_document`` of its final result (the trial may have run on another machine, whose files
    NNI does not bring back). Returns search key -> the copy."""
    copies: dict[str, Path] = {}
    for job in jobs:
        params, final = job.get('parameters') or {}, job.get('final')
        if params.get('phase') != 'search' or not isinstance(final, dict):
            continue
        doc = final.get('architecture_document')
        if not isinstance(doc, dict):
            continue
        name = Path(str(final.get('architecture_file') or 'architecture.json')).name
        copies[params['search']] = write_json(folder / str(params['search']) / name, doc)
    if copies:
        log(f'architecture files of the searches: {", ".join(str(p) for p in copies.values())}')
    return copies


def _retrain_trial(cfg, spec, params: Mapping[str, Any], channel: TrialChannel, log: Log) -> int:
    arch = params.get('architecture')
    if not isinstance(arch, dict) or not arch:
        raise UserError(f'retraining trial without an architecture in its parameters ({sorted(params)})')
    folder = _trial_folder()
    arch_file = write_json(folder / 'architecture.json', {
        'space': cfg.space.name, 'space_args': dict(cfg.space.args), 'strategy': cfg.strategy.name,
        'dataset': cfg.data.dataset, 'search': spec.key, 'index': params.get('index', 0),
        'epsilon': params.get('epsilon'), 'architecture': arch})
    seed = int(params.get('seed', cfg.retrain.seeds[0]))
    result = run_retrain(cfg, arch_file, seed=seed, output=folder / 'retrain', overwrite=True, log=log,
                         report_to_nni=True)
    log(f'test {result.metric_name}: {result.metric:.4f} ({result.params:,} parameters); results in '
        f'{result.output / "retrain.json"}')
    return 0


"""What one trial of the search-and-retrain pipeline does (``python -m nni_asng trial``).

NNI's experiment manager starts every trial of the pipeline with the same command; the trial's
parameters (handed out by :class:`nni_asng.app.advisor.PipelineAdvisor`) say what to do::

    {"phase": "search",  "search": "asng-seed0", "strategy": "asng", "seed": 0, "config": "config.yaml"}
    {"phase": "retrain", "search": "asng-seed0", "strategy": "asng", "search_seed": 0, "seed": 1, "index": 0,
     "architecture": {...}, "config": "config.yaml"}

``config`` is the nni-asng experiment config (relative to the trial's working directory, NNI's
``trialCodeDirectory``), with ``overrides`` (``--set`` strings) when given; the ``search`` key names the
entry of ``launch.sweep`` (strategy x seed) the trial belongs to.

Search trials run :func:`~nni_asng.app.runs.run_search` into ``$NNI_OUTPUT_DIR/search`` (the files
``nni-asng search`` writes). Inside a trial, ``run_search`` adds :class:`SearchTrialReporter`, which
reports after every epoch (and every ``launch.report_every_n_steps`` steps) an intermediate result::

    {"default": <val. accuracy (PSNR for inpainting) of the current argmax architecture with the
                 supernet's weights, on D_θ without augmentation>,
     "loss", "entropy", "mean_max_prob", "step_size" (δ for ASNG/SNG, η for PDAS, lr for AdvantageNAS/REINFORCE),
     "params" (of the argmax architecture's fixed network), "epoch", "step"}

The final result repeats the last evaluation and says what was exported: ``architectures`` (one, or
one per ε for multi_complexity, with ``epsilons``), ``architecture_file`` and ``search_time_s``. A
search stopped by SIGINT/SIGTERM (``nnictl stop`` sends SIGINT) saves ``search/checkpoints/last.ckpt``;
when the same trial runs again (``nnictl resume``), it continues from there.

Retraining trials write the architecture to ``$NNI_OUTPUT_DIR/architecture.json`` and run
:func:`~nni_asng.app.runs.run_retrain` into ``$NNI_OUTPUT_DIR/retrain`` (per-epoch and final test
metric reported to NNI, as ``nni-asng retrain`` does inside a trial).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
import torch

from .errors import UserError
from .jobs import hyper_parameters
from .outputs import read_json, write_json

__all__ = ['run_trial', 'SearchTrialReporter', 'TrialChannel', 'evaluate_architecture']

_logger = logging.getLogger(__name__)
Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------- NNI channel
class TrialChannel:
    """Sends this trial's metrics to NNI's manager, whatever channel is current when they are sent.

    A one-shot search runs in NNI's sequential execution engine, which swaps the trial command channel
    (and ``nni.trial``'s current parameters) for its own while the search trains: a plain
    ``nni.report_intermediate_result`` would go to that engine, not to the experiment. This object keeps
    the real channel and parameter record from before the search.
    """

    def __init__(self):
        import nni
        import nni.trial
        from nni.runtime.trial_command_channel import get_default_trial_command_channel
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
        from nni.runtime.env_vars import trial_env_vars
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
        import nni.trial
        nni.trial._params = self.record                    # noqa: SLF001 - restore what the engine replaced
        self._send('FINAL', dict(value), 0)


def _use_recorded_parameters() -> None:
    """Make ``nni.trial``'s parameters the ones NNI's manager records (and the web UI shows) for this trial.

    NNI 3.0's local training service hands the queued parameter sets to trial processes in the order the
    processes ask for them, not the order the trials were submitted in: with several trials starting
    together, a trial can receive the parameters the manager lists for another one. The manager's REST
    API (the trial's command channel, ``http://localhost:PORT/env/...``, is served beside it) tells the
    trial its own record; it is used when it differs. Where the API cannot be reached (other training
    services), the received parameters stay.
    """
    import nni.trial
    received = nni.trial._params                            # noqa: SLF001
    recorded = _recorded_parameters()
    if received is None or recorded is None or recorded.get('parameter_id') == received.get('parameter_id'):
        return
    _logger.warning('NNI handed this trial the parameters of another one (parameter id %s instead of %s, which '
                    'the manager records for it); using its own', received.get('parameter_id'),
                    recorded.get('parameter_id'))
    nni.trial._params = recorded                            # noqa: SLF001


def _recorded_parameters() -> dict | None:
    import urllib.error
    import urllib.request
    url, trial = os.environ.get('NNI_TRIAL_COMMAND_CHANNEL', ''), os.environ.get('NNI_TRIAL_JOB_ID')
    if not trial or '/env/' not in url or not url.startswith(('http://', 'ws://')):
        return None
    base = url.split('/env/')[0].replace('ws://', 'http://', 1)
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


# ---------------------------------------------------------------------------------------------- evaluation
def _plain_twin(dataset):
    """``dataset`` without augmentation (an ``nni.trace``d dataset rebuilt with ``augment=False`` and, for
    wrappers such as the inpainting view, ``train=False``); the dataset itself where that is not possible."""
    kwargs = getattr(dataset, 'trace_kwargs', None)
    symbol = getattr(dataset, 'trace_symbol', None)
    if not isinstance(kwargs, dict) or symbol is None:
        return dataset
    changed = dict(kwargs)
    if changed.get('augment'):
        changed['augment'] = False
    if changed.get('train') is True:
        changed['train'] = False
    if 'dataset' in changed:
        changed['dataset'] = _plain_twin(changed['dataset'])
    if changed == kwargs:
        return dataset
    try:
        return symbol(*getattr(dataset, 'trace_args', []), **changed)
    except Exception:  # noqa: BLE001 - best effort: evaluate on the augmented view instead
        return dataset


@contextlib.contextmanager
def _frozen_rng():
    """Evaluations must not change the search's trajectory: every RNG is restored afterwards."""
    import random

    import numpy as np
    state = (random.getstate(), np.random.get_state())
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []):
        torch.manual_seed(0)
        try:
            yield
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])


@torch.no_grad()
def evaluate_architecture(module, arch: Mapping[str, Any] | None, loader, task: str,
                          batches: int | None = None) -> dict[str, float]:
    """Metric of ``arch`` with the supernet's current weights (no gradients, dropout off, BatchNorm on batch
    statistics with its running statistics left as they were, RNGs untouched: the search is not changed).

    ``module`` is the one-shot Lightning module; ``arch`` is activated in its supernet first (None: as it
    is). Classification: ``acc`` and ``loss``; inpainting: ``psnr`` and ``loss`` (MSE) over all pixels.
    """
    training = getattr(module, 'training_module', module)
    if arch is not None:
        if hasattr(module, 'activate'):
            module.activate(dict(arch))
        else:                                              # NNI's own one-shot modules
            for sub in module.supernet_modules():
                if hasattr(sub, 'resample'):
                    sub.resample(memo=dict(arch))
    device = next(training.parameters()).device
    modes = {m: m.training for m in training.modules()}
    training.eval()
    # BatchNorm normalises with the batch's statistics, as during the search: its running statistics mix every
    # path of the supernet and would misjudge the one evaluated. They are put back afterwards.
    norms = [m for m in training.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m, {k: v.clone() for k, v in m._buffers.items() if v is not None}) for m in norms]
    for m in norms:
        m.train()
    total, correct, loss_sum, sq_err, pixels = 0, 0, 0.0, 0.0, 0
    data_range = float(getattr(training, 'data_range', 1.0))
    try:
        with _frozen_rng():
            for i, batch in enumerate(loader):
                if batches is not None and i >= batches:
                    break
                x, y = batch[0].to(device), batch[1].to(device)
                out = training(x)
                if task == 'inpainting':
                    restored = (out[0] if isinstance(out, (tuple, list)) else out).clamp(0.0, data_range)
                    err = ((restored - y) ** 2)
                    sq_err += float(err.sum())
                    pixels += err.numel()
                    loss_sum += float(err.mean()) * len(x)
                else:
                    logits = out[0] if isinstance(out, (tuple, list)) else out
                    loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction='sum'))
                    correct += int((logits.argmax(-1) == y).sum())
                total += len(x)
    finally:
        for m, mode in modes.items():
            m.training = mode
        for m, buffers in saved:
            for name, value in buffers.items():
                m._buffers[name].copy_(value)
    if total == 0:
        return {}
    if task == 'inpainting':
        mse = sq_err / max(pixels, 1)
        psnr = 10.0 * math.log10(data_range ** 2 / mse) if mse > 0 else float('inf')
        return {'psnr': psnr, 'loss': loss_sum / total}
    return {'acc': correct / total, 'loss': loss_sum / total}


# ---------------------------------------------------------------------------------------------- reporter
class SearchTrialReporter(pl.Callback):
    """Reports the search's progress to NNI (see the module docstring); added by ``run_search`` in a trial
    (built from the config by :func:`nni_asng.app.assembly.trial_reporter`).

    Every report is also appended to ``<output>/trial_reports.json``.
    """

    def __init__(self, space_entry, space_args: Mapping[str, Any], data, output: str | os.PathLike, *,
                 every: int | None, batches: int | None, batch_size: int, channel: TrialChannel | None = None):
        from torch.utils.data import DataLoader
        self.space_entry, self.space_args, self.info = space_entry, dict(space_args), data.info
        self.task = space_entry.task
        self.metric = 'psnr' if self.task == 'inpainting' else 'acc'
        self.every = every
        self.batches = batches
        self.output = Path(output)
        self.channel = channel or TrialChannel()
        val = data.val
        dataset = _plain_twin(getattr(val, 'dataset', val))
        self.loader = DataLoader(dataset, batch_size=getattr(val, 'batch_size', None) or batch_size,
                                 shuffle=False, num_workers=0)
        previous = self.output / 'trial_reports.json'
        self.reports: list[dict[str, Any]] = read_json(previous) if previous.is_file() else []   # a resumed search
        self.channel.sequence = max(self.channel.sequence, len(self.reports))   # its points continue the curve
        self._params: dict[str, int] = {}
        self._last_step = -1

    def _params_of(self, arch: Mapping[str, Any]) -> int | None:
        from ..model_size import count_parameters
        key = json.dumps(arch, sort_keys=True, default=str)
        if key not in self._params:
            try:
                with torch.device('meta'), warnings_quiet():
                    self._params[key] = count_parameters(
                        self.space_entry.build_fixed(arch, self.space_args, self.info))
            except Exception as err:  # noqa: BLE001 - a count is a bonus, never a reason to fail the search
                _logger.warning('could not count the parameters of the argmax architecture: %s', err)
                self._params[key] = None
        return self._params[key]

    def _argmax(self, module) -> dict[str, Any] | None:
        searcher = getattr(module, 'searcher', None)
        if searcher is not None:
            return module.encoding.to_architecture(searcher.most_likely_rows()[0])
        try:
            return module.export()
        except Exception:  # noqa: BLE001 - e.g. a strategy without an exportable distribution
            return None

    def report(self, trainer, module) -> dict[str, Any]:
        arch = self._argmax(module)
        metrics = evaluate_architecture(module, arch, self.loader, self.task, self.batches)
        record: dict[str, Any] = {'default': metrics.get(self.metric, float('nan')), 'loss': metrics.get('loss'),
                                  'epoch': int(trainer.current_epoch), 'step': int(trainer.global_step)}
        searcher = getattr(module, 'searcher', None)
        summary = searcher.summary() if searcher is not None else {}
        convergence = [v for k, v in summary.items() if k == 'convergence' or k.startswith('convergence_')]
        if 'entropy' in summary:
            record['entropy'] = float(summary['entropy'])
        if convergence:
            record['mean_max_prob'] = float(sum(convergence) / len(convergence))
        for name in ('delta', 'eta', 'lr', 'step_size'):
            if name in summary:
                record['step_size'] = float(summary[name])
                break
        if arch is not None:
            params = self._params_of(arch)
            if params is not None:
                record['params'] = params
        record = {k: v for k, v in record.items() if v is not None}
        if not math.isfinite(record['default']):
            record['default'] = 0.0                       # NNI needs a number; the loss says what happened
        self.channel.intermediate(record)
        self.reports.append(record)
        self._last_step = record['step']
        write_json(self.output / 'trial_reports.json', self.reports)
        return record

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every and trainer.global_step % self.every == 0 and not trainer.is_last_batch:
            self.report(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.report(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self._last_step and trainer.global_step > 0:
            self.report(trainer, pl_module)


@contextlib.contextmanager
def warnings_quiet():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield


# ---------------------------------------------------------------------------------------------- the trial
def _trial_folder() -> Path:
    return Path(os.environ.get('NNI_OUTPUT_DIR', '.')).resolve()


def _load_trial_config(params: Mapping[str, Any], base: Path):
    from .config import load_config
    from .pipeline import find_search, search_config
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
    from ..evaluators.classification import in_nni_trial
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
    from .runs import run_search
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
    log(f'search trial done: {final["default"]:.4f} ({_metric_name(cfg)} of the exported architecture on D_θ), '
        f'{len(final["architectures"])} architecture(s) exported to {arch_file}')
    return 0


def _metric_name(cfg) -> str:
    from .registry import space_entry
    return 'PSNR' if space_entry(cfg.space.name).task == 'inpainting' else 'accuracy'


def _architecture_file(out: Path) -> Path:
    for name in ('architectures.json', 'architecture.json'):
        if (out / name).is_file():
            return out / name
    raise UserError(f'{out} holds no architecture.json / architectures.json')


def _search_final(cfg, out: Path, arch_file: Path, wall: float) -> dict[str, Any]:
    """The search trial's final result: the last evaluation and what was exported."""
    from .runs import load_architectures
    archs = load_architectures(arch_file, cfg)
    reports = read_json(out / 'trial_reports.json') if (out / 'trial_reports.json').is_file() else []
    last = reports[-1] if reports else {}
    final: dict[str, Any] = {'default': float(last.get('default', 0.0))}
    for key in ('loss', 'entropy', 'mean_max_prob', 'step_size', 'params', 'epoch'):
        if key in last:
            final[key] = last[key]
    doc = read_json(arch_file)
    if 'architectures' in doc:                      # multi_complexity: one per ε, smallest first
        final['epsilons'] = [row.get('epsilon') for row in doc['architectures']]
        final['params_per_architecture'] = [row.get('params') for row in doc['architectures']]
    final.update(architectures=archs, architecture_file=str(Path(arch_file).resolve()), search_time_s=round(wall, 1))
    return final


def _retrain_trial(cfg, spec, params: Mapping[str, Any], channel: TrialChannel, log: Log) -> int:
    from .runs import run_retrain
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


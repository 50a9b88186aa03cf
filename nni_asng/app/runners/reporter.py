"""The progress of a search that runs as a trial of an NNI experiment, reported to NNI's web UI.

Inside a trial, ``run_search`` adds :class:`SearchTrialReporter`, which reports after every epoch (and every
``launch.report_every_n_steps`` steps) an intermediate result::

    {"argmax_acc" ("argmax_psnr" for inpainting): <validation accuracy (PSNR) of the current argmax architecture
                 with the supernet's weights, on D_θ without augmentation>,
     "loss", "entropy", "mean_max_prob", "step_size" (δ for ASNG/SNG, η for PDAS, lr for AdvantageNAS/REINFORCE),
     "params" (of the argmax architecture's fixed network), "epoch", "step"}

No ``default`` key: in the pipeline's web UI the default metric is the retrained test metric alone, so NNI's
"Default metric" chart, its "Best metric" and its table sort never rank a search's D_θ accuracy of a supernet
path against a retrained network's test accuracy. (NNI's "Intermediate results" dialog of a search trial opens
on the first key, the argmax metric.)

A Lightning callback: the search's Lightning module is evaluated in place by :func:`evaluate_architecture`,
which leaves the search exactly as it was.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ...model_size import count_parameters
from .nni_trial import TrialChannel
from .outputs import read_json, write_json
from .quiet import quiet_warnings

__all__ = ['SearchTrialReporter', 'evaluate_architecture', 'supernet_evaluation', 'ARGMAX_METRICS']

#: The key of a search trial's reports that holds the argmax architecture's metric on D_θ, per task.
ARGMAX_METRICS = {'classification': 'argmax_acc', 'inpainting': 'argmax_psnr'}

_logger = logging.getLogger(__name__)


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
    state = (random.getstate(), np.random.get_state())
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []):
        torch.manual_seed(0)
        try:
            yield
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])


@contextlib.contextmanager
def supernet_evaluation(module, arch: Mapping[str, Any] | None):
    """``module``'s network running ``arch`` for evaluation; yields the evaluator's Lightning module.

    ``module`` is the one-shot Lightning module; ``arch`` is activated in its supernet first (None: as it is).
    Inside: no gradients, dropout off, BatchNorm on batch statistics, RNGs seeded; afterwards the modes, the
    BatchNorm running statistics and every RNG are as they were, so the search is not changed.
    """
    training = getattr(module, 'training_module', module)
    if arch is not None:
        if hasattr(module, 'activate'):
            module.activate(dict(arch))
        else:                                              # NNI's own one-shot modules
            for sub in module.supernet_modules():
                if hasattr(sub, 'resample'):
                    sub.resample(memo=dict(arch))
    modes = {m: m.training for m in training.modules()}
    training.eval()
    # BatchNorm normalises with the batch's statistics, as during the search: its running statistics mix every
    # path of the supernet and would misjudge the one evaluated. They are put back afterwards.
    norms = [m for m in training.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m, {k: v.clone() for k, v in m._buffers.items() if v is not None}) for m in norms]
    for m in norms:
        m.train()
    try:
        with torch.no_grad(), _frozen_rng():
            yield training
    finally:
        for m, mode in modes.items():
            m.training = mode
        for m, buffers in saved:
            for name, value in buffers.items():
                m._buffers[name].copy_(value)


@torch.no_grad()
def evaluate_architecture(module, arch: Mapping[str, Any] | None, loader, task: str,
                          batches: int | None = None) -> dict[str, float]:
    """Metric of ``arch`` with the supernet's current weights (see :func:`supernet_evaluation`: the search is
    not changed).

    ``module`` is the one-shot Lightning module; ``arch`` is activated in its supernet first (None: as it
    is). Classification: ``acc`` and ``loss``; inpainting: ``psnr`` and ``loss`` (MSE) over all pixels.
    """
    total, correct, loss_sum, sq_err, pixels = 0, 0, 0.0, 0.0, 0
    with supernet_evaluation(module, arch) as training:
        device = next(training.parameters()).device
        data_range = float(getattr(training, 'data_range', 1.0))
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
    if total == 0:
        return {}
    if task == 'inpainting':
        mse = sq_err / max(pixels, 1)
        psnr = 10.0 * math.log10(data_range ** 2 / mse) if mse > 0 else float('inf')
        return {'psnr': psnr, 'loss': loss_sum / total}
    return {'acc': correct / total, 'loss': loss_sum / total}


class SearchTrialReporter(pl.Callback):
    """Reports the search's progress to NNI (see the module docstring); added by ``run_search`` in a trial
    (built by :func:`nni_asng.app.runners.assembly.trial_reporter`).

    Every report is also appended to ``<output>/trial_reports.json``.
    """

    def __init__(self, space_entry, space_args: Mapping[str, Any], data, output: str | os.PathLike, *,
                 every: int | None, batches: int | None, batch_size: int, channel: TrialChannel | None = None):
        self.space_entry, self.space_args, self.info = space_entry, dict(space_args), data.info
        self.task = space_entry.task
        self.metric = 'psnr' if self.task == 'inpainting' else 'acc'
        self.key = ARGMAX_METRICS['inpainting' if self.task == 'inpainting' else 'classification']
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
        key = json.dumps(arch, sort_keys=True, default=str)
        if key not in self._params:
            try:
                with torch.device('meta'), quiet_warnings(categories=(Warning,)):
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
        record: dict[str, Any] = {self.key: metrics.get(self.metric, float('nan')), 'loss': metrics.get('loss'),
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
        if not math.isfinite(record[self.key]):
            record[self.key] = 0.0                        # NNI needs a number; the loss says what happened
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

"""Classification evaluator with the papers' weight-training recipe, and NNI trial reporting.

NNI's ``Classification`` evaluator takes an optimizer class, a learning rate and a weight decay only.
The one-shot NAS papers train weights with SGD (momentum 0.9, optionally Nesterov), a learning rate
annealed to 0 by a cosine schedule, weight decay 3e-4 and gradient clipping 5 (asng-nas §3.2,
pdas §4.1). :class:`ClassificationModule` expresses that recipe; :func:`classification_evaluator`
wraps it in NNI's traced ``Lightning`` evaluator, so it works with ``NasExperiment`` like NNI's own.

The module also handles what fixed (retrained) networks add: an auxiliary head (the network returns
``(logits, aux_logits)`` in training; the loss adds ``aux_weight`` x the auxiliary loss) and drop-path,
whose probability grows linearly over the epochs when the network offers ``set_drop_path_prob``.

Inside one-shot search the strategy's Lightning module calls :meth:`ClassificationModule.training_step`
for every sampled architecture; metrics are therefore computed functionally (no metric state that a
θ-step evaluation could corrupt).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import nni
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from nni.nas.evaluator.pytorch.lightning import Lightning, LightningModule, Trainer

__all__ = ['OPTIMIZERS', 'LR_SCHEDULES', 'OptimizerRecipe', 'ClassificationModule', 'classification_evaluator',
           'NniReportCallback', 'EpochHistory', 'in_nni_trial']

OPTIMIZERS = ('sgd', 'adam', 'adamw')
LR_SCHEDULES = ('cosine', 'constant')


class OptimizerRecipe:
    """Builds the weight optimizer and its schedule from plain (JSON-friendly) settings.

    Mixed into Lightning modules: they call :meth:`_init_recipe` in ``__init__`` and inherit
    :meth:`configure_optimizers`.
    """

    def _init_recipe(self, optimizer: str = 'sgd', learning_rate: float = 0.025, momentum: float = 0.9,
                     nesterov: bool = False, weight_decay: float = 3e-4, betas: Sequence[float] = (0.9, 0.999),
                     lr_schedule: str = 'cosine', min_lr: float = 0.0) -> None:
        optimizer = str(optimizer).lower()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f'optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}')
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f'lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}')
        if not learning_rate > 0:
            raise ValueError(f'learning_rate must be > 0, got {learning_rate!r}')
        if nesterov and (optimizer != 'sgd' or not momentum > 0):
            raise ValueError('nesterov needs optimizer "sgd" with momentum > 0')
        self.recipe = dict(optimizer=optimizer, learning_rate=float(learning_rate), momentum=float(momentum),
                           nesterov=bool(nesterov), weight_decay=float(weight_decay),
                           betas=tuple(float(b) for b in betas), lr_schedule=lr_schedule, min_lr=float(min_lr))

    def configure_optimizers(self):
        r = self.recipe
        params = [p for p in self.parameters() if p.requires_grad]
        if r['optimizer'] == 'sgd':
            opt = torch.optim.SGD(params, lr=r['learning_rate'], momentum=r['momentum'], nesterov=r['nesterov'],
                                  weight_decay=r['weight_decay'])
        elif r['optimizer'] == 'adam':
            opt = torch.optim.Adam(params, lr=r['learning_rate'], betas=r['betas'], weight_decay=r['weight_decay'])
        else:
            opt = torch.optim.AdamW(params, lr=r['learning_rate'], betas=r['betas'], weight_decay=r['weight_decay'])
        if r['lr_schedule'] == 'constant':
            return opt
        # Cosine annealing to min_lr over all optimisation steps (stepped per batch, so short runs anneal too).
        # Under a one-shot strategy only the weight-training steps count (MultiComplexity's θ stage does not).
        total = getattr(self.trainer.lightning_module, 'weight_training_steps', None) \
            or self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            total = max(1, int(self.trainer.max_epochs or 1))
            interval = 'epoch'
        else:
            interval = 'step'
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(total), eta_min=r['min_lr'])
        return {'optimizer': opt, 'lr_scheduler': {'scheduler': scheduler, 'interval': interval, 'frequency': 1}}


def _split_output(output) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Networks with an auxiliary head return ``(logits, aux_logits)`` while training."""
    if isinstance(output, (tuple, list)):
        return output[0], (output[1] if len(output) > 1 else None)
    return output, None


@nni.trace
class ClassificationModule(OptimizerRecipe, LightningModule):
    """Cross-entropy training of ``self.model`` with the :class:`OptimizerRecipe`.

    Logged: ``train_loss``, ``train_acc``; ``val_loss``, ``val_acc``; ``test_loss``, ``test_acc``. With several
    validation loaders, ``eval_stages`` names them in order (e.g. ``('val', 'test')``: ``val_acc``, ``test_acc``).

    Parameters
    ----------
    optimizer, learning_rate, momentum, nesterov, weight_decay, betas, lr_schedule, min_lr
        See :class:`OptimizerRecipe` (defaults: the papers' SGD recipe).
    aux_weight
        Weight of the auxiliary-head loss (DARTS: 0.4) when the network returns two outputs.
    drop_path_prob
        Final drop-path probability; epoch e uses ``drop_path_prob * e / max_epochs`` (networks with
        ``set_drop_path_prob`` only).
    label_smoothing
        Label smoothing of the cross-entropy.
    """

    def __init__(self, optimizer: str = 'sgd', learning_rate: float = 0.025, momentum: float = 0.9,
                 nesterov: bool = False, weight_decay: float = 3e-4, betas: Sequence[float] = (0.9, 0.999),
                 lr_schedule: str = 'cosine', min_lr: float = 0.0, aux_weight: float = 0.4,
                 drop_path_prob: float = 0.0, label_smoothing: float = 0.0):
        super().__init__()
        self._init_recipe(optimizer, learning_rate, momentum, nesterov, weight_decay, betas, lr_schedule, min_lr)
        self.aux_weight = float(aux_weight)
        self.drop_path_prob = float(drop_path_prob)
        self.label_smoothing = float(label_smoothing)

    def forward(self, x):
        return self.model(x)

    def _loss(self, logits, y):
        return F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits, aux = _split_output(self(x))
        loss = self._loss(logits, y)
        if aux is not None and self.aux_weight:
            loss = loss + self.aux_weight * self._loss(aux, y)
        acc = (logits.detach().argmax(-1) == y).float().mean()
        self.log('train_loss', loss.detach(), prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        self.log('train_acc', acc, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    eval_stages: tuple[str, ...] = ('val',)

    def _evaluate(self, batch, stage: str):
        x, y = batch
        logits, _ = _split_output(self(x))
        self.log(f'{stage}_loss', self._loss(logits, y), prog_bar=True, on_epoch=True, batch_size=len(y),
                 add_dataloader_idx=False)
        self.log(f'{stage}_acc', (logits.argmax(-1) == y).float().mean(), prog_bar=True, on_epoch=True,
                 batch_size=len(y), add_dataloader_idx=False)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._evaluate(batch, self.eval_stages[dataloader_idx])

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, 'test')

    def on_train_epoch_start(self):
        model = getattr(self, '_model', None)
        if self.drop_path_prob and model is not None and hasattr(model, 'set_drop_path_prob'):
            epochs = max(1, int(self.trainer.max_epochs or 1))
            model.set_drop_path_prob(self.drop_path_prob * self.trainer.current_epoch / epochs)


def classification_evaluator(train_dataloaders, val_dataloaders=None, *, recipe: dict[str, Any] | None = None,
                             aux_weight: float = 0.4, drop_path_prob: float = 0.0, label_smoothing: float = 0.0,
                             fit_kwargs: dict[str, Any] | None = None, **trainer_kwargs) -> Lightning:
    """NNI ``Lightning`` evaluator over a :class:`ClassificationModule` (``recipe``: its optimizer settings)."""
    module = ClassificationModule(aux_weight=aux_weight, drop_path_prob=drop_path_prob,
                                  label_smoothing=label_smoothing, **(recipe or {}))
    return Lightning(module, Trainer(**trainer_kwargs), train_dataloaders=train_dataloaders,
                     val_dataloaders=val_dataloaders, fit_kwargs=fit_kwargs)


def in_nni_trial() -> bool:
    """True inside a trial launched by NNI's experiment manager (it sets NNI_PLATFORM)."""
    import os
    platform = os.environ.get('NNI_PLATFORM')
    return bool(platform) and platform != 'unittest'


class NniReportCallback(pl.Callback):
    """Reports ``{'default': <metric>, ...}`` to NNI after every validation epoch (inside a trial only).

    Parameters
    ----------
    metric
        The ``callback_metrics`` key reported as ``default`` (e.g. ``val_acc``, ``val_psnr``).
    extra
        Further keys reported beside it when present (shown in the web UI).
    """

    def __init__(self, metric: str, extra: Sequence[str] = ()):
        self.metric = metric
        self.extra = tuple(extra)
        self.reported: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or self.metric not in trainer.callback_metrics:
            return
        metrics = trainer.callback_metrics
        record = {'default': float(metrics[self.metric]), 'epoch': int(trainer.current_epoch)}
        for key in self.extra:
            if key in metrics:
                record[key] = float(metrics[key])
        self.reported.append(record)
        if in_nni_trial():
            nni.report_intermediate_result(record)


class EpochHistory(pl.Callback):
    """Every scalar metric per training epoch: the epoch means of the training metrics and the evaluations
    of that epoch (recorded at ``on_train_epoch_end``, after the epoch's validation has run)."""

    def __init__(self):
        self.epochs: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        row: dict[str, float] = {'epoch': int(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if value.numel() == 1 and not key.endswith('_step'):
                row[key[:-len('_epoch')] if key.endswith('_epoch') else key] = float(value)
        self.epochs.append(row)

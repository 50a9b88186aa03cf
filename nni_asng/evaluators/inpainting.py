"""Inpainting evaluator: MSE loss, PSNR and SSIM (asng-nas §3.3, pdas §4.2; Suganuma et al. 2018).

Batches are ``(masked_image, clean_image)`` (see :class:`nni_asng.data.inpainting.InpaintingDataset`); the
model maps the masked image to a restored image of the same shape. Logged metrics:

* ``train_loss`` (MSE; ``training_step`` returns it, as NNI's one-shot strategies need);
* ``val_loss``, ``val_psnr``, ``val_ssim`` and ``test_loss``, ``test_psnr``, ``test_ssim`` -- PSNR is the mean
  of the per-image PSNR (``torchmetrics.image.PeakSignalNoiseRatio``, ``dim=(1, 2, 3)``), SSIM the mean SSIM
  (``torchmetrics.image.StructuralSimilarityIndexMeasure``, Gaussian window 11, sigma 1.5), both over images
  with values in [0, ``data_range``]; restored images are clamped to that range for the metrics only
  (``InpaintingModule.restore`` gives them so, e.g. for pictures).

Built like NNI's ``Classification`` / ``Regression``: a traced ``LightningModule`` wrapped by a traced
``Lightning`` evaluator, so it works in ``NasExperiment`` with one-shot and multi-trial strategies; the value
reported to NNI trials is ``{'default': val_psnr, 'ssim': val_ssim, 'mse': val_loss}``.
"""
from __future__ import annotations

from typing import Optional, Type, Union

import nni
import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.optim as optim
from nni.nas.evaluator.pytorch.lightning import DataLoader, Lightning, SupervisedLearningModule, Trainer
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

__all__ = ['Inpainting', 'InpaintingModule']


def _image_metrics(data_range: float, ssim_kernel_size: int) -> nn.ModuleDict:
    return nn.ModuleDict({
        'psnr': PeakSignalNoiseRatio(data_range=data_range, dim=(1, 2, 3)),
        'ssim': StructuralSimilarityIndexMeasure(data_range=data_range, kernel_size=ssim_kernel_size),
    })


@nni.trace
class InpaintingModule(SupervisedLearningModule):
    """Lightning module of :class:`Inpainting`: MSE training, PSNR/SSIM validation and test."""

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.,
                 optimizer: Type[optim.Optimizer] = optim.Adam, data_range: float = 1.0,
                 ssim_kernel_size: int = 11):
        super().__init__(nn.MSELoss, {}, learning_rate=learning_rate, weight_decay=weight_decay,
                         optimizer=optimizer, export_onnx=False)
        self.data_range = float(data_range)
        # One set per stage: torchmetrics objects accumulate state and must not be shared across stages.
        self.val_metrics = _image_metrics(self.data_range, ssim_kernel_size)
        self.test_metrics = _image_metrics(self.data_range, ssim_kernel_size)

    def training_step(self, batch, batch_idx):
        masked, clean = batch
        loss = self.criterion(self(masked), clean)
        self.log('train_loss', loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, 'val', self.val_metrics)

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, 'test', self.test_metrics)

    def _evaluate(self, batch, stage: str, metrics: nn.ModuleDict) -> None:
        masked, clean = batch
        restored = self(masked)
        self.log(f'{stage}_loss', self.criterion(restored, clean), prog_bar=True)
        restored = restored.detach().clamp(0., self.data_range)
        for name, metric in metrics.items():
            metric.update(restored, clean)
            self.log(f'{stage}_{name}', metric, prog_bar=True)

    @torch.no_grad()
    def restore(self, masked: torch.Tensor) -> torch.Tensor:
        """The restored images of a batch of masked ones, clamped to [0, ``data_range``] as the metrics see them.
        The module's mode is the caller's (``eval()`` for a trained network)."""
        out = self(masked)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.clamp(0., self.data_range)

    def _get_result_for_report(self):
        stage = 'val' if self.trainer.val_dataloaders else 'train'
        metrics = self.trainer.callback_metrics
        if stage == 'train':
            return float(metrics['train_loss'])
        return {'default': float(metrics['val_psnr']), 'ssim': float(metrics['val_ssim']),
                'mse': float(metrics['val_loss'])}


@nni.trace
class Inpainting(Lightning):
    """Evaluator for inpainting (masked image -> clean image): MSE loss, PSNR and SSIM metrics.

    Parameters
    ----------
    learning_rate, weight_decay, optimizer
        The weight optimizer (a class, as in NNI's evaluators). The papers search with SGD (momentum 0.9) and
        retrain with Adam.
    train_dataloaders, val_dataloaders, datamodule
        As in ``trainer.fit()``; wrap loaders with ``nni.nas.evaluator.pytorch.DataLoader`` (traced).
    data_range
        Pixel value range of the clean images (1.0 for images in [0, 1]).
    ssim_kernel_size
        Gaussian window of SSIM (11); images must be at least this large.
    trainer_kwargs
        Passed to the Lightning trainer, e.g. ``max_epochs``. The papers clip gradients at norm 5: with NNI's
        ``RandomOneShot`` (automatic optimization) pass ``gradient_clip_val=5`` here; nni-asng's strategies
        optimize manually, where Lightning refuses a trainer ``gradient_clip_val`` -- give
        ``gradient_clip_val=5`` to the strategy instead.
    """

    def __init__(self, learning_rate: float = 0.001, weight_decay: float = 0.,
                 optimizer: Type[optim.Optimizer] = optim.Adam,
                 train_dataloaders: Optional[DataLoader] = None,
                 val_dataloaders: Union[DataLoader, list, None] = None,
                 datamodule: Optional[pl.LightningDataModule] = None,
                 data_range: float = 1.0, ssim_kernel_size: int = 11, **trainer_kwargs):
        module = InpaintingModule(learning_rate=learning_rate, weight_decay=weight_decay, optimizer=optimizer,
                                  data_range=data_range, ssim_kernel_size=ssim_kernel_size)
        super().__init__(module, Trainer(**trainer_kwargs), train_dataloaders=train_dataloaders,
                         val_dataloaders=val_dataloaders, datamodule=datamodule)


"""Data loaders, Lightning modules and trainer pieces per task (classification, inpainting), from plain arguments.

Search: the (``limit``-ed) training split halved into D_x (weights) and D_θ (architecture), both shuffled
(asng-nas §3.2). Retraining: the whole training split (or its ``limit``) and the test split. Inpainting wraps the
same images, in [0, 1], in :class:`nni_asng.data.inpainting.InpaintingDataset`. Nothing here reads an experiment
config: :mod:`nni_asng.app.runners.assembly` builds a run's parts from one and passes the values in.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import nni
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import TorchCheckpointIO
from nni.nas.evaluator.pytorch import DataLoader
from torch.utils.data import Dataset

from ...data import retrain_datasets, search_datasets
from ...data.inpainting import InpaintingDataset
from ...data.loaders import resumable_loader
from ...evaluators.classification import ClassificationModule, NniReportCallback, OptimizerRecipe
from ...evaluators.inpainting import InpaintingModule
from ..config.errors import ConfigError
from ..config.registry import DataInfo, SpaceEntry
from .outputs import atomic_write

__all__ = ['TaskData', 'search_data', 'retrain_data', 'make_module', 'report_metric', 'report_callback',
           'ChannelsLast', 'trainer_precision', 'trainer_device_kwargs', 'accelerator_info',
           'ExpandChannels', 'resolve_device', 'AtomicCheckpointIO']


@nni.trace
class ExpandChannels(Dataset):
    """Repeat grey images to ``channels`` channels (NNI's hub spaces take RGB)."""

    def __init__(self, dataset: Any, channels: int = 3):
        self.dataset = dataset
        self.channels = int(channels)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        x, y = self.dataset[i]
        if x.shape[0] == 1:
            x = x.expand(self.channels, *x.shape[1:])
        return x, y


@dataclass
class TaskData:
    train: DataLoader
    val: DataLoader
    info: DataInfo
    sizes: tuple[int, int]


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is a user error."""
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('device is "cuda" but no CUDA device is visible; use "auto" or "cpu"')
    return device


def trainer_device_kwargs(device: str, devices: int = 1, num_nodes: int = 1) -> dict[str, Any]:
    """Lightning Trainer arguments; several processes (``devices`` per node x ``num_nodes``) run DDP.

    Different ranks sample different paths of the supernet, so DDP must look for unused parameters
    (``ddp_find_unused_parameters_true``); Lightning picks the gloo backend on CPUs and nccl on GPUs.
    """
    kwargs: dict[str, Any] = {'accelerator': 'gpu' if device == 'cuda' else 'cpu', 'devices': int(devices)}
    if devices > 1 or num_nodes > 1:
        kwargs.update(strategy='ddp_find_unused_parameters_true', num_nodes=int(num_nodes))
    return kwargs


@nni.trace
class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file beside the target, then rename it over the target.

    A crash or ``kill -9`` while ``last.ckpt`` is rewritten leaves the previous checkpoint whole.
    (Lightning's own writer stages the file in the system temp folder, and moving it from there is
    a copy, not a rename, when that folder is on another file system.)
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f'{type(self).__name__} takes no storage_options')
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


def _wrap(dataset, entry: SpaceEntry, train: bool, masking: Mapping[str, Any]):
    if entry.task == 'inpainting':
        return InpaintingDataset(dataset, train=train, **masking)
    if entry.input_channels is not None and dataset.input_shape[0] != entry.input_channels:
        return ExpandChannels(dataset, entry.input_channels)
    return dataset


def _info(dataset, entry: SpaceEntry) -> DataInfo:
    c, h, w = dataset.input_shape
    channels = entry.input_channels if (entry.task == 'classification' and entry.input_channels) else c
    return DataInfo(in_channels=channels, num_classes=dataset.num_classes if entry.task == 'classification' else None,
                    input_shape=(channels, h, w))


def _loader(dataset, batch_size: int, num_workers: int, shuffle: bool, pin_memory: bool = False) -> DataLoader:
    drop_last = shuffle and len(dataset) >= batch_size   # a batch of 1 breaks BatchNorm
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
                      persistent_workers=num_workers > 0, pin_memory=pin_memory)


def _pin_memory(device: str) -> bool:
    """Page-locked batches when the run will use CUDA: Lightning then copies them to the GPU with
    ``non_blocking=True``, overlapping the copy with the previous step. Not an error without a GPU
    (``launch`` builds loaders on the launching machine only to read the data's shape)."""
    return device in ('auto', 'cuda') and torch.cuda.is_available()


def search_data(entry: SpaceEntry, dataset: str, root: str | None, *, limit, seed: int, subset_seed: int | None,
                resolution: int | None, augment: bool, batch_size: int, num_workers: int, device: str,
                masking: Mapping[str, Any]) -> TaskData:
    """Shuffled loaders over D_x and D_θ, the halves of the (limited) training split of ``dataset``.

    They are :class:`~nni_asng.data.resumable.ResumableDataLoader` objects (order drawn from ``seed`` and
    the epoch; position saved in checkpoints), so ``--resume`` from a mid-epoch checkpoint continues
    with the batches the interrupted search would have seen. ``masking``: the keyword arguments of
    :class:`~nni_asng.data.inpainting.InpaintingDataset` (mask, seed, fractions) of an inpainting task.
    """
    d_x, d_theta = search_datasets(dataset, root, limit=limit, seed=seed, augment=augment,
                                   normalize=entry.task != 'inpainting', subset_seed=subset_seed,
                                   resolution=resolution)
    info = _info(d_x, entry)
    train, val = _wrap(d_x, entry, True, masking), _wrap(d_theta, entry, True, masking)
    workers = dict(num_workers=num_workers, persistent_workers=num_workers > 0, pin_memory=_pin_memory(device))
    return TaskData(resumable_loader(train, batch_size, (seed, 1), **workers),
                    resumable_loader(val, batch_size, (seed, 2), **workers), info, (len(train), len(val)))


def retrain_data(entry: SpaceEntry, dataset: str, root: str | None, *, limit, test_limit, seed: int,
                 subset_seed: int | None, resolution: int | None, augment: bool, cutout: bool | int, batch_size: int,
                 num_workers: int, device: str, masking: Mapping[str, Any]) -> TaskData:
    """Shuffled training loader (whole split, or ``limit``) and ordered test loader (``test_limit``)."""
    train, test = retrain_datasets(dataset, root, limit=limit, test_limit=test_limit, seed=seed,
                                   augment=augment, normalize=entry.task != 'inpainting',
                                   cutout=cutout if entry.task == 'classification' else 0,
                                   subset_seed=subset_seed, resolution=resolution)
    info = _info(train, entry)
    train, test = _wrap(train, entry, True, masking), _wrap(test, entry, False, masking)
    pin = _pin_memory(device)
    return TaskData(_loader(train, batch_size, num_workers, True, pin), _loader(test, batch_size, num_workers,
                                                                              False, pin),
                    info, (len(train), len(test)))


# ---------------------------------------------------------------------------------------------- modules
def _inpainting_module_class():
    @nni.trace
    class InpaintingRecipeModule(OptimizerRecipe, InpaintingModule):
        """The inpainting module with the SGD/Adam + cosine recipe; reporting to NNI is done by the CLI."""

        def __init__(self, optimizer: str = 'sgd', learning_rate: float = 0.025, momentum: float = 0.9,
                     nesterov: bool = False, weight_decay: float = 3e-4, betas=(0.9, 0.999),
                     lr_schedule: str = 'cosine', min_lr: float = 0.0):
            super().__init__(learning_rate=learning_rate, weight_decay=weight_decay)
            self._init_recipe(optimizer, learning_rate, momentum, nesterov, weight_decay, betas, lr_schedule, min_lr)

        def on_validation_epoch_end(self):   # NniReportCallback reports instead
            pass

        def on_fit_end(self):
            pass

        def on_validation_end(self):
            pass

    return InpaintingRecipeModule


_INPAINTING_MODULE = None


def make_module(entry: SpaceEntry, recipe: Mapping[str, Any], *, aux_weight: float = 0.4,
                drop_path_prob: float = 0.0, label_smoothing: float = 0.0):
    """The task's Lightning module with the optimizer ``recipe`` (:class:`OptimizerRecipe`'s arguments)."""
    global _INPAINTING_MODULE
    if entry.task == 'inpainting':
        if _INPAINTING_MODULE is None:
            _INPAINTING_MODULE = _inpainting_module_class()
        return _INPAINTING_MODULE(**recipe)
    return ClassificationModule(aux_weight=aux_weight, drop_path_prob=drop_path_prob, label_smoothing=label_smoothing,
                                **recipe)


def report_metric(entry: SpaceEntry) -> tuple[str, tuple[str, ...]]:
    """(metric reported as NNI's ``default``, extra metrics), without the ``val_``/``test_`` stage prefix."""
    if entry.task == 'inpainting':
        return 'psnr', ('ssim', 'loss')
    return 'acc', ('loss',)


def trainer_precision(precision: str, device: str, section: str) -> str:
    """The Trainer's ``precision`` for ``<section>.precision`` on ``device`` (fp16 autocast needs CUDA)."""
    if precision == '16-mixed' and device != 'cuda':
        raise ConfigError(f'{section}.precision: 16-mixed (fp16 autocast with a gradient scaler) needs a CUDA '
                          f'device, this run uses {device}; use bf16-mixed or 32')
    return precision


class ChannelsLast(pl.Callback):
    """``search.channels_last`` / ``retrain.channels_last``: the network's 4-d weights and every input batch in
    ``torch.channels_last`` memory format (NHWC), which cuDNN's convolutions prefer, above all under mixed
    precision. The weights are converted before the Trainer moves the model to its device (so the optimizer
    state follows); the inputs by a forward pre-hook of the task's module, the module every training,
    θ-evaluation and validation step calls.

    A GPU option: on a CPU it is left off with a warning (``force=True`` applies it anyway). PyTorch's CPU
    backward of a strided 1x1 convolution corrupts memory when its output gradient is a channel slice of a
    channels_last tensor (torch 2.14: ``F.conv2d(x_cl, w_cl, stride=2).backward(g_cl[:, 4:])`` aborts), which
    is exactly what the ENAS/DARTS factorized reduction's concatenation produces."""

    def __init__(self, force: bool = False):
        self.force = bool(force)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.strategy.root_device.type != 'cuda' and not self.force:
            warnings.warn('channels_last is a GPU option and is left off on this CPU run (see '
                          'nni_asng.app.runners.tasks.ChannelsLast)', RuntimeWarning)
            return
        pl_module.to(memory_format=torch.channels_last)
        task_module = getattr(pl_module, 'training_module', pl_module)     # one-shot modules wrap the task's
        if not getattr(task_module, '_channels_last_hook', None):
            task_module._channels_last_hook = task_module.register_forward_pre_hook(_channels_last_inputs)


def _channels_last_inputs(module, args):
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last),) + tuple(args[1:])
    return None


def accelerator_info(device: str) -> dict[str, Any]:
    """What this process ran on, for summary.json / retrain.json (and the GPU check): the resolved device,
    CUDA's view of the GPU and the peak GPU memory this process allocated."""
    info: dict[str, Any] = {'device': device, 'cuda_available': torch.cuda.is_available(),
                            'torch': torch.__version__, 'cuda_version': torch.version.cuda}
    if device == 'cuda' and torch.cuda.is_available():
        index = torch.cuda.current_device()
        info.update(cuda_device_index=index, cuda_device_name=torch.cuda.get_device_name(index),
                    cuda_visible_devices=os.environ.get('CUDA_VISIBLE_DEVICES'),
                    cuda_max_memory_allocated_mib=round(torch.cuda.max_memory_allocated(index) / 2 ** 20, 1))
    return info


def report_callback(entry: SpaceEntry) -> NniReportCallback:
    metric, extra = report_metric(entry)
    return NniReportCallback(f'val_{metric}', [f'val_{m}' for m in extra] + ['train_loss', 'train_acc'])

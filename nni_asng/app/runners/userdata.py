"""Your own data: ``data.factory: mypkg.data:make_data`` in an experiment config.

The factory is a function called with ``data.factory_args`` (and ``seed=<seed>`` when it takes a
``seed`` argument, or ``**kwargs``) that returns the classification data of the search and the
retraining, as one of::

    (train, val)                      datasets or DataLoaders
    (train, val, test)
    {'train': ..., 'val': ..., 'test': ..., 'num_classes': 10}      test and num_classes optional

Every sample is ``(image tensor C x H x W, integer label)``. The search trains the weights on
``train`` (D_x) and the architecture on ``val`` (D_θ); retraining trains on ``train`` and reports
the test metric on ``test`` (``val`` when there is no test set). A DataLoader contributes its
dataset and batch size; nni-asng does the batching (shuffled with the seed, resumable mid-epoch).
The number of classes comes from ``num_classes`` in the dict, else the training set's
``num_classes`` / ``classes`` attribute, else its labels. ``data.limit``, ``retrain.limit`` and
``retrain.test_limit`` do not apply: the factory decides the sizes.

Errors name the factory and what went wrong (module not importable, attribute missing, not
callable, wrong return value, samples that are not image/label pairs).
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch
from nni.nas.evaluator.pytorch import DataLoader
from torch.utils.data import DataLoader as TorchDataLoader

from ...data.loaders import resumable_loader
from ..config.errors import ConfigError
from ..config.registry import DataInfo, a_kind, load_factory
from .tasks import TaskData

__all__ = ['call_factory', 'search_data', 'retrain_data', 'UserData']

_EXPECTED = ('expected (train, val) or (train, val, test) datasets/DataLoaders, or a dict with keys train, val '
             '[, test, num_classes]')


class UserData:
    """The factory's return value, checked: datasets (and batch sizes of given loaders), number of classes."""

    def __init__(self, spec: str, value: Any):
        self.spec = spec
        parts, num_classes = self._parts(value)
        self.datasets: dict[str, Any] = {}
        self.batch_sizes: dict[str, int | None] = {}
        for name, part in parts.items():
            if isinstance(part, TorchDataLoader):
                self.datasets[name], self.batch_sizes[name] = part.dataset, part.batch_size
            elif hasattr(part, '__getitem__') and hasattr(part, '__len__') and not isinstance(part, (str, bytes, dict)):
                self.datasets[name], self.batch_sizes[name] = part, None
            else:
                raise ConfigError(f'data.factory {spec!r} returned {a_kind(part)} as its {name} set; '
                                  'expected a map-style dataset (with __getitem__ and __len__) or a DataLoader')
            if len(self.datasets[name]) == 0:
                raise ConfigError(f'data.factory {spec!r}: its {name} set is empty')
        self.input_shape = self._input_shape()
        self.num_classes = self._num_classes(num_classes)

    def _parts(self, value: Any) -> tuple[dict[str, Any], Any]:
        if isinstance(value, dict):
            unknown = set(value) - {'train', 'val', 'test', 'num_classes'}
            if unknown or 'train' not in value or 'val' not in value:
                raise ConfigError(f'data.factory {self.spec!r} returned a dict with keys {sorted(value)}; {_EXPECTED}')
            parts = {k: value[k] for k in ('train', 'val', 'test') if value.get(k) is not None}
            return parts, value.get('num_classes')
        if isinstance(value, (tuple, list)) and len(value) in (2, 3):
            return dict(zip(('train', 'val', 'test'), value)), None
        what = a_kind(value) + (f' of length {len(value)}' if isinstance(value, (tuple, list)) else '')
        raise ConfigError(f'data.factory {self.spec!r} returned {what}; {_EXPECTED}')

    def _input_shape(self) -> tuple[int, int, int]:
        try:
            sample = self.datasets['train'][0]
        except Exception as err:  # noqa: BLE001 - the user's dataset may raise anything
            raise ConfigError(f'data.factory {self.spec!r}: reading the first training sample failed: '
                              f'{type(err).__name__}: {err}') from err
        if not (isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[0], torch.Tensor)
                and sample[0].dim() == 3):
            shape = tuple(sample[0].shape) if isinstance(sample, (tuple, list)) and sample and \
                hasattr(sample[0], 'shape') else None
            raise ConfigError(f'data.factory {self.spec!r}: a training sample is {_describe(sample)}'
                              + (f' (image shape {shape})' if shape is not None else '') +
                              '; expected (image tensor of shape C x H x W, integer label)')
        return tuple(int(d) for d in sample[0].shape)

    def _num_classes(self, given: Any) -> int:
        train = self.datasets['train']
        if given is None:
            given = getattr(train, 'num_classes', None)
        if given is None and getattr(train, 'classes', None) is not None:
            given = len(train.classes)
        if given is None:
            given = _count_labels(train)
        if isinstance(given, bool) or not isinstance(given, int) or given < 2:
            raise ConfigError(f'data.factory {self.spec!r}: the number of classes must be an integer >= 2, got '
                              f'{given!r} (return {{"train": ..., "val": ..., "num_classes": K}} to set it)')
        return given


def _describe(sample: Any) -> str:
    if isinstance(sample, (tuple, list)):
        return f'a {type(sample).__name__} of {len(sample)}: (' + ', '.join(type(s).__name__ for s in sample) + ')'
    return f'a {type(sample).__name__}'


def _count_labels(dataset) -> int:
    """1 + the largest label (from ``targets``/``labels`` or a TensorDataset's second tensor, else every sample)."""
    labels = getattr(dataset, 'targets', None)
    if labels is None:
        labels = getattr(dataset, 'labels', None)
    if labels is None and isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) > 1:
        labels = dataset.tensors[1]
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
    return int(torch.as_tensor(labels).max()) + 1


def call_factory(spec: str, factory_args: Mapping[str, Any], seed: int) -> UserData:
    """Call the factory ``spec`` names with ``factory_args`` (and ``seed``) and check what it returns."""
    factory = load_factory(spec)
    kwargs = dict(factory_args)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if 'seed' not in kwargs and ('seed' in params or takes_kwargs):
        kwargs['seed'] = seed
    try:
        value = factory(**kwargs)
    except TypeError as err:
        if 'argument' in str(err):
            raise ConfigError(f'data.factory {spec!r} rejects data.factory_args {dict(factory_args)}: '
                              f'{err}') from err
        raise
    return UserData(spec, value)


def _info(data: UserData) -> DataInfo:
    channels = data.input_shape[0]
    return DataInfo(in_channels=channels, num_classes=data.num_classes, input_shape=data.input_shape)


def search_data(spec: str, factory_args: Mapping[str, Any], *, seed: int, batch_size: int, num_workers: int):
    """D_x = the factory's train set, D_θ = its val set, as resumable shuffled loaders (``batch_size`` where the
    factory gave datasets, not loaders)."""
    data = call_factory(spec, factory_args, seed)
    workers = dict(num_workers=num_workers, persistent_workers=num_workers > 0)
    train, val = data.datasets['train'], data.datasets['val']
    return TaskData(resumable_loader(train, data.batch_sizes['train'] or batch_size, (seed, 1), **workers),
                    resumable_loader(val, data.batch_sizes['val'] or batch_size, (seed, 2), **workers),
                    _info(data), (len(train), len(val)))


def retrain_data(spec: str, factory_args: Mapping[str, Any], *, seed: int, batch_size: int, num_workers: int):
    """The factory's train set (shuffled) and its test set (its val set when it has none, in order)."""
    data = call_factory(spec, factory_args, seed)
    train = data.datasets['train']
    test_name = 'test' if 'test' in data.datasets else 'val'
    test = data.datasets[test_name]
    batch = data.batch_sizes['train'] or batch_size
    train_loader = DataLoader(train, batch_size=batch, shuffle=True, num_workers=num_workers,
                              drop_last=len(train) >= batch)
    test_loader = DataLoader(test, batch_size=data.batch_sizes[test_name] or batch_size, shuffle=False,
                             num_workers=num_workers)
    return TaskData(train_loader, test_loader, _info(data), (len(train), len(test)))

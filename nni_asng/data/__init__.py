"""Classification datasets for search and retraining (Fashion-MNIST, MNIST-5k, CIFAR-10).

Typical use::

    d_x, d_theta = search_loaders('fashion_mnist', batch_size=64, limit=4000)
    evaluator = Classification(num_classes=10, train_dataloaders=d_x, val_dataloaders=d_theta)

Search loaders are :class:`ResumableDataLoader` objects (NNI-traced DataLoaders whose position
inside an epoch is saved in Lightning checkpoints), retraining loaders NNI's traced ``DataLoader``;
both read :class:`ImageClassificationDataset` views that keep uint8 arrays in memory and transform
per item.
"""
from .base import RawData
from .datasets import ImageClassificationDataset
from .errors import DatasetFormatError, DatasetNotFoundError, UnknownDatasetError
from .idx import IDXFormatError, read_idx
from .loaders import (ClassificationData, load_dataset, retrain_datasets, retrain_loaders, search_datasets,
                      search_loaders)
from .resumable import ResumableDataLoader, ResumableSampler
from .registry import DEFAULT_DATASET, DatasetInfo, clear_cache, get_info, load_raw, supported_names
from .splits import split_halves, stratified_subset

__all__ = [
    'ClassificationData', 'DatasetFormatError', 'DatasetInfo', 'DatasetNotFoundError', 'DEFAULT_DATASET',
    'IDXFormatError', 'ImageClassificationDataset', 'RawData', 'ResumableDataLoader', 'ResumableSampler',
    'UnknownDatasetError', 'clear_cache', 'get_info',
    'load_dataset', 'load_raw', 'read_idx', 'retrain_datasets', 'retrain_loaders', 'search_datasets',
    'search_loaders', 'split_halves', 'stratified_subset', 'supported_names',
]

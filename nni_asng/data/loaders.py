"""The public entry points: datasets and NNI DataLoaders for search and retraining."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from nni.nas.evaluator.pytorch import DataLoader

from .datasets import ImageClassificationDataset
from .registry import DEFAULT_DATASET
from .resumable import ResumableDataLoader
from .splits import Limit

Root = Optional[Union[str, os.PathLike]]


@dataclass(frozen=True)
class ClassificationData:
    """A loaded dataset: ``train`` (augmented unless asked otherwise) and ``test`` (never augmented)."""

    name: str
    train: ImageClassificationDataset
    test: ImageClassificationDataset
    num_classes: int
    input_shape: Tuple[int, int, int]
    classes: Tuple[str, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]


def _root(root: Root) -> Optional[str]:
    return None if root is None else os.fspath(root)  # keeps the traced arguments JSON-friendly


def load_dataset(name: str = DEFAULT_DATASET, root: Root = None, *, limit: Limit = None,
                 test_limit: Limit = None, seed: int = 0, augment: bool = True, normalize: bool = True,
                 cutout: Union[int, bool] = 0, flip: Optional[bool] = None, subset_seed: Optional[int] = None,
                 resolution: Optional[int] = None) -> ClassificationData:
    """Train and test sets of ``name``; ``test_limit=None`` applies ``limit`` to the test set too
    (pass ``test_limit=1.0`` for the whole test set). ``normalize=False`` gives pixels in [0, 1];
    ``subset_seed`` and ``resolution``: see :class:`ImageClassificationDataset`."""
    common = dict(name=name, root=_root(root), seed=seed, normalize=normalize, resolution=resolution)
    train = ImageClassificationDataset(split='train', limit=limit, augment=augment, cutout=cutout, flip=flip,
                                       subset_seed=subset_seed, **common)
    test = ImageClassificationDataset(split='test', limit=limit if test_limit is None else test_limit, **common)
    info = train.info
    return ClassificationData(name=info.name, train=train, test=test, num_classes=train.num_classes,
                              input_shape=train.input_shape, classes=train.classes, mean=info.mean, std=info.std)


def search_datasets(name: str = DEFAULT_DATASET, root: Root = None, *, limit: Limit = None, seed: int = 0,
                    stratified: bool = True, augment: bool = True, normalize: bool = True,
                    cutout: Union[int, bool] = 0, flip: Optional[bool] = None, subset_seed: Optional[int] = None,
                    resolution: Optional[int] = None
                    ) -> Tuple[ImageClassificationDataset, ImageClassificationDataset]:
    """(D_x, D_θ): the (limited) training set split into halves (asng-nas §3.2), both augmented.
    With ``subset_seed`` fixed, every ``seed`` halves the same ``limit`` images."""
    common = dict(name=name, root=_root(root), split='train', limit=limit, seed=seed, stratified=stratified,
                  augment=augment, normalize=normalize, cutout=cutout, flip=flip, subset_seed=subset_seed,
                  resolution=resolution)
    return ImageClassificationDataset(half='x', **common), ImageClassificationDataset(half='theta', **common)


def _train_loader(dataset, batch_size: int, num_workers: int) -> DataLoader:
    # Drop the last partial batch (a batch of 1 breaks BatchNorm), unless that would drop everything.
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                      drop_last=len(dataset) >= batch_size)


def resumable_loader(dataset, batch_size: int, seed, num_workers: int = 0, shuffle: bool = True,
                     **kwargs) -> ResumableDataLoader:
    """A shuffled :class:`ResumableDataLoader` (drops the last partial batch, as :func:`_train_loader`)."""
    return ResumableDataLoader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed, num_workers=num_workers,
                               drop_last=shuffle and len(dataset) >= batch_size, **kwargs)


def search_loaders(name: str = DEFAULT_DATASET, batch_size: int = 64, root: Root = None, limit: Limit = None,
                   seed: int = 0, num_workers: int = 0, **dataset_kwargs) -> Tuple[DataLoader, DataLoader]:
    """Shuffled NNI-traced DataLoaders over (D_x, D_θ), for ``Classification(train_dataloaders=D_x,
    val_dataloaders=D_θ)``. ``dataset_kwargs`` go to :func:`search_datasets`.

    Both are :class:`~nni_asng.data.resumable.ResumableDataLoader` objects: the order of every epoch is drawn
    from ``seed`` and the epoch, and a search resumed from a mid-epoch checkpoint continues with the
    batch the interrupted run would have seen next."""
    d_x, d_theta = search_datasets(name, root, limit=limit, seed=seed, **dataset_kwargs)
    return (resumable_loader(d_x, batch_size, (seed, 1), num_workers),
            resumable_loader(d_theta, batch_size, (seed, 2), num_workers))


def retrain_datasets(name: str = DEFAULT_DATASET, root: Root = None, *, limit: Limit = None,
                     test_limit: Limit = None, seed: int = 0, augment: bool = True, normalize: bool = True,
                     cutout: Union[int, bool] = 0, flip: Optional[bool] = None, subset_seed: Optional[int] = None,
                     resolution: Optional[int] = None
                     ) -> Tuple[ImageClassificationDataset, ImageClassificationDataset]:
    """(whole training set, test set) for retraining a found architecture; see :func:`load_dataset`."""
    data = load_dataset(name, root, limit=limit, test_limit=test_limit, seed=seed, augment=augment,
                        normalize=normalize, cutout=cutout, flip=flip, subset_seed=subset_seed,
                        resolution=resolution)
    return data.train, data.test


def retrain_loaders(name: str = DEFAULT_DATASET, batch_size: int = 64, root: Root = None, limit: Limit = None,
                    test_limit: Limit = None, seed: int = 0, num_workers: int = 0, cutout: Union[int, bool] = 0,
                    **dataset_kwargs) -> Tuple[DataLoader, DataLoader]:
    """(shuffled train loader, ordered test loader); ``cutout=True`` adds pdas §4.1's cutout."""
    train, test = retrain_datasets(name, root, limit=limit, test_limit=test_limit, seed=seed, cutout=cutout,
                                   **dataset_kwargs)
    return (_train_loader(train, batch_size, num_workers),
            DataLoader(test, batch_size=batch_size, shuffle=False, num_workers=num_workers))

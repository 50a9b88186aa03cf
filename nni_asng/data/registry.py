"""Supported datasets: name -> reader, statistics and augmentation defaults."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from . import cifar10, fashion_mnist, mnist5k
from .base import RawData
from .errors import UnknownDatasetError


@dataclass(frozen=True)
class DatasetInfo:
    """What the loaders need to know about one dataset."""

    name: str
    load: Callable[[Optional[str]], RawData]
    #: Finds the files under a root without reading them; raises DatasetNotFoundError (``nni-asng check``).
    locate: Callable[[Optional[str]], object]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    #: Zero padding before the random crop back to the input size.
    crop_padding: int
    #: Random horizontal flip in the standard augmentation.
    flip: bool


DATASETS = {
    # Clothes, shoes and bags keep their class when mirrored (a left shoe mirrors into a right
    # one), so Fashion-MNIST gets flips on top of the pad-2 crop; digits do not (2 vs 5, 7, ...).
    'fashion_mnist': DatasetInfo('fashion_mnist', fashion_mnist.load, fashion_mnist.resolve_files, fashion_mnist.MEAN,
                                 fashion_mnist.STD, crop_padding=2, flip=True),
    'mnist5k': DatasetInfo('mnist5k', mnist5k.load, mnist5k.locate, mnist5k.MEAN, mnist5k.STD, crop_padding=2,
                           flip=False),
    # pdas §4.1: pad 4, random crop 32, random horizontal flip.
    'cifar10': DatasetInfo('cifar10', cifar10.load, cifar10.resolve_folder, cifar10.MEAN, cifar10.STD,
                           crop_padding=4, flip=True),
}
DEFAULT_DATASET = 'fashion_mnist'
_ALIASES = {'fashionmnist': 'fashion_mnist', 'fmnist': 'fashion_mnist', 'mnist5k': 'mnist5k',
            'cifar10': 'cifar10'}


def supported_names() -> Tuple[str, ...]:
    return tuple(DATASETS)


def get_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (case, '-' and '_' ignored: 'Fashion-MNIST', 'cifar-10')."""
    key = _ALIASES.get(str(name).lower().replace('-', '').replace('_', ''))
    if key is None:
        raise UnknownDatasetError(f'unknown dataset {name!r}; supported: {", ".join(DATASETS)}')
    return DATASETS[key]


def _root_key(root: Optional[str | os.PathLike]) -> Optional[str]:
    return None if root is None else str(Path(root).expanduser().resolve())


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: Optional[str]) -> RawData:
    return DATASETS[name].load(root)


def load_raw(name: str, root: Optional[str | os.PathLike] = None, cache: bool = True) -> RawData:
    """The uint8 arrays of a dataset; cached per process (keyed by name and resolved root) unless ``cache=False``.

    Cached arrays are shared by every view: treat them as read-only.
    """
    info = get_info(name)
    if not cache:
        return info.load(root)
    return _load_cached(info.name, _root_key(root))


def split_images(name: str, root: Optional[str | os.PathLike], split: str, resolution: Optional[int] = None):
    """The uint8 ``(N, C, H, W)`` torch images of a whole split, resized (area interpolation) to
    ``resolution`` x ``resolution`` once per process; read-only like :func:`load_raw`'s arrays."""
    return _split_images_cached(get_info(name).name, _root_key(root), split, resolution)


@functools.lru_cache(maxsize=8)
def _split_images_cached(name: str, root: Optional[str], split: str, resolution: Optional[int]):
    import torch
    raw = _load_cached(name, root)
    images = torch.from_numpy(raw.x_train if split == 'train' else raw.x_test)
    if resolution is None or tuple(images.shape[2:]) == (resolution, resolution):
        return images
    resized = torch.nn.functional.interpolate(images.float(), size=(resolution, resolution), mode='area')
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def clear_cache() -> None:
    """Forget the cached arrays (e.g. after files on disk changed)."""
    _load_cached.cache_clear()
    _split_images_cached.cache_clear()

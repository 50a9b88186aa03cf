"""Fashion-MNIST (Xiao et al., 2017) from its four original IDX .gz files.

Offline source here: the Debian package ``dataset-fashion-mnist``, which installs them
in ``/usr/share/datasets/fashion-mnist/`` (docs/design.md §2).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import numpy as np

from .base import RawData
from .errors import DatasetFormatError, DatasetNotFoundError
from .idx import read_idx

DEFAULT_ROOT = Path('/usr/share/datasets/fashion-mnist')
FILES = {
    'train_images': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_images': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}
CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
           'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
#: Per-channel statistics of the 60,000 training images (pixels scaled to [0, 1]).
MEAN, STD = (0.2860,), (0.3530,)


def _find(folder: Path, name: str) -> Optional[Path]:
    """``name`` or, for unpacked copies, ``name`` without ``.gz``."""
    for candidate in (folder / name, folder / name[:-len('.gz')]):
        if candidate.is_file():
            return candidate
    return None


def _candidate_folders(root: Path) -> List[Path]:
    # The folder itself, or the layouts of the Debian package and of torchvision.
    return [root, root / 'fashion-mnist', root / 'FashionMNIST' / 'raw']


def resolve_files(root: Optional[str | os.PathLike] = None) -> dict:
    """Paths of the four files under ``root`` (default: the Debian package folder)."""
    root = Path(root).expanduser() if root is not None else DEFAULT_ROOT
    for folder in _candidate_folders(root):
        found = {key: _find(folder, name) for key, name in FILES.items()}
        if all(found.values()):
            return found
    if root.is_dir():
        found = {key: _find(root, name) for key, name in FILES.items()}
        problem = f'{root} lacks ' + ', '.join(FILES[k] for k, v in found.items() if v is None)
    else:
        problem = f'{root} is a file, not a folder' if root.exists() else f'folder {root} does not exist'
    raise DatasetNotFoundError(
        f'Fashion-MNIST not found: {problem}.\n'
        f'Expected the four original files {", ".join(FILES.values())} in {root} '
        f'(or in its fashion-mnist/ or FashionMNIST/raw/ subfolder).\n'
        f'Get them with `sudo apt-get install dataset-fashion-mnist` (installs them in {DEFAULT_ROOT}), '
        f'or pass data.root (config) / root= a folder holding the four files '
        f'(https://github.com/zalandoresearch/fashion-mnist).')


def load(root: Optional[str | os.PathLike] = None) -> RawData:
    """Read the four IDX files (validated: shapes, counts, labels 0-9) into :class:`RawData`."""
    files = resolve_files(root)
    arrays = {}
    for split in ('train', 'test'):
        images = read_idx(files[f'{split}_images'], expected_ndim=3)
        labels = read_idx(files[f'{split}_labels'], expected_ndim=1)
        if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
            raise DatasetFormatError(f'{files[f"{split}_images"]}: expected uint8 images of 28x28, '
                                     f'got {images.dtype} {images.shape}')
        if len(labels) != len(images):
            raise DatasetFormatError(f'{files[f"{split}_labels"]}: {len(labels)} labels for '
                                     f'{len(images)} images in {files[f"{split}_images"]}')
        if len(labels) and labels.max() >= len(CLASSES):
            raise DatasetFormatError(f'{files[f"{split}_labels"]}: label {labels.max()} out of range 0-9')
        arrays[f'x_{split}'] = images[:, None]
        arrays[f'y_{split}'] = labels.astype(np.int64)
    return RawData(classes=CLASSES, **arrays)

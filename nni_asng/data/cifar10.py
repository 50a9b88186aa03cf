"""CIFAR-10 (Krizhevsky, 2009) from the standard ``cifar-10-batches-py`` folder of python pickles.

It cannot be downloaded on this machine (docs/design.md §2): the user passes the folder.
The pickles are read with an unpickler that only admits numpy arrays, lists and bytes,
so a foreign pickle cannot run code.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .base import RawData
from .errors import DatasetFormatError, DatasetNotFoundError

FOLDER = 'cifar-10-batches-py'
TRAIN_FILES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_FILE = 'test_batch'
META_FILE = 'batches.meta'  # optional: class names
CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
#: Per-channel statistics of the 50,000 training images (pixels scaled to [0, 1]).
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'


def _numpy_core():
    return getattr(np, '_core', None) or np.core  # numpy 2 renamed numpy.core


class _ArrayUnpickler(pickle.Unpickler):
    """Admit only the globals a numpy-array pickle needs."""

    def find_class(self, module: str, name: str):
        import codecs
        core = _numpy_core()
        allowed = {
            ('_codecs', 'encode'): codecs.encode,
            ('numpy', 'ndarray'): np.ndarray,
            ('numpy', 'dtype'): np.dtype,
            ('numpy.core.multiarray', '_reconstruct'): core.multiarray._reconstruct,
            ('numpy._core.multiarray', '_reconstruct'): core.multiarray._reconstruct,
            ('numpy.core.numeric', '_frombuffer'): core.numeric._frombuffer,
            ('numpy._core.numeric', '_frombuffer'): core.numeric._frombuffer,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f'global {module}.{name} is not allowed in a CIFAR-10 batch')
        return allowed[(module, name)]


def _read_pickle(path: Path):
    try:
        with open(path, 'rb') as f:
            return _ArrayUnpickler(io.BytesIO(f.read()), encoding='bytes').load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DatasetFormatError(f'{path}: not a readable CIFAR-10 python batch ({type(e).__name__}: {e})') from e


def _field(batch: dict, key: str):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise KeyError(key)


def read_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 images ``(n, 3, 32, 32)`` and int64 labels ``(n,)``."""
    batch = _read_pickle(path)
    try:
        data, labels = _field(batch, 'data'), _field(batch, 'labels')
    except (KeyError, TypeError) as e:
        raise DatasetFormatError(f'{path}: a CIFAR-10 batch is a dict with "data" and "labels"') from e
    data, labels = np.asarray(data), np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(f'{path}: "data" must be uint8 of shape (n, 3072), got {data.dtype} {data.shape}')
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(f'{path}: "labels" must hold {len(data)} integers, got {labels.dtype} {labels.shape}')
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise DatasetFormatError(f'{path}: labels must lie in 0-9, found {labels.min()}..{labels.max()}')
    # Rows hold the red, green then blue 32x32 planes, each row-major.
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def resolve_folder(root: Optional[str | os.PathLike]) -> Path:
    """``root`` itself or ``root/cifar-10-batches-py``, whichever holds the six batch files."""
    expected = ', '.join(TRAIN_FILES + (TEST_FILE,))
    how = (f'On a machine with internet, download {URL} (https://www.cs.toronto.edu/~kriz/cifar.html), '
           f'unpack it (tar xzf) and copy the {FOLDER} folder here; then pass data.root (config) / root= that folder '
           f'or its parent. This machine cannot download it.')
    if root is None:
        raise DatasetNotFoundError(f'CIFAR-10 needs a data root: pass data.root (config) / root= the {FOLDER} folder '
                                   f'(expected files: {expected}).\n{how}')
    root = Path(root).expanduser()
    candidates = [root, root / FOLDER]
    for folder in candidates:
        if all((folder / name).is_file() for name in TRAIN_FILES + (TEST_FILE,)):
            return folder
    folder = next((c for c in reversed(candidates) if c.is_dir()), None)
    if folder is None:
        problem = f'{root} is a file, not a folder' if root.exists() else f'folder {root} does not exist'
    else:
        missing = [n for n in TRAIN_FILES + (TEST_FILE,) if not (folder / n).is_file()]
        problem = f'{folder} lacks {", ".join(missing)}'
    raise DatasetNotFoundError(f'CIFAR-10 not found: {problem}.\nExpected the {FOLDER} folder with the python '
                               f'batches {expected} at {root} (or {root / FOLDER}).\n{how}')


def _class_names(folder: Path) -> Tuple[str, ...]:
    meta = folder / META_FILE
    if not meta.is_file():
        return CLASSES
    try:
        names = _field(_read_pickle(meta), 'label_names')
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except (DatasetFormatError, KeyError, TypeError):
        return CLASSES
    return names if len(names) == len(CLASSES) else CLASSES


def load(root: Optional[str | os.PathLike]) -> RawData:
    """Read the five training batches and the test batch into :class:`RawData`."""
    folder = resolve_folder(root)
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    x_test, y_test = read_batch(folder / TEST_FILE)
    return RawData(x_train=np.concatenate([x for x, _ in train]), y_train=np.concatenate([y for _, y in train]),
                   x_test=x_test, y_test=y_test, classes=_class_names(folder))

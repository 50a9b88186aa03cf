"""The in-memory form every dataset reader returns."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .errors import DatasetFormatError


@dataclass(frozen=True)
class RawData:
    """Train/test images as uint8 ``(N, C, H, W)`` and labels as int64 ``(N,)``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: Tuple[str, ...]

    def __post_init__(self):
        for split in ('train', 'test'):
            x, y = getattr(self, f'x_{split}'), getattr(self, f'y_{split}')
            if x.dtype != np.uint8 or x.ndim != 4:
                raise DatasetFormatError(f'{split} images must be uint8 (N, C, H, W), got {x.dtype} {x.shape}')
            if y.dtype != np.int64 or y.shape != (len(x),):
                raise DatasetFormatError(f'{split} labels must be int64 of shape ({len(x)},), got {y.dtype} {y.shape}')
            if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
                raise DatasetFormatError(f'{split} labels must lie in 0..{len(self.classes) - 1}, '
                                         f'found {y.min()}..{y.max()}')
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DatasetFormatError(f'train and test images differ in shape: {self.x_train.shape[1:]} '
                                     f'vs {self.x_test.shape[1:]}')

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

"""The dataset view every loader hands out: a slice of a cached uint8 array plus a transform.

The class is ``nni.trace``d and rebuilt from its small constructor arguments (name, root,
split, limit, seed, ...), never from its arrays: NNI can serialise a DataLoader over it
within the 64 KB evaluator payload (docs/design.md §2), and a pickle re-reads the files lazily.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import nni
import numpy as np
import torch
from torch.utils.data import Dataset

from .registry import get_info, load_raw, split_images
from .splits import Limit, subset_then_halves
from .transforms import Compose, build_transform

__all__ = ['ImageClassificationDataset']

_STATE = ('_images', '_labels', '_indices')



@nni.trace
class ImageClassificationDataset(Dataset):
    """``(image, label)`` pairs: image float32 ``(C, H, W)``, label ``int``.

    Parameters
    ----------
    name, root
        Dataset name (see :func:`nni_asng.data.supported_names`) and its folder (``None``: default).
    split
        ``'train'`` or ``'test'``.
    half
        ``None``, or ``'x'`` / ``'theta'``: the D_x / D_θ half of the (limited) training set
        (asng-nas §3.2, see :mod:`nni_asng.data.splits`).
    limit, seed, stratified
        Keep a stratified subset (``int`` count or ``float`` fraction), chosen with ``seed``,
        which also draws the halves (stratified or plain random).
    subset_seed
        Seed of the ``limit`` subset (default ``seed``, which then only draws the halves); fix it to give runs
        with different seeds the same images.
    holdout
        With ``half='holdout'``: size of the stratified subset drawn from the training examples outside the
        ``limit`` subset (a validation set that no search sees).
    resolution
        Resize the images to ``resolution`` x ``resolution`` pixels (area interpolation, once per split);
        ``None`` keeps the dataset's size.
    augment, flip
        Standard augmentation (random crop after zero padding, flip where the dataset allows it;
        ``flip`` overrides the dataset default). Never use it on evaluation data.
    normalize
        ``True``: per-channel standardisation with the dataset's statistics; ``False``: pixels in [0, 1]
        (what the inpainting view needs).
    cutout
        Side of the cutout square; ``True`` means half the image side (16 on CIFAR-10, as in
        DeVries & Taylor 2017 and pdas §4.1); ``0``/``False`` disables it.
    """

    def __init__(self, name: str, root: Optional[Union[str, os.PathLike]] = None, split: str = 'train',
                 half: Optional[str] = None, limit: Limit = None, seed: int = 0, stratified: bool = True,
                 augment: bool = False, normalize: bool = True, cutout: Union[int, bool] = 0,
                 flip: Optional[bool] = None, subset_seed: Optional[int] = None, holdout: Limit = None,
                 resolution: Optional[int] = None):
        if split not in ('train', 'test'):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if half is not None and split != 'train':
            raise ValueError('the D_x / D_theta halves are drawn from the training split only')
        self.info = get_info(name)
        self.name, self.root, self.split, self.half = self.info.name, root, split, half
        self.limit, self.seed, self.stratified = limit, int(seed), bool(stratified)
        self.augment, self.normalize = bool(augment), bool(normalize)
        self.subset_seed = None if subset_seed is None else int(subset_seed)
        self.holdout = holdout
        if resolution is not None and (isinstance(resolution, bool) or int(resolution) < 4):
            raise ValueError(f'resolution must be an integer >= 4 (pixels), got {resolution!r}')
        self.resolution = None if resolution is None else int(resolution)
        self._images = self._labels = self._indices = None
        self._materialize()  # read now, so a missing folder is reported at construction
        side = min(self.input_shape[1:])
        self.cutout = side // 2 if cutout is True else int(cutout)
        self.flip = self.info.flip if flip is None else bool(flip)
        self.transform: Compose = build_transform(
            augment=self.augment, padding=self.info.crop_padding, flip=self.flip,
            mean=self.info.mean if self.normalize else None, std=self.info.std, cutout=self.cutout)

    def _materialize(self) -> None:
        raw = load_raw(self.name, self.root)
        y = raw.y_train if self.split == 'train' else raw.y_test
        idx = subset_then_halves(y, self.limit, self.seed, self.stratified, self.half, self.subset_seed, self.holdout)
        self._images = split_images(self.name, self.root, self.split, self.resolution)  # shared with other views
        self._indices = torch.from_numpy(idx)
        self._labels = torch.from_numpy(y[idx])
        self._classes, self._input_shape = raw.classes, tuple(self._images.shape[1:])

    def _ensure(self) -> None:
        if self._images is None:
            self._materialize()

    def __getstate__(self):
        return {k: (None if k in _STATE else v) for k, v in self.__dict__.items()}

    def __len__(self) -> int:
        self._ensure()
        return len(self._indices)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        self._ensure()
        return self.transform(self._images[self._indices[i]]), int(self._labels[i])

    @property
    def labels(self) -> torch.Tensor:
        """int64 labels of this view, in item order."""
        self._ensure()
        return self._labels

    @property
    def indices(self) -> np.ndarray:
        """Positions of the items in the full split (sorted)."""
        self._ensure()
        return self._indices.numpy()

    @property
    def images(self) -> torch.Tensor:
        """The uint8 ``(N, C, H, W)`` images of this view, untransformed (a copy)."""
        self._ensure()
        return self._images[self._indices]

    @property
    def classes(self) -> Tuple[str, ...]:
        self._ensure()
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        self._ensure()
        return self._input_shape

    def __repr__(self) -> str:
        part = f', half={self.half!r}' if self.half else ''
        return (f'ImageClassificationDataset({self.name!r}, split={self.split!r}{part}, n={len(self)}, '
                f'transform={self.transform!r})')

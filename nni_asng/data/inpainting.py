"""Inpainting view of an image dataset: ``(masked_image, clean_image)`` pairs (asng-nas §3.3, pdas §4.2).

Masks of Suganuma et al. (2018), as used by ASNG-NAS and PDAS:

* ``'center'`` -- a central square block (side ``center_fraction`` x the shorter image side, half by default);
* ``'pixel'``  -- ``pixel_fraction`` (80 %) of the pixels, chosen at random (exactly round(0.8 H W) pixels);
* ``'half'``   -- the top, bottom, left or right half, chosen at random (vertical or horizontal half).

A mask covers all channels; masked pixels are set to ``fill_value`` (0). Training views draw a new random
mask every time an example is read (so every example of every mini-batch gets its own), from torch's global
generator (seeded by ``pytorch_lightning.seed_everything`` and per DataLoader worker). Test views draw the
mask of example ``i`` from a generator seeded with ``(seed, i)``: the same mask every epoch and every run,
so test PSNR/SSIM are reproducible.
"""
from __future__ import annotations

from typing import Any

import nni
import torch
from torch.utils.data import Dataset

__all__ = ['MASK_KINDS', 'InpaintingDataset', 'make_mask']

MASK_KINDS = ('center', 'pixel', 'half')


def make_mask(kind: str, height: int, width: int, generator: torch.Generator | None = None,
              center_fraction: float = 0.5, pixel_fraction: float = 0.8) -> torch.Tensor:
    """A boolean ``(height, width)`` mask, True where the pixel is missing.

    ``generator`` drives the random masks (``None``: torch's global generator); ``center`` is deterministic.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f'unknown mask {kind!r}; choose one of {list(MASK_KINDS)}')
    mask = torch.zeros(height, width, dtype=torch.bool)
    if kind == 'center':
        side = max(1, int(round(center_fraction * min(height, width))))
        top, left = (height - side) // 2, (width - side) // 2
        mask[top:top + side, left:left + side] = True
    elif kind == 'pixel':
        count = int(round(pixel_fraction * height * width))
        mask.view(-1)[torch.randperm(height * width, generator=generator)[:count]] = True
    else:
        side = int(torch.randint(4, (1,), generator=generator))
        if side == 0:
            mask[:height // 2] = True            # top half
        elif side == 1:
            mask[height - height // 2:] = True   # bottom half
        elif side == 2:
            mask[:, :width // 2] = True          # left half
        else:
            mask[:, width - width // 2:] = True  # right half
    return mask


@nni.trace
class InpaintingDataset(Dataset):
    """``(masked_image, clean_image)`` over any dataset yielding ``(image, label)``, image a float CxHxW in [0, 1].

    Parameters
    ----------
    dataset
        The image dataset (labels are ignored).
    mask
        ``'center'``, ``'pixel'`` or ``'half'``.
    train
        True: a new random mask at every read. False: a fixed mask per index (seeded by ``seed`` and the index).
    seed
        Seed of the test masks.
    fill_value
        Value written into the missing pixels.
    center_fraction, pixel_fraction
        Side of the central block relative to the shorter side; share of missing pixels of the pixel mask.
    """

    def __init__(self, dataset: Any, mask: str = 'center', train: bool = True, seed: int = 0,
                 fill_value: float = 0.0, center_fraction: float = 0.5, pixel_fraction: float = 0.8):
        if mask not in MASK_KINDS:
            raise ValueError(f'unknown mask {mask!r}; choose one of {list(MASK_KINDS)}')
        if not 0 < center_fraction <= 1 or not 0 <= pixel_fraction <= 1:
            raise ValueError(f'center_fraction must be in (0, 1] and pixel_fraction in [0, 1], got '
                             f'{center_fraction!r} and {pixel_fraction!r}')
        self.dataset = dataset
        self.mask = mask
        self.train = bool(train)
        self.seed = int(seed)
        self.fill_value = float(fill_value)
        self.center_fraction = center_fraction
        self.pixel_fraction = pixel_fraction

    def __len__(self) -> int:
        return len(self.dataset)

    def mask_for(self, index: int, height: int, width: int) -> torch.Tensor:
        """The mask of example ``index`` (train: a fresh random one; test: always the same one)."""
        generator = None
        if not self.train:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index))
        return make_mask(self.mask, height, width, generator, self.center_fraction, self.pixel_fraction)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.dataset[index]
        image = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or not image.is_floating_point():
            raise TypeError('InpaintingDataset needs images as float tensors C x H x W in [0, 1]; example '
                            f'{index} is {type(image).__name__}'
                            + (f' of shape {tuple(image.shape)} and dtype {image.dtype}'
                               if isinstance(image, torch.Tensor) else '')
                            + ' (convert it first, e.g. with torchvision.transforms.ToTensor())')
        mask = self.mask_for(index, image.shape[-2], image.shape[-1])
        return image.masked_fill(mask, self.fill_value), image

"""Per-image transforms on CHW tensors: small picklable classes, torch RNG only.

Using torch's global RNG (never numpy's) gives every DataLoader worker its own stream.
Standard search/training augmentation (pdas §4.1, DARTS): zero-pad, random crop back to
the input size, optional horizontal flip; per-channel standardisation; optional cutout
(DeVries & Taylor, 2017) for retraining. Val/test sets get no augmentation.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch

__all__ = ['Compose', 'RandomCrop', 'RandomHorizontalFlip', 'ToUnitFloat', 'Normalize', 'Cutout',
           'build_transform']


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]]):
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f'Compose({self.transforms!r})'


class RandomCrop:
    """Zero-pad ``padding`` pixels on each side, then crop a random window of the original size."""

    def __init__(self, padding: int):
        if padding < 0:
            raise ValueError(f'padding must be >= 0, got {padding}')
        self.padding = int(padding)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p == 0:
            return x
        h, w = x.shape[-2:]
        # Offset of the window in the padded image, shifted so 0 means "no translation".
        dy, dx = (int(v) for v in torch.randint(-p, p + 1, (2,)))
        out = torch.zeros_like(x)
        if abs(dy) >= h or abs(dx) >= w:  # window entirely in the padding
            return out
        out[..., max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
            x[..., max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
        return out

    def __repr__(self) -> str:
        return f'RandomCrop(padding={self.padding})'


class RandomHorizontalFlip:
    """Mirror left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) if float(torch.rand(())) < self.p else x

    def __repr__(self) -> str:
        return f'RandomHorizontalFlip(p={self.p})'


class ToUnitFloat:
    """uint8 in [0, 255] -> float32 in [0, 1]."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32) / 255.0  # never in place: x may be the cached array

    def __repr__(self) -> str:
        return 'ToUnitFloat()'


class Normalize:
    """Per-channel standardisation ``(x - mean) / std`` (pdas §4.1)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean).view(-1, 1, 1)
        self._std = torch.tensor(self.std).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean) / self._std

    def __repr__(self) -> str:
        return f'Normalize(mean={self.mean}, std={self.std})'


class Cutout:
    """Zero a ``length`` x ``length`` square at a random centre, clipped at the border (DeVries & Taylor, 2017).

    Applied last, so on normalised images the square holds the mean colour, as in the paper.
    """

    def __init__(self, length: int):
        if length < 0:
            raise ValueError(f'cutout length must be >= 0, got {length}')
        self.length = int(length)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.length == 0:
            return x
        h, w = x.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1 = max(0, cy - self.length // 2), min(h, cy + (self.length + 1) // 2)
        x0, x1 = max(0, cx - self.length // 2), min(w, cx + (self.length + 1) // 2)
        x = x.clone()
        x[..., y0:y1, x0:x1] = 0
        return x

    def __repr__(self) -> str:
        return f'Cutout(length={self.length})'


def build_transform(augment: bool, padding: int, flip: bool, mean: Optional[Sequence[float]],
                    std: Optional[Sequence[float]], cutout: int = 0) -> Compose:
    """uint8 CHW -> float CHW: [crop, flip] if ``augment``, to [0, 1], [normalise if ``mean``], [cutout]."""
    steps: List[Callable] = []
    if augment:
        if padding:
            steps.append(RandomCrop(padding))
        if flip:
            steps.append(RandomHorizontalFlip())
    steps.append(ToUnitFloat())
    if mean is not None:
        steps.append(Normalize(mean, std))
    if cutout:
        steps.append(Cutout(cutout))
    return Compose(steps)

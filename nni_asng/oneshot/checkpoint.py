"""Search state ↔ checkpoint-safe objects.

Lightning checkpoints may be loaded with ``torch.load(weights_only=True)``, which accepts tensors
and plain containers but not numpy arrays; arrays are stored as float64/int64 tensors and
restored exactly (bit-for-bit), so a resumed search continues the identical θ trajectory.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

_ARRAY = '__ndarray__'


def to_checkpoint(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(obj)).clone()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_checkpoint(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_checkpoint(v) for v in obj)
    return obj


def from_checkpoint(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY}:
            return obj[_ARRAY].cpu().numpy().copy()
        return {k: from_checkpoint(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_checkpoint(v) for v in obj)
    return obj

"""Model size: the one parameter count (and FLOPs count) used everywhere in nni-asng. torch only."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

__all__ = ['count_parameters', 'count_flops']


def count_parameters(model: nn.Module, include_auxiliary: bool = False) -> int:
    """Number of parameters (buffers excluded).

    Parameters of an auxiliary head — any submodule whose name starts with ``aux`` (``auxiliary_head``,
    ``aux_head``, ...) — are left out unless ``include_auxiliary``: the papers report network sizes without
    it (asng-nas §3.2, DARTS), and it is dropped after training.
    """
    return int(sum(p.numel() for name, p in model.named_parameters()
                   if include_auxiliary or not any(part.startswith('aux') for part in name.split('.')[:-1])))


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass on a single input, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())

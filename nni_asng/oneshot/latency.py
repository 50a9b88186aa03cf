"""Latency of a network's forward pass on the user's device, timed so that a shared machine can trust it;
and the one forward pass that materialises lazy modules (``nn.LazyLinear``) before anything is counted.

A measurement warms up (``warmup`` passes: allocator, caches, CPU frequency), then times ``repeats`` rounds of
``inner`` passes each (``inner`` is chosen so that a round lasts about 0.5 ms: well above the timer's resolution,
and short enough that many rounds run between the scheduler's preemptions on a busy machine) with the thread
count fixed (``threads``: one thread by default, so a background job taking the other cores moves the figure
less than it would move a multi-threaded run). Several networks measured together have their rounds
interleaved (:func:`time_interleaved`), each round after one untimed pass that brings the network's weights
back into the caches the others used (without it, a per-choice table of 2 MB layers overestimated them by 35 %).
The figure is a low percentile of the rounds (``statistic``, default the 10th: another process can only add
time to a round, so the fast rounds are robust where the median is not on a busy machine); its stability is the
relative inter-quartile range (p75 − p25)/median of the rounds. On CUDA every round is synchronised before and
after.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin

__all__ = ['LatencyOptions', 'Timing', 'time_forward', 'time_interleaved', 'has_lazy_modules', 'materialise']


STATISTICS = {'p10': 10, 'lower_quartile': 25, 'median': 50}


@dataclass(frozen=True)
class LatencyOptions:
    """How a latency is measured: ``device`` ('cpu', 'cuda', 'cuda:1'), ``batch_size`` inputs per pass,
    ``warmup`` untimed passes, ``repeats`` timed rounds, the torch ``threads`` during the measurement and the
    ``statistic`` of the rounds that is the latency: ``'p10'`` (default: the 10th percentile), ``'lower_quartile'``
    or ``'median'``. Another process can only add time to a round, so on a busy machine the fast rounds are the
    network's own time: on this project's 2 shared cores at load 12, ten measurements of one network had medians
    from 0.12 to 0.43 ms and 10th percentiles from 0.042 to 0.073 ms (8 of 10 within 0.042–0.048)."""

    device: str = 'cpu'
    batch_size: int = 1
    warmup: int = 10
    repeats: int = 50
    threads: int | None = 1
    statistic: str = 'p10'

    def __post_init__(self):
        for name, low in [('batch_size', 1), ('warmup', 0), ('repeats', 3)]:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f'latency {name} must be an integer >= {low}, got {value!r}')
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f'latency threads must be an integer >= 1 or None, got {self.threads!r}')
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"latency device must be 'cpu' or 'cuda[:n]', got {self.device!r}") from err
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f'latency device {self.device!r}: CUDA is not available on this machine')
        if self.statistic not in STATISTICS:
            raise ValueError(f'latency statistic must be one of {tuple(STATISTICS)}, got {self.statistic!r}')
        if device.type not in ('cpu', 'cuda'):
            raise ValueError(f"latency device must be 'cpu' or 'cuda[:n]', got {self.device!r}")


@dataclass(frozen=True)
class Timing:
    """A latency measurement: ``ms`` per forward pass (the options' statistic of the rounds), the relative spread
    of the rounds and the rounds themselves."""

    ms: float
    spread: float                 # (p75 − p25) / median over the rounds
    rounds_ms: tuple = field(repr=False)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.rounds_ms))


def has_lazy_modules(model: nn.Module) -> bool:
    return any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for m in model.modules())


def materialise(model: nn.Module, input_shape: Sequence[int] | None) -> nn.Module:
    """Run one forward pass (batch of 2 zeros, eval mode, no gradients) when ``model`` holds uninitialised lazy
    modules, so that their parameters exist before they are counted or timed. Returns ``model``."""
    if not has_lazy_modules(model):
        return model
    if input_shape is None:
        lazy = sorted({type(m).__name__ for m in model.modules() if isinstance(m, LazyModuleMixin)})
        raise ValueError(f'the network holds lazy modules ({", ".join(lazy)}) whose parameters exist only after a '
                         'forward pass: give input_shape (the data\'s (C, H, W)) so that one pass materialises them')
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters() if not isinstance(p, nn.parameter.UninitializedParameter)),
                      torch.device('cpu'))
        with torch.no_grad():
            model(torch.zeros(2, *input_shape, device=device))
    finally:
        model.train(was_training)
    return model


@contextlib.contextmanager
def _threads(threads: int | None):
    if threads is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def time_forward(model: nn.Module, input_shape: Sequence[int], options: LatencyOptions | None = None) -> Timing:
    """Latency of ``model`` (eval mode, no gradients) on inputs of ``(batch_size, *input_shape)``."""
    return time_interleaved([model], input_shape, options)[0]


def time_interleaved(models: Sequence[nn.Module], input_shape: Sequence[int], options: LatencyOptions | None = None,
                     seed: int = 0) -> list[Timing]:
    """Latency of each of ``models``, their timed rounds interleaved (round r of every model, in a random order,
    before round r + 1 of any): a stretch of time when another process takes the CPU slows rounds of every model
    alike instead of all rounds of one, so differences between the models (a per-choice table) stay unbiased."""
    options = options or LatencyOptions()
    device = torch.device(options.device)
    cuda = device.type == 'cuda'
    modes = [m.training for m in models]
    nets = [m.to(device).eval() for m in models]
    x = torch.zeros(options.batch_size, *input_shape, device=device)

    def run(net: nn.Module, n: int) -> float:
        if cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            net(x)
        if cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    rng = np.random.default_rng(seed)
    rounds = [[] for _ in nets]
    try:
        with _threads(options.threads), torch.inference_mode():
            inner = []
            for net in nets:
                run(net, max(1, options.warmup))
                once = min(run(net, 1) for _ in range(3))
                inner.append(max(1, min(100, math.ceil(5e-4 / max(once, 1e-6)))))   # a round: about 0.5 ms
            for _ in range(options.repeats):
                for i in rng.permutation(len(nets)):
                    nets[i](x)                  # untimed: its weights back in the caches the other networks used
                    rounds[i].append(run(nets[i], inner[i]) / inner[i] * 1e3)
    finally:
        for net, mode in zip(nets, modes):
            net.train(mode)
    out = []
    for values in rounds:
        values = np.array(values)
        median = float(np.median(values))
        q25, q75 = np.percentile(values, [25, 75])
        out.append(Timing(float(np.percentile(values, STATISTICS[options.statistic])),
                          float((q75 - q25) / median) if median > 0 else 0.0, tuple(values.tolist())))
    return out

"""Shared pieces of the benchmark scripts: spaces, strategies, data, timers, memory probes, machine info.

Every strategy — ours and NNI's — is driven through the same path NNI's sequential execution engine
takes for a one-shot strategy (``OneShotStrategy._initialize`` + ``Lightning.evaluate``)::

    supernet = strategy.mutate_model(space)                # the supernet, in place
    evaluator = strategy.mutate_evaluator(evaluator)       # Lightning(oneshot_module, trainer, loaders)
    evaluator.evaluate(supernet)                           # trainer.fit(...)

so the one-shot Lightning module is at hand (``evaluator.module``) for timing hooks, ``export()``
and the distribution's entropy, without going through the experiment manager.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / 'experiments' / 'results' / 'benchmarks'

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

import nni  # noqa: E402
import nni_asng.oneshot  # noqa: E402,F401  (imports nni.nas.strategy in the order NNI needs)

# ---------------------------------------------------------------------------------------------- names
OURS = ('asng', 'pdas', 'advantage_nas', 'reinforce', 'multi_complexity')
NNI = ('darts', 'gumbel_darts', 'proxyless', 'random_one_shot')
DISPLAY = {'asng': 'ASNG(λ=2)', 'pdas': 'PDAS(λ=2)', 'sng': 'SNG(λ=2)', 'advantage_nas': 'AdvantageNAS',
           'reinforce': 'Reinforce', 'multi_complexity': 'MultiComplexity', 'darts': 'NNI DARTS',
           'gumbel_darts': 'NNI GumbelDARTS', 'proxyless': 'NNI Proxyless', 'random_one_shot': 'NNI RandomOneShot'}


def make_strategy(name: str, *, seed: int = 0, max_epochs: int | None = None, **overrides: Any):
    """A fresh strategy object by benchmark name (the CLI's names)."""
    import nni_asng as ours
    from nni.nas import strategy as nni_strategy
    if name == 'asng':
        return ours.ASNG(lam=2, seed=seed, **overrides)
    if name == 'pdas':
        return ours.PDAS(lam=2, seed=seed, **overrides)
    if name == 'sng':
        return ours.SNG(lam=2, seed=seed, **overrides)
    if name == 'advantage_nas':
        return ours.AdvantageNAS(seed=seed, **overrides)
    if name == 'reinforce':
        return ours.Reinforce(seed=seed, **overrides)
    if name == 'multi_complexity':
        kwargs = dict(weight_epochs=1, theta_epochs=1, lam=2, seed=seed)
        kwargs.update(overrides)
        return ours.MultiComplexity(**kwargs)
    if name == 'darts':
        return nni_strategy.DARTS(**overrides)
    if name == 'gumbel_darts':
        return nni_strategy.GumbelDARTS(**overrides)
    if name == 'proxyless':
        return nni_strategy.Proxyless(**overrides)
    if name == 'random_one_shot':
        return nni_strategy.RandomOneShot(**overrides)
    raise ValueError(f'unknown strategy {name!r}; known: {OURS + NNI}')


# ---------------------------------------------------------------------------------------------- spaces
def make_space(name: str, channels: int, cells: int, in_channels: int = 3, num_classes: int = 10):
    """``hub_darts``: NNI's ``DARTS(width=channels, num_cells=cells, dataset='cifar')``;
    ``enas_cell``: our ``ENASCellSpace`` with ``3N + 2 = cells`` cells (N normal cells per stage)."""
    if name == 'hub_darts':
        from nni.nas.hub.pytorch import DARTS as HubDARTS
        if in_channels != 3 or num_classes != 10:
            raise ValueError("NNI's hub DARTS space with dataset='cifar' takes 3-channel images and 10 classes")
        return HubDARTS(width=int(channels), num_cells=int(cells), dataset='cifar')
    if name == 'enas_cell':
        from search_spaces.enas_cell import ENASCellSpace
        if (cells - 2) % 3 or cells < 5:
            raise ValueError(f'the ENAS cell space has 3N + 2 cells (5, 8, 11, ...), got {cells}')
        return ENASCellSpace(channels=int(channels), cells_per_stage=(cells - 2) // 3, in_channels=in_channels,
                             num_classes=num_classes)
    raise ValueError(f'unknown space {name!r}; known: hub_darts, enas_cell')


# ---------------------------------------------------------------------------------------------- data
@nni.trace
class SyntheticImages(Dataset):
    """``n`` deterministic N(0, 1) images with random labels, drawn from a pool of ``pool`` examples."""

    def __init__(self, n: int, shape: tuple, num_classes: int = 10, seed: int = 0, pool: int = 256):
        g = torch.Generator().manual_seed(seed)
        pool = max(1, min(int(pool), int(n)))
        self.n = int(n)
        self.x = torch.randn(pool, *shape, generator=g)
        self.y = torch.randint(0, num_classes, (pool,), generator=g)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.x[i % len(self.x)], self.y[i % len(self.y)]


def synthetic_loaders(batch_size: int, batches: int, shape: tuple, num_classes: int = 10):
    from nni.nas.evaluator.pytorch import DataLoader
    n = batch_size * batches
    return (DataLoader(SyntheticImages(n, tuple(shape), num_classes, seed=0), batch_size=batch_size, shuffle=False,
                       drop_last=True),
            DataLoader(SyntheticImages(n, tuple(shape), num_classes, seed=1), batch_size=batch_size, shuffle=False,
                       drop_last=True))


def trainer_device_kwargs(device: str) -> dict[str, Any]:
    """One-process Trainer arguments for ``device``, checked as nni-asng's CLI checks it."""
    from nni_asng.app.runners import tasks
    return tasks.trainer_device_kwargs(tasks.resolve_device(device))


def quiet_trainer_kwargs() -> dict[str, Any]:
    return dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0)


@contextlib.contextmanager
def quiet_warnings():
    """nni-asng's warning filter, here muting every UserWarning, RuntimeWarning and FutureWarning too, with the
    libraries' log records below ERROR dropped while it is active."""
    import logging

    from nni_asng.app import quiet_warnings as quiet
    with quiet(categories=(UserWarning, RuntimeWarning, FutureWarning)):
        levels = {}
        for name in ('pytorch_lightning', 'lightning', 'lightning.pytorch', 'nni', 'lightning_fabric'):
            levels[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


# ---------------------------------------------------------------------------------------------- timers
class SelfTimers:
    """Exclusive ("self") wall time per category: a wrapped call nested in another wrapped call is
    subtracted from its parent, so the categories add up to at most the enclosing time."""

    def __init__(self, sync: Callable[[], None] | None = None):
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list[float]] = []     # [start, time spent in children]

    def wrap(self, obj: Any, attr: str, category: str) -> bool:
        """Replace ``obj.attr`` (a method) by a timed version on the instance; False if absent."""
        fn = getattr(obj, attr, None)
        if fn is None or getattr(fn, '_bench_timed', False):
            return False
        timers = self

        def timed(*args, **kwargs):
            frame = [time.perf_counter(), 0.0]
            timers._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                timers._stack.pop()
                elapsed = time.perf_counter() - frame[0]
                timers.totals[category] = timers.totals.get(category, 0.0) + elapsed - frame[1]
                timers.calls[category] = timers.calls.get(category, 0) + 1
                if timers._stack:
                    timers._stack[-1][1] += elapsed

        timed._bench_timed = True  # type: ignore[attr-defined]
        if isinstance(obj, torch.nn.Module):
            object.__setattr__(obj, attr, timed)
        else:
            setattr(obj, attr, timed)
        return True

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) != 0.0}


# Categories: the network, and the search's own bookkeeping ("architecture-update overhead").
NETWORK_CATEGORIES = ('forward', 'backward', 'optimizer')
OVERHEAD_CATEGORIES = ('ask', 'tell', 'encode', 'activate', 'log_summary', 'log', 'record')


def instrument(module, timers: SelfTimers) -> list[str]:
    """Wrap the calls of a one-shot module (ours or NNI's) with exclusive timers; returns what was wrapped.

    network: ``training_module.training_step`` (forward + loss + the evaluator's metrics), ``module.backward``
    (every backward Lightning runs, automatic or manual), ``torch.autograd.grad`` (AdvantageNAS's credit
    pass); the weight optimizers' ``step`` is wrapped at train start (:class:`StepTimer`).
    overhead: sampling (``optimizer.ask`` / ``ask_uniform``; NNI: ``resample``), ``optimizer.tell``,
    row -> architecture encoding, activating a path in the supernet, the distribution summary and logging.
    """
    wrapped = []

    def w(obj, attr, cat):
        if obj is not None and timers.wrap(obj, attr, cat):
            wrapped.append(f'{type(obj).__name__}.{attr}->{cat}')

    w(module.training_module, 'training_step', 'forward')
    w(module, 'backward', 'backward')
    searcher = getattr(module, 'searcher', None)
    if searcher is not None:                      # nni-asng
        opt = searcher.optimizer
        w(opt, 'ask', 'ask')
        w(opt, 'ask_uniform', 'ask')
        w(opt, 'tell', 'tell')
        w(searcher.encoding, 'to_architecture', 'encode')
        w(module, 'activate', 'activate')
        w(module, '_log_distribution', 'log_summary')
        w(module, '_record_epoch', 'record')
        w(module, 'log_dict', 'log')
        w(module, 'log', 'log')
    else:                                         # NNI's modules
        w(module, 'resample', 'activate')
        w(module, 'log_probs', 'log')
        w(module, 'export_probs', 'log_summary')
        w(module, 'log_dict', 'log')
        w(module, 'log', 'log')
    return wrapped


@contextlib.contextmanager
def timed_autograd_grad(timers: SelfTimers):
    """Count ``torch.autograd.grad`` (AdvantageNAS's credit backward) as 'backward'."""
    original = torch.autograd.grad

    class _Holder:
        grad = staticmethod(original)

    holder = _Holder()
    timers.wrap(holder, 'grad', 'backward')
    torch.autograd.grad = holder.grad
    try:
        yield
    finally:
        torch.autograd.grad = original


# ---------------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryProbe:
    """Peak memory over a window of steps.

    CUDA: ``torch.cuda.reset_peak_memory_stats()`` at the window start; peak = ``max_memory_allocated``
    (absolute, weights included: comparable to docs/design.md §2's H100 reference point); growth = peak − allocated at start.
    CPU: at the window start ``gc.collect()`` + glibc ``malloc_trim(0)`` (cached free memory goes back to
    the OS), baseline = VmRSS, VmHWM reset to it (``echo 5 > /proc/self/clear_refs``); peak = VmHWM at the
    end (absolute RSS: Python + libraries + weights + data), growth = VmHWM − baseline (the step's
    activations, gradients, temporaries; what the ratios use on CPU). Where clear_refs is not writable a
    1 ms sampling thread of VmRSS replaces VmHWM.
    """

    def __init__(self, device: str):
        self.device = device
        self.baseline = 0
        self.peak = 0
        self.method = ''
        self._sampler = None

    def start(self) -> None:
        if self.device == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            self.method = 'torch.cuda.max_memory_allocated (reset at window start)'
            return
        gc.collect()
        with contextlib.suppress(Exception):
            ctypes.CDLL('libc.so.6').malloc_trim(0)
        self.baseline = (_status_kib('VmRSS') or 0) * 1024
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            self.method = 'VmHWM after clear_refs=5 (gc + malloc_trim at window start)'
        except OSError:
            self._start_sampler()
            self.method = 'VmRSS sampled every 1 ms (clear_refs not writable)'

    def _start_sampler(self) -> None:
        import threading
        self._stop = threading.Event()
        self._sampled = self.baseline

        def run():
            while not self._stop.is_set():
                self._sampled = max(self._sampled, (_status_kib('VmRSS') or 0) * 1024)
                time.sleep(0.001)

        self._sampler = threading.Thread(target=run, daemon=True)
        self._sampler.start()

    def stop(self) -> dict[str, float]:
        if self.device == 'cuda':
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak = self._sampled
        else:
            self.peak = (_status_kib('VmHWM') or 0) * 1024
        return {'peak_mib': self.peak / 2 ** 20, 'growth_mib': max(0, self.peak - self.baseline) / 2 ** 20,
                'baseline_mib': self.baseline / 2 ** 20, 'memory_method': self.method}


def sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- machine
def machine_info(device: str = 'cpu') -> dict[str, Any]:
    cpu = 'unknown'
    with contextlib.suppress(OSError):
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    info = {
        'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'host': platform.node(), 'cpu_model': cpu, 'logical_cores': os.cpu_count(),
        'affinity_cores': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else None,
        'torch_threads': torch.get_num_threads(), 'load_average': [round(x, 2) for x in os.getloadavg()],
        'python': platform.python_version(), 'torch': torch.__version__, 'nni': nni.__version__,
        'device': device,
    }
    with contextlib.suppress(Exception):
        import pytorch_lightning
        info['pytorch_lightning'] = pytorch_lightning.__version__
    if device == 'cuda' and torch.cuda.is_available():
        info['gpu'] = torch.cuda.get_device_name(0)
    return info


def command_line() -> str:
    return ' '.join(shlex.quote(a) for a in [sys.executable] + sys.argv)


def header_lines(info: dict[str, Any], command: str) -> list[str]:
    return [f'# command: {command}',
            f'# date: {info["date"]}  host: {info["host"]}',
            f'# machine: {info["cpu_model"]}, {info["logical_cores"]} logical cores '
            f'(affinity {info["affinity_cores"]}), torch threads {info["torch_threads"]}'
            + (f', GPU {info["gpu"]}' if info.get('gpu') else ''),
            f'# load average at start (1/5/15 min): {info["load_average"]}',
            f'# versions: python {info["python"]}, torch {info["torch"]}, nni {info["nni"]}, '
            f'pytorch-lightning {info.get("pytorch_lightning")}']


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable))
    tmp.replace(path)


def _jsonable(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def format_table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    """Plain-text table; ``align`` is one 'l'/'r' per column (default: first left, rest right)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or 'l' + 'r' * (len(headers) - 1)

    def line(values):
        return '  '.join(v.ljust(w) if a == 'l' else v.rjust(w) for v, w, a in zip(values, widths, align)).rstrip()

    out = [line(headers), line(['-' * w for w in widths])]
    out += [line(r) for r in cells]
    return '\n'.join(out)


def _fmt(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        if math.isnan(value):
            return '-'
        if abs(value) >= 100:
            return f'{value:.0f}'
        if abs(value) >= 10:
            return f'{value:.1f}'
        return f'{value:.2f}'
    return str(value)


def median_iqr(values: list[float]) -> tuple[float, float, float, float]:
    """(median, IQR, q1, q3)."""
    if not values:
        return math.nan, math.nan, math.nan, math.nan
    q1, med, q3 = np.percentile(np.asarray(values, float), [25, 50, 75])
    return float(med), float(q3 - q1), float(q1), float(q3)


def entropy_of_probs(probs: dict[str, dict[Any, float]]) -> float:
    """Σ_labels −Σ p log p of an ``export_probs()`` dict (NNI's DARTS: softmax(α) per label)."""
    total = 0.0
    for dist in probs.values():
        p = np.asarray([float(v) for v in dist.values()], float)
        p = p[p > 0]
        total += float(-(p * np.log(p)).sum())
    return total

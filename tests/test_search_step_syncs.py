"""Device→host synchronisations inside one search step, and mixed precision of the search.

A GPU search step should wait for the device only where the algorithm needs a number on the host:
once for the weight step's finiteness decision (skip the update on NaN/inf) and once for the θ update
(the λ losses, or AdvantageNAS's loss and credits). Reading a loss per sampled path (``bool``,
``float``, ``.item()``) stalls the GPU λ more times per step. Here the reads are counted on the CPU:

* every scalar read (``item``, ``bool``, ``float``, ``int`` of a tensor, and those inside PyTorch's
  C++ code) reaches the dispatcher as ``aten._local_scalar_dense``: a counting ``TorchDispatchMode``
  sees them;
* whole-tensor copies (``Tensor.cpu()``, ``Tensor.tolist()``) do not reach the dispatcher for a
  CPU tensor: the Python methods are wrapped (a ``tolist`` of the result of a counted ``cpu`` is the
  same transfer and is not counted twice).

Only the span from ``on_train_batch_start`` to ``on_train_batch_end`` is counted (the search step,
not Lightning's logging or progress bar, which are off here), and not the θ optimizer's ``ask``/``tell``:
θ lives on the host by design (numpy, or the policy-gradient strategies' float64 CPU tensor, whose
Adam step reads its step counter), so those reads never wait for an accelerator.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_lightning import Callback
from torch.utils._python_dispatch import TorchDispatchMode

import nni_asng
from nni_asng.evaluators.classification import classification_evaluator
from oneshot_harness import random_loaders, run_experiment
from search_spaces.nas_bench_201 import NasBench201Space


class _ScalarReads(TorchDispatchMode):
    def __init__(self, counter: 'SyncCounter'):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.counter.count('item')
        return func(*args, **(kwargs or {}))


class SyncCounter(Callback):
    """Counts device→host reads per training step (see the module docstring)."""

    def __init__(self):
        self.steps: list[dict[str, int]] = []
        self._current: dict[str, int] | None = None
        self._mode: _ScalarReads | None = None
        self._copies: list[torch.Tensor] = []      # results of counted cpu() calls in this step
        self._saved = {}

        self._paused = 0

    def count(self, kind: str) -> None:
        if self._current is not None and not self._paused:
            self._current[kind] = self._current.get(kind, 0) + 1

    def on_train_start(self, trainer, pl_module):
        optimizer = pl_module.searcher.optimizer          # host-side θ: not counted (module docstring)
        for name in ('ask', 'tell'):
            method = getattr(optimizer, name)

            def paused(*args, _method=method, **kwargs):
                self._paused += 1
                try:
                    return _method(*args, **kwargs)
                finally:
                    self._paused -= 1

            setattr(optimizer, name, paused)

    def _patch(self) -> None:
        counter = self
        cpu, tolist = torch.Tensor.cpu, torch.Tensor.tolist
        self._saved = {'cpu': cpu, 'tolist': tolist}

        def counted_cpu(tensor, *args, **kwargs):
            out = cpu(tensor, *args, **kwargs)
            counter.count('cpu')
            counter._copies.append(out)
            return out

        def counted_tolist(tensor):
            if not any(tensor is copy for copy in counter._copies):
                counter.count('tolist')
            return tolist(tensor)

        torch.Tensor.cpu, torch.Tensor.tolist = counted_cpu, counted_tolist

    def _unpatch(self) -> None:
        if self._saved:
            torch.Tensor.cpu, torch.Tensor.tolist = self._saved['cpu'], self._saved['tolist']
            self._saved = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._current = {}
        self._patch()
        self._mode = _ScalarReads(self)
        self._mode.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._mode.__exit__(None, None, None)
        self._mode = None
        self._unpatch()
        self.steps.append(self._current)
        self._current = None
        self._copies = []

    def on_exception(self, trainer, pl_module, exception):
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        self._unpatch()

    def totals(self) -> list[int]:
        return [sum(step.values()) for step in self.steps]


def search(strategy, tmp_path, *, steps: int = 3, callbacks=(), recipe=None, **trainer_kwargs):
    """A few search steps of ``strategy`` on a 2-channel NAS-Bench-201 cell (8x8 random images)."""
    train, val = random_loaders((1, 8, 8), 10, n=8 * steps, batch_size=8)
    evaluator = classification_evaluator(
        train, val, recipe=recipe or dict(optimizer='sgd', learning_rate=0.05), max_epochs=1, enable_progress_bar=False,
        logger=False, enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(tmp_path),
        callbacks=list(callbacks), accelerator='cpu', **trainer_kwargs)
    space = NasBench201Space(channels=2, num_cells=1, in_channels=1, num_classes=10)
    return run_experiment(space, evaluator, strategy, tmp_path / 'nni-experiments')


# What the algorithm needs per step: the weight step's finiteness decision, and the θ update's numbers.
SYNC_BOUND = 2


CLIP = dict(gradient_clip_val=5.0)   # clipping is part of the step (asng-nas §3.3) and must not add a read


STRATEGIES = {'ASNG-lam2': lambda: nni_asng.ASNG(lam=2, seed=0, warmup=0, **CLIP),
              'ASNG-lam4': lambda: nni_asng.ASNG(lam=4, seed=0, warmup=0, **CLIP),
              'PDAS': lambda: nni_asng.PDAS(lam=2, seed=0, warmup=0, **CLIP),
              'Reinforce': lambda: nni_asng.Reinforce(seed=0, warmup=0, **CLIP),
              'AdvantageNAS': lambda: nni_asng.AdvantageNAS(seed=0, warmup=0, **CLIP)}


@pytest.mark.parametrize('make', list(STRATEGIES.values()), ids=list(STRATEGIES))
def test_a_search_step_reads_the_device_a_fixed_number_of_times(make, tmp_path):
    counter = SyncCounter()
    search(make(), tmp_path, steps=3, callbacks=[counter])
    assert len(counter.steps) == 3
    assert all(total <= SYNC_BOUND for total in counter.totals()), counter.steps


def test_bf16_mixed_search_runs_and_theta_keeps_its_precision(tmp_path):
    strategy = nni_asng.ASNG(lam=2, seed=0, warmup=0, **CLIP)
    arch = search(strategy, tmp_path, steps=3, precision='bf16-mixed')
    optimizer = strategy.searcher.optimizer
    assert optimizer.theta.dtype == np.float64
    assert np.all(np.isfinite(optimizer.theta))
    assert optimizer.iteration == 3
    strategy.encoding.validate(arch)


@pytest.mark.parametrize('precision', ['32', 'bf16-mixed'])
def test_gradient_clipping_still_bounds_every_weight_step(precision, tmp_path):
    """Clipping moved into on_before_optimizer_step (after mixed precision unscales): plain SGD then moves the
    weights by at most lr x clip per step."""
    clip, lr, steps = 1e-3, 0.05, 3
    strategy = nni_asng.ASNG(lam=2, seed=0, gradient_clip_val=clip)
    recorded = {}

    class Weights(Callback):
        def on_train_start(self, trainer, pl_module):
            recorded['before'] = [p.detach().clone() for p in pl_module.training_module.parameters()]

        def on_train_end(self, trainer, pl_module):
            recorded['after'] = [p.detach().clone() for p in pl_module.training_module.parameters()]

    search(strategy, tmp_path, steps=steps, callbacks=[Weights()], precision=precision,
           recipe=dict(optimizer='sgd', learning_rate=lr, momentum=0.0, weight_decay=0.0, lr_schedule='constant'))
    moved = torch.sqrt(sum(((a - b).double() ** 2).sum() for a, b in zip(recorded['after'], recorded['before'])))
    assert 0 < float(moved) <= steps * lr * clip * 1.001

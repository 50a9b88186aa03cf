#!/usr/bin/env python
"""The toy regression task of advantagenas §5.1 / Figure 1, run through NNI's experiment API.

Teacher-net φ_a* and student-net φ_a share one DAG: an input node (x ∈ [−1, 1]^{13×13×1}),
|I| intermediate nodes and one output node. Edge i (input → intermediate node i) is a choice
among |J| candidates, each a 7×7 convolution (stride 2, 1 output channel) followed by tanh
(13×13 → 4×4); intermediate node i → output is a 4×4 convolution (stride 1, 1 channel, 4×4 → 1×1);
the output node averages the |I| results. The target is the teacher's output, the loss the
squared error, and every iteration draws a fresh batch of 100 inputs.

How it maps to NNI:

* the student is the ``ModelSpace`` :class:`ToyDAG` with one ``LayerChoice`` per edge (labels
  ``edge0``, ``edge1``, …); its weights w* are a deterministic function of the seed, so the
  teacher ``space.freeze(a*)`` rebuilds exactly the same weights (checked, bit for bit);
* every method runs through the SAME harness: ``NasExperiment(space, Regression(...), strategy).run()``,
  where the evaluator's weight optimiser is SGD with learning rate 0, so w* cannot move (after
  each search the student's parameters are compared bit for bit with a copy taken before);
* the D_x ("train") and D_θ ("val") loaders are :class:`TeacherBatches`, an ``nni.trace``d
  dataset whose every item is a fresh batch of 100 inputs with the teacher's outputs;
* a Lightning ``Callback`` on the evaluator's trainer calls the strategy module's ``export()``
  (the ARGMAX architecture; for NNI's Proxyless, whose ``export()`` samples, the argmax of its α —
  see :func:`argmax_architecture`) every ``--eval-interval`` iterations and records its test loss, the
  squared error against the teacher on a fixed batch of ``--test-size`` inputs (exactly 0 iff the
  architecture is a*, up to ties), and how many edges agree with a*.

One iteration = one training step = one θ update (one weight step with lr 0 and one
architecture step) for every method. The methods (``--methods``):

* ``AdvantageNAS``, ``Reinforce`` — ``nni_asng`` strategies with the paper's §5.1 θ optimiser:
  Adam, lr 1e-3, β = (0.9, 0.999), no weight decay, no gradient clipping, constant learning rate;
  EMA decay γ = 0.05 (Appendix C: REINFORCE baseline b ← b + γ(r − b));
* ``DARTS``, ``Proxyless``, ``GumbelDARTS`` — NNI 3.0's own strategies with ``arc_learning_rate``
  1e-3. Their Adam is fixed inside NNI (``DartsLightningModule.configure_architecture_optimizers``):
  β = (0.5, 0.999), weight decay 1e-3; α is initialised N(0, 1e-6). GumbelDARTS keeps NNI's default
  temperature schedule (1.0 → 0.33, linear in the epoch index; each run is split into
  ``--epochs`` epochs so the schedule has steps).

Determinism: seed index s → ``SeedSequence(base_seed, spawn_key=(s,))`` → independent streams for
w*, a*, the D_x batches, the D_θ batches, the test batch and the strategy's sampler/initialisation.
Every method sees the same problem and the same data for a given seed index.

Examples::

    .venv/bin/python experiments/advantage_toy.py --quick
    .venv/bin/python experiments/advantage_toy.py --seeds 10 --iterations 800 --nni-iterations 100 --processes 2
"""
from __future__ import annotations

import os

# Tiny tensors only: keep every process on one thread (the machine is shared).
for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import nni  # noqa: E402
from nni.nas.evaluator.pytorch import DataLoader, Regression  # noqa: E402
from nni.nas.experiment import NasExperiment  # noqa: E402
from nni.nas.nn.pytorch import LayerChoice, ModelSpace  # noqa: E402
from nni.nas.oneshot.pytorch.supermodule.proxyless import ProxylessMixedLayer  # noqa: E402
from pytorch_lightning import Callback  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

try:
    import nni_asng
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import nni_asng

METHODS = ('AdvantageNAS', 'Reinforce', 'DARTS', 'Proxyless', 'GumbelDARTS')
DEFAULT_OUT = Path(__file__).resolve().parent / 'results' / 'advantage_toy'
INPUT_SIZE = 13
KERNEL, STRIDE = 7, 2
HIDDEN_SIZE = (INPUT_SIZE - KERNEL) // STRIDE + 1          # 4: the 4×4 head conv reduces it to 1×1
# --quick fills in whatever the command line leaves unset.
QUICK = {'seeds': 2, 'iterations': 100, 'nni_iterations': 100, 'eval_interval': 10}
FULL = {'seeds': 10, 'iterations': 800, 'nni_iterations': 100, 'eval_interval': 10}
NNI_METHODS = ('DARTS', 'Proxyless', 'GumbelDARTS')
STREAMS = ('weights', 'architecture', 'train', 'val', 'test', 'strategy')


# ---------------------------------------------------------------------------- the problem
def seed_of(base_seed: int, seed_index: int, stream: str) -> int:
    """Integer seed of one stream (see :data:`STREAMS`) of one seed index."""
    children = np.random.SeedSequence(base_seed, spawn_key=(seed_index,)).spawn(len(STREAMS))
    return int(children[STREAMS.index(stream)].generate_state(1, np.uint32)[0])


def _uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        tensor.copy_((torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) * 2 - 1) * bound)


def _random_conv(in_size: int, kernel: int, stride: int, generator: torch.Generator) -> nn.Conv2d:
    """A 1→1 channel convolution with PyTorch's default init law U(±1/√fan_in), drawn from ``generator``."""
    conv = nn.Conv2d(1, 1, kernel, stride=stride)
    bound = 1.0 / math.sqrt(kernel * kernel)
    _uniform_(conv.weight, bound, generator)
    _uniform_(conv.bias, bound, generator)
    return conv


class ToyDAG(ModelSpace):
    """Student-net of advantagenas §5.1: ``num_edges`` LayerChoices (``edge0``…) of ``num_candidates``
    conv7×7/2 + tanh each, a conv4×4 per intermediate node, the mean at the output node.

    The weights are drawn from ``weight_seed`` in a fixed order (edge by edge, candidate by
    candidate, then the heads), so ``freeze(arch)`` — which re-runs this constructor in NNI's
    frozen context — yields the teacher with the same weights.
    """

    def __init__(self, num_edges: int = 10, num_candidates: int = 10, weight_seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(int(weight_seed))
        edges = []
        for i in range(num_edges):
            candidates = [nn.Sequential(_random_conv(INPUT_SIZE, KERNEL, STRIDE, g), nn.Tanh())
                          for _ in range(num_candidates)]
            edges.append(LayerChoice(candidates, label=f'edge{i}'))
        self.edges = nn.ModuleList(edges)
        self.heads = nn.ModuleList([_random_conv(HIDDEN_SIZE, HIDDEN_SIZE, 1, g) for _ in range(num_edges)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [head(edge(x)) for edge, head in zip(self.edges, self.heads)]
        return torch.stack(outputs, 0).mean(0).flatten(1)              # (batch, 1)


def true_architecture(num_edges: int, num_candidates: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    return {f'edge{i}': int(j) for i, j in enumerate(rng.integers(num_candidates, size=num_edges))}


def build_teacher(num_edges: int, num_candidates: int, weight_seed: int, arch_seed: int) -> nn.Module:
    """φ_a*: the frozen child ``ToyDAG(...).freeze(a*)`` (same weights w* as the student)."""
    space = ToyDAG(num_edges, num_candidates, weight_seed)
    teacher = space.freeze(true_architecture(num_edges, num_candidates, arch_seed))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def sample_inputs(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 1, INPUT_SIZE, INPUT_SIZE, generator=generator) * 2 - 1


@nni.trace
class TeacherBatches(Dataset):
    """``length`` items, each a FRESH batch (x, φ_a*(x)) of ``batch_size`` inputs x ~ U[−1, 1]^{13×13×1}.

    Items are drawn in the order they are asked for from one generator seeded by ``data_seed``
    (use ``DataLoader(..., batch_size=None)``): every epoch gets new batches, and the stream is
    the same for every method. Only integers are traced, so the evaluator stays tiny.
    """

    def __init__(self, num_edges: int, num_candidates: int, weight_seed: int, arch_seed: int, data_seed: int,
                 length: int, batch_size: int = 100):
        self.teacher = build_teacher(num_edges, num_candidates, weight_seed, arch_seed)
        self.generator = torch.Generator().manual_seed(int(data_seed))
        self.length = int(length)
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        x = sample_inputs(self.batch_size, self.generator)
        with torch.no_grad():
            y = self.teacher(x)
        return x, y


class Problem:
    """One seed index: w*, a*, the teacher and the fixed test batch."""

    def __init__(self, seed_index: int, *, num_edges: int = 10, num_candidates: int = 10, base_seed: int = 0,
                 test_size: int = 1000):
        self.seed_index = seed_index
        self.num_edges, self.num_candidates = num_edges, num_candidates
        self.seeds = {s: seed_of(base_seed, seed_index, s) for s in STREAMS}
        self.a_star = true_architecture(num_edges, num_candidates, self.seeds['architecture'])
        self.teacher = build_teacher(num_edges, num_candidates, self.seeds['weights'], self.seeds['architecture'])
        self.x_test = sample_inputs(test_size, torch.Generator().manual_seed(self.seeds['test']))
        with torch.no_grad():
            self.y_test = self.teacher(self.x_test).flatten().double()
        # Per-edge, per-candidate contributions on the test batch: the student's output for any
        # architecture a is mean_i table[i, a_i] (weights are fixed), so the test loss is exact and cheap.
        space = self.student()
        with torch.no_grad():
            self.table = torch.stack([
                torch.stack([space.heads[i](space.edges[i][j](self.x_test)).flatten() for j in range(num_candidates)])
                for i in range(num_edges)]).double()                 # (edges, candidates, test_size)
        self._check_teacher(space)

    def student(self) -> ToyDAG:
        """A fresh student space (one per search: NNI mutates the space into the supernet in place)."""
        return ToyDAG(self.num_edges, self.num_candidates, self.seeds['weights'])

    def loaders(self, iterations: int, epochs: int, batch_size: int = 100):
        """D_x and D_θ loaders: ``epochs`` epochs of ``iterations // epochs`` fresh batches."""
        common = dict(num_edges=self.num_edges, num_candidates=self.num_candidates,
                      weight_seed=self.seeds['weights'], arch_seed=self.seeds['architecture'],
                      length=iterations // epochs, batch_size=batch_size)
        train = DataLoader(TeacherBatches(data_seed=self.seeds['train'], **common), batch_size=None)
        val = DataLoader(TeacherBatches(data_seed=self.seeds['val'], **common), batch_size=None)
        return train, val

    def test_loss(self, arch: dict[str, Any]) -> float:
        """Squared error of the student with architecture ``arch`` against the teacher on the test batch."""
        index = torch.tensor([int(arch[f'edge{i}']) for i in range(self.num_edges)])
        prediction = self.table[torch.arange(self.num_edges), index].mean(0)
        return float(((prediction - self.y_test) ** 2).mean())

    def correct_edges(self, arch: dict[str, Any]) -> int:
        return sum(int(arch[k]) == v for k, v in self.a_star.items())

    def _check_teacher(self, space: ToyDAG) -> None:
        """The teacher is the frozen student at a*, weight for weight; the loss table reproduces it."""
        for i, j in enumerate(self.a_star.values()):
            for p, q in zip(self.teacher.edges[i].parameters(), space.edges[i][j].parameters()):
                assert torch.equal(p, q), 'teacher and student weights differ'
        for p, q in zip(self.teacher.heads.parameters(), space.heads.parameters()):
            assert torch.equal(p, q), 'teacher and student head weights differ'
        assert self.test_loss(self.a_star) < 1e-12, self.test_loss(self.a_star)
        other = {k: (v + 1) % self.num_candidates for k, v in self.a_star.items()}
        with torch.no_grad():
            direct = space.freeze(other)(self.x_test).flatten().double()
        assert abs(float(((direct - self.y_test) ** 2).mean()) - self.test_loss(other)) < 1e-9


# ---------------------------------------------------------------------------- the harness
def argmax_architecture(pl_module) -> dict[str, int]:
    """argmax_j μ_i^j(θ_i) for every edge (advantagenas §5.1): the strategy module's ``export()``
    (argmax of μ(θ) for AdvantageNAS/REINFORCE, of α for DARTS/GumbelDARTS), except for NNI's
    Proxyless: ``ProxylessMixedLayer.export`` is its ``resample`` — it SAMPLES a path from softmax(α)
    and draws from the global RNG mid-search — so there the argmax of α is taken here."""
    proxyless = [m for m in pl_module.supernet_modules() if isinstance(m, ProxylessMixedLayer)]
    if proxyless:
        arch = {m.label: m.names[int(torch.argmax(m._arch_alpha.detach()))] for m in proxyless}
    else:
        arch = pl_module.export()
    return {k: int(v) for k, v in arch.items()}


class ArgmaxTestLoss(Callback):
    """Every ``interval`` iterations (and at 0), the test loss of the argmax architecture."""

    def __init__(self, problem: Problem, interval: int, steps_per_epoch: int):
        self.problem, self.interval, self.steps_per_epoch = problem, interval, steps_per_epoch
        self.iterations: list[int] = []
        self.test_loss: list[float] = []
        self.correct: list[int] = []
        self.train_seconds = math.nan
        self._start = 0.0
        self._eval_seconds = 0.0

    def _record(self, iteration: int, pl_module) -> None:
        t = time.perf_counter()
        arch = argmax_architecture(pl_module)
        self.iterations.append(iteration)
        self.test_loss.append(self.problem.test_loss(arch))
        self.correct.append(self.problem.correct_edges(arch))
        self._eval_seconds += time.perf_counter() - t

    def on_train_start(self, trainer, pl_module):
        self._record(0, pl_module)
        self._start = time.perf_counter()
        self._eval_seconds = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        iteration = trainer.current_epoch * self.steps_per_epoch + batch_idx + 1
        if iteration % self.interval == 0:
            self._record(iteration, pl_module)

    def on_train_end(self, trainer, pl_module):
        # time of the training steps only (the periodic export/test-loss evaluations excluded)
        self.train_seconds = time.perf_counter() - self._start - self._eval_seconds


def make_strategy(method: str, seed: int, lr: float = 1e-3, gamma: float = 0.05):
    """The strategy of ``method`` with the §5.1 settings (see the module docstring)."""
    if method in ('AdvantageNAS', 'Reinforce'):
        cls = nni_asng.AdvantageNAS if method == 'AdvantageNAS' else nni_asng.Reinforce
        return cls(learning_rate=lr, betas=(0.9, 0.999), weight_decay=0.0, arch_grad_clip=None,
                   cosine_schedule=False, gamma=gamma, seed=seed, log_every_n_steps=10 ** 9)
    from nni.nas import strategy as nni_strategies
    if method in ('DARTS', 'Proxyless', 'GumbelDARTS'):
        return getattr(nni_strategies, method)(arc_learning_rate=lr, log_prob_every_n_step=10 ** 9)
    raise ValueError(f'unknown method {method!r}; choose from {METHODS}')


def run_search(method: str, seed_index: int, *, iterations: int, eval_interval: int, num_edges: int = 10,
               num_candidates: int = 10, base_seed: int = 0, test_size: int = 1000, epochs: int = 10,
               batch_size: int = 100, lr: float = 1e-3, problem: Problem | None = None,
               strategy=None) -> dict:
    """One search of ``method`` on seed index ``seed_index``; returns its record (never raises for
    a failing strategy: the error is recorded). ``strategy`` overrides the one built from ``method``."""
    if iterations % epochs:
        raise ValueError(f'iterations ({iterations}) must be a multiple of epochs ({epochs})')
    problem = problem or Problem(seed_index, num_edges=num_edges, num_candidates=num_candidates,
                                 base_seed=base_seed, test_size=test_size)
    record: dict[str, Any] = {'method': method, 'seed_index': seed_index, 'a_star': problem.a_star,
                              'iterations': [], 'test_loss': [], 'correct_edges': [], 'error': None}
    start = time.perf_counter()
    torch.manual_seed(problem.seeds['strategy'])                   # NNI strategies' α init / sampling
    space = problem.student()
    before = [(p, p.detach().clone()) for p in space.parameters()]
    steps_per_epoch = iterations // epochs
    callback = ArgmaxTestLoss(problem, eval_interval, steps_per_epoch)
    train, val = problem.loaders(iterations, epochs, batch_size)
    strategy = strategy if strategy is not None else make_strategy(method, problem.seeds['strategy'], lr)
    with tempfile.TemporaryDirectory(prefix='advantage_toy_') as tmp:
        evaluator = Regression(learning_rate=0.0, optimizer=torch.optim.SGD, train_dataloaders=train,
                               val_dataloaders=val, max_epochs=epochs, callbacks=[callback],
                               accelerator='cpu', devices=1, enable_progress_bar=False, logger=False,
                               enable_checkpointing=False, enable_model_summary=False,
                               num_sanity_val_steps=0, default_root_dir=tmp)
        exp = NasExperiment(space, evaluator, strategy)
        exp.config.experiment_working_directory = str(Path(tmp) / 'nni-experiments')
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', UserWarning)           # Lightning's loader/logging advice
                exp.run()
            exported = exp.export_top_models(formatter='dict')[0]
            record['exported'] = {k: int(v) for k, v in exported.items()}
            record['exported_test_loss'] = problem.test_loss(exported)       # what the strategy itself exports
        except Exception as exc:                                       # report NNI failures, don't hide them
            record['error'] = f'{type(exc).__name__}: {exc}'
            record['traceback'] = traceback.format_exc(limit=-6)
        finally:
            try:
                exp.stop()
            except Exception:                                          # pragma: no cover
                pass
    record['wall_s'] = time.perf_counter() - start
    record['iterations'] = callback.iterations
    record['test_loss'] = callback.test_loss
    record['correct_edges'] = callback.correct
    record['completed_iterations'] = callback.iterations[-1] if callback.iterations else 0
    record['train_s'] = callback.train_seconds
    done = record['completed_iterations']
    record['ms_per_iteration'] = 1e3 * callback.train_seconds / done if done and record['error'] is None else None
    # w* must not have moved: every parameter of the student (now the supernet, mutated in place)
    # is bit-identical to its copy, and is still a parameter of the supernet.
    supernet_params = {id(p) for p in space.parameters()}
    record['weights_unchanged'] = all(torch.equal(p, q) for p, q in before)
    record['weights_in_supernet'] = all(id(p) in supernet_params for p, _ in before)
    return record


# ---------------------------------------------------------------------------- aggregation
def summarize(records: list[dict], methods: list[str]) -> list[dict]:
    """Per method and evaluated iteration: median and 25/75th percentiles of the test loss over seeds."""
    rows = []
    for m in methods:
        runs = [r for r in records if r['method'] == m and r['error'] is None]
        if not runs:
            continue
        its = runs[0]['iterations']
        for k, it in enumerate(its):
            losses = np.array([r['test_loss'][k] for r in runs if len(r['test_loss']) > k])
            correct = np.array([r['correct_edges'][k] for r in runs if len(r['correct_edges']) > k])
            q25, med, q75 = np.percentile(losses, [25, 50, 75])
            rows.append({'method': m, 'iteration': it, 'seeds': int(losses.size), 'median': float(med),
                         'q25': float(q25), 'q75': float(q75), 'mean': float(losses.mean()),
                         'solved_fraction': float(np.mean(losses < 1e-12)),
                         'median_correct_edges': float(np.median(correct))})
    return rows


def selected_iterations(rows: list[dict], limit: int = 10) -> list[int]:
    """Table columns: 0, the evaluated iterations in a 1-2-3-5 series, and each method's last one."""
    evaluated = sorted({r['iteration'] for r in rows})
    last = {max(r['iteration'] for r in rows if r['method'] == m) for m in {r['method'] for r in rows}}
    nice = {0} | {m * 10 ** e for e in range(7) for m in (1, 2, 3, 5)}
    chosen = sorted((set(evaluated) & nice) | last)
    while len(chosen) > limit:                         # thin the series, keep 0 and the ends
        keep = {0} | last
        droppable = [i for i in chosen if i not in keep]
        if not droppable:
            break
        chosen.remove(droppable[len(droppable) // 2])
    return chosen


def format_table(rows: list[dict], methods: list[str], timing: dict[str, float | None]) -> str:
    """Iterations × methods: median [25th, 75th percentile] of the test loss, then edges = a* / solved."""
    if not rows:
        return '(no successful run)'
    methods = [m for m in methods if any(r['method'] == m for r in rows)]
    its = selected_iterations(rows)
    by = {(r['method'], r['iteration']): r for r in rows}
    seeds = {m: max(r['seeds'] for r in rows if r['method'] == m) for m in methods}
    w = 27
    head = f"{'iteration':>9} | " + ' '.join(f'{m:>{w}}' for m in methods)
    rule = '-' * len(head)

    def block(title, cell):
        lines = [title, head, rule]
        for i in its:
            lines.append(f'{i:>9} | ' + ' '.join((cell(by[(m, i)]) if (m, i) in by else '—').rjust(w)
                                                 for m in methods))
        return lines

    lines = block(f'test loss of the argmax architecture vs the teacher: median [25th, 75th percentile] over '
                  f'{", ".join(f"{m} {n}" for m, n in seeds.items())} seeds',
                  lambda r: f"{r['median']:.2e} [{r['q25']:.1e}, {r['q75']:.1e}]")
    lines.append('')
    lines += block('median number of edges whose argmax equals a* (of |I|) / fraction of seeds with test loss 0',
                   lambda r: f"{r['median_correct_edges']:4.1f} / {r['solved_fraction']:.2f}")
    lines.append('')
    lines.append('ms per iteration (training steps only, this run, shared CPU): ' + ', '.join(
        f"{m} {'—' if timing.get(m) is None else format(timing[m], '.1f')}" for m in methods))
    return '\n'.join(lines)


def plot(rows: list[dict], methods: list[str], path: Path, title: str = '') -> None:
    """Figure 1 style: median line and 25th–75th percentile band per method (linear and log x), and
    the median number of edges whose argmax is a*."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    colors = {'AdvantageNAS': 'tab:red', 'Reinforce': 'tab:blue', 'DARTS': 'tab:green',
              'Proxyless': 'tab:purple', 'GumbelDARTS': 'tab:orange'}
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    for m in methods:
        sel = sorted((r for r in rows if r['method'] == m), key=lambda r: r['iteration'])
        if not sel:
            continue
        x = np.array([r['iteration'] for r in sel])
        for ax in axes[:2]:
            ax.plot(x, [r['median'] for r in sel], color=colors.get(m), label=m, lw=1.6)
            ax.fill_between(x, [r['q25'] for r in sel], [r['q75'] for r in sel], color=colors.get(m), alpha=0.2,
                            lw=0)
        axes[2].plot(x, [r['median_correct_edges'] for r in sel], color=colors.get(m), label=m, lw=1.6)
    axes[0].set_title('test loss of the argmax architecture\nmedian (line), 25th–75th percentile (band)')
    axes[1].set_title('same, log-scaled iterations')
    axes[2].set_title('edges whose argmax is the teacher\'s choice (median)')
    axes[0].set_ylabel('test loss (squared error vs teacher)')
    axes[2].set_ylabel('edges = a*')
    for ax in axes:
        ax.set_xlabel('iterations (θ updates)')
        ax.grid(True, which='both', alpha=0.3)
    axes[0].set_xlim(left=0)
    for ax in axes[1:]:
        ax.set_xscale('symlog', linthresh=max(1, min(r['iteration'] for r in rows if r['iteration'] > 0)))
        ax.set_xlim(left=0)
    for ax in axes[:2]:
        ax.set_ylim(bottom=0)
    axes[0].legend()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------- driver
def _quiet_libraries() -> None:
    for name in ('nni', 'pytorch_lightning', 'lightning', 'lightning.pytorch', 'lightning_fabric'):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings('ignore', category=UserWarning)
    warnings.filterwarnings('ignore', message='.*not a nn.Module.*')


def _worker(task: dict) -> dict:
    torch.set_num_threads(1)
    _quiet_libraries()
    return run_search(**task)


def _run_all(tasks: list[dict], args, out: Path, start: float) -> list[dict]:
    records = []
    pool = mp.get_context('spawn').Pool(args.processes) if args.processes > 1 else None
    try:
        results = pool.imap_unordered(_worker, tasks, chunksize=1) if pool else map(_worker, tasks)
        with open(out / 'runs.jsonl', 'w') as stream:
            for rec in results:
                records.append(rec)
                stream.write(json.dumps(rec) + '\n')
                stream.flush()
                elapsed = time.perf_counter() - start
                eta = elapsed / len(records) * (len(tasks) - len(records))
                status = (f"FAILED after {rec['completed_iterations']} it: {rec['error']}" if rec['error'] else
                          f"final test loss {rec['test_loss'][-1]:.3e}, {rec['correct_edges'][-1]}/"
                          f"{args.edges} edges = a*, {rec['ms_per_iteration']:.2f} ms/it")
                print(f"[{elapsed:8.1f}s] {rec['method']:>12} seed {rec['seed_index']:>2} ({len(records)}/"
                      f"{len(tasks)}, ETA {eta / 60:.1f} min, load {os.getloadavg()[0]:.1f}) {status}; "
                      f"w* unchanged: {rec['weights_unchanged']}", flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return records


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--iterations', type=int, default=None,
                   help=f"θ updates per search (default {FULL['iterations']}; --quick {QUICK['iterations']})")
    p.add_argument('--nni-iterations', type=int, default=None,
                   help=f"θ updates per search of NNI's DARTS/Proxyless/GumbelDARTS, which cost 2.5-5x more per "
                        f"iteration and converge (or stall) early (default {FULL['nni_iterations']})")
    p.add_argument('--seeds', type=int, default=None,
                   help=f"seed indices (w*, a*, data, sampler) per method (default {FULL['seeds']})")
    p.add_argument('--eval-interval', type=int, default=None,
                   help=f"iterations between argmax test-loss evaluations (default {FULL['eval_interval']})")
    p.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS))
    p.add_argument('--edges', type=int, default=10, help='|I|, edges (LayerChoices)')
    p.add_argument('--candidates', type=int, default=10, help='|J|, candidate convolutions per edge')
    p.add_argument('--test-size', type=int, default=1000, help='inputs in the fixed test batch')
    p.add_argument('--batch-size', type=int, default=100, help='inputs per fresh minibatch')
    p.add_argument('--lr', type=float, default=1e-3, help='θ learning rate (Adam) of every method')
    p.add_argument('--epochs', type=int, default=10,
                   help='epochs the iterations are split into (only GumbelDARTS\'s temperature depends on it)')
    p.add_argument('--base-seed', type=int, default=0, help='per-run seeds are derived from it')
    p.add_argument('--processes', type=int, default=1, help='worker processes (1: run in this process)')
    p.add_argument('--out', type=Path, default=DEFAULT_OUT, help='output folder')
    p.add_argument('--quick', action='store_true',
                   help=f'small run for a smoke test: {QUICK} unless given explicitly')
    p.add_argument('--no-plot', action='store_true', help='skip the PNG')
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in ('iterations', 'nni_iterations'):
        if getattr(args, name) % args.epochs:
            p.error(f'--{name.replace("_", "-")} ({getattr(args, name)}) must be a multiple of --epochs ({args.epochs})')
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    _quiet_libraries()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    print(f'command: {command}', flush=True)
    print(f'python {platform.python_version()}, torch {torch.__version__}, nni {nni.__version__}, '
          f'host {platform.node()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}, shared), '
          f'processes {args.processes}', flush=True)
    print(f"settings: |I|={args.edges} |J|={args.candidates} iterations={args.iterations} (NNI strategies "
          f"{args.nni_iterations}) seeds={args.seeds} "
          f"eval every {args.eval_interval} it, batch {args.batch_size}, test {args.test_size}, lr {args.lr}, "
          f"epochs {args.epochs}, methods {args.methods}", flush=True)
    start = time.perf_counter()
    tasks = [dict(method=m, seed_index=s, eval_interval=args.eval_interval,
                  iterations=args.nni_iterations if m in NNI_METHODS else args.iterations,
                  num_edges=args.edges, num_candidates=args.candidates, base_seed=args.base_seed,
                  test_size=args.test_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
             for s in range(args.seeds) for m in args.methods]
    records = _run_all(tasks, args, out, start)
    wall = time.perf_counter() - start
    rows = summarize(records, args.methods)
    timing = {}
    for m in args.methods:
        ok = [r for r in records if r['method'] == m and r['error'] is None]
        timing[m] = (1e3 * sum(r['train_s'] for r in ok) / sum(r['completed_iterations'] for r in ok)) if ok else None
    failures = {}
    for r in records:
        if r['error']:
            failures.setdefault(r['method'], []).append({'seed_index': r['seed_index'], 'error': r['error'],
                                                         'traceback': r.get('traceback', '')})
    exported = {}
    for m in args.methods:
        values = [r['exported_test_loss'] for r in records if r['method'] == m and r['error'] is None]
        if values:
            exported[m] = {'median': float(np.median(values)), 'q25': float(np.percentile(values, 25)),
                           'q75': float(np.percentile(values, 75))}
    table = format_table(rows, args.methods, timing)
    table += '\n\ntest loss of what the strategy itself exports at the end (export_top_models), median [25th, 75th]: ' \
        + ', '.join(f"{m} {v['median']:.2e} [{v['q25']:.1e}, {v['q75']:.1e}]" for m, v in exported.items())
    print('\n' + table, flush=True)
    for m, errors in failures.items():
        print(f'\n{m} FAILED in {len(errors)} run(s): {errors[0]["error"]}\n{errors[0]["traceback"]}', flush=True)
    changed = [(r['method'], r['seed_index']) for r in records
               if not (r['weights_unchanged'] and r['weights_in_supernet'])]
    print(f'\nstudent weights bit-identical before/after every search: {not changed}'
          + (f' (changed or replaced: {changed})' if changed else ''), flush=True)
    print(f'total wall time {wall:.1f} s (load average at the end {os.getloadavg()[0]:.1f})', flush=True)

    with open(out / 'summary.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ['method'])
        writer.writeheader()
        writer.writerows(rows)
    (out / 'summary.json').write_text(json.dumps({
        'command': command, 'settings': {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        'wall_s': wall, 'ms_per_iteration': timing, 'failures': failures, 'exported_test_loss': exported,
        'weights_unchanged': not changed, 'summary': rows,
        'notes': {'AdvantageNAS/Reinforce': 'Adam lr=%g, betas=(0.9, 0.999), weight_decay=0, no clipping, '
                                            'constant lr, gamma=0.05' % args.lr,
                  'DARTS/Proxyless/GumbelDARTS': 'NNI 3.0, arc_learning_rate=%g; Adam betas=(0.5, 0.999) and '
                                                 'weight_decay=1e-3 fixed inside NNI; GumbelDARTS temperature '
                                                 '1.0 -> 0.33 linear over epochs' % args.lr,
                  'weights': 'evaluator optimiser SGD lr=0 (w* fixed); checked bit-identical after each search'},
    }, indent=1))
    (out / 'table.txt').write_text(table + '\n')
    if not args.no_plot and rows:
        title = (f'advantagenas §5.1 toy regression: |I|={args.edges}, |J|={args.candidates}, '
                 f'{args.seeds} seeds, batch {args.batch_size}, θ lr {args.lr:g}')
        plot(rows, args.methods, out / 'advantage_toy.png', title)
        print(f'plot: {out / "advantage_toy.png"}', flush=True)
    return records


if __name__ == '__main__':
    main()

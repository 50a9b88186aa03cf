#!/usr/bin/env python
"""Multi-complexity search on real Fashion-MNIST over the ENAS cell space: Algorithm 1 vs Method 2.

Noda, Saito, Shirakawa, "Efficient Search of Multiple Neural Architectures with Different
Complexities via Importance Sampling" (multi-complexity in README's References):

* **Proposed (Algorithm 1, ``importance_sampling``)**: after T_W epochs of supernet training with
  uniformly sampled architectures, ONE θ stage of T_θ epochs updates all N distributions
  (one per ε) from λ samples of their mixture, reweighted by likelihood ratios (Eq. 9–10);
* **Method 2 (Algorithm 3, ``separate``)**: the same weight stage, then one θ stage of T_θ epochs
  per ε, each distribution updated from its own samples: N·T_θ epochs.

Same weights for both (how the comparison is made exact)
--------------------------------------------------------
The supernet weights are trained ONCE (stage "weights": T_W epochs, uniform sampling, λ
architectures per step, SGD momentum 0.9, weight decay 3e-4, cosine 0.025 → 0 over these T_W epochs,
as in §4.1) and their ``state_dict`` is saved (``supernet_weight_stage.pt``). Each method's θ stage is
then its own ``NasExperiment`` run of ``nni_asng.MultiComplexity(method=...)`` on a fresh copy of the
space whose supernet loads that ``state_dict`` when the fit starts, with the same seed (same D_θ
batch order, same sampler seed). The θ stage never updates weights, so both methods search on
exactly the same supernet; a fingerprint of the weights at the start of each θ stage is recorded.

Why not simply run each method end to end with ``weight_epochs=T_W``: the evaluator's cosine schedule
spans ALL epochs of a run (T_W + T_θ vs T_W + N·T_θ), so the two weight stages would see different
learning rates (and never anneal to 0), and the weights would be trained twice.

How a single stage is run: ``MultiComplexity`` requires ``weight_epochs >= 1`` and checks that the
evaluator trains for its ``required_epochs``. :class:`StagedMultiComplexity` (below) builds the
library's own searcher and then sets its ``theta_epochs`` (weight stage) or ``weight_epochs``
(θ stages) to 0, so ``required_epochs`` and the per-epoch phases are exactly one stage; everything
else (sampling, Eq. 10 updates, Method 2's one-distribution-per-T_θ schedule) is the library's code.
The complexity table (``complexity_method='regression'``: the ENAS cell is not additive) is measured
once and handed to the three runs, instead of being re-measured in each.

Evaluation of the N architectures of each method
------------------------------------------------
* exact parameter count of the frozen (search-size) fixed network vs the complexity table's prediction;
* held-out validation (a stratified subset of the Fashion-MNIST TEST split, used by no search stage):
  - inherited: the fixed network with the supernet's weights (``space.freeze``), BatchNorm statistics
    recalibrated on D_x batches (the supernet's running averages mix all paths), evaluated in eval mode;
  - retrained: the same architecture with fresh weights (same width/depth as in the search, affine BN),
    trained from scratch with one recipe for all (SGD, cosine, same data order and seed) by nni-asng's
    ``fit_fixed_network``, BatchNorm statistics recalibrated on the same D_x batches, then evaluated.
  Identical architectures are evaluated once and shared.
* wall and CPU time of every stage (the machine is shared: CPU seconds are the cost that does not
  depend on the other users' load).

Settings that differ from the paper (CPU budget; all are flags): the search uses 6,000 training images
and T_W = 6, T_θ = 4 epochs instead of 50,000 and 200/200, so the θ stage makes 750 updates per distribution
instead of ~78,000; the weight stage starts at learning rate 0.05 (paper 0.025), the θ mini-batch is 16
(paper 64). η = 1/Σ_d K_d and ε ∈ {0, 0.1, 0.3, 0.5}, λ = 2 are the paper's.

Outputs (``--out``): ``results.json`` (everything, incl. command line and machine), ``results.csv``
(the table), ``loss_vs_params.png``, ``run.log`` when started as documented, and
``supernet_weight_stage.pt``.

Examples::

    .venv/bin/python experiments/multi_complexity_fmnist.py --quick
    nohup .venv/bin/python experiments/multi_complexity_fmnist.py \\
        > experiments/results/multi_complexity/run.log 2>&1 &
"""
from __future__ import annotations

import os

# The machine is shared and oversubscribed: intra-op threads spin and slow everything down.
for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ.setdefault(_var, '1')

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

METHODS = ('importance_sampling', 'separate')
METHOD_NAMES = {'importance_sampling': 'Proposed (IS, Alg. 1)', 'separate': 'Method 2 (Separate)'}
DEFAULT_OUT = REPO / 'experiments' / 'results' / 'multi_complexity'


# ---------------------------------------------------------------------------------------------- arguments
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--quick', action='store_true', help='smoke run: tiny data and epochs (minutes)')
    p.add_argument('--out', type=Path, default=None, help=f'output folder (default {DEFAULT_OUT}, --quick: …/quick)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1, help='torch intra-op threads')
    # space
    p.add_argument('--channels', type=int, default=8, help='C of the ENAS cell space')
    p.add_argument('--cells', type=int, default=1, help='normal cells per stage')
    p.add_argument('--nodes', type=int, default=5, help='nodes per cell (B)')
    # search
    p.add_argument('--limit', type=int, default=6000, help='training images for the search (halved into D_x, D_θ)')
    p.add_argument('--batch-size', type=int, default=64, help='D_x mini-batch of the weight stage')
    p.add_argument('--theta-batch-size', type=int, default=16,
                   help='D_θ mini-batch of the θ stages (small: more θ updates for the same cost)')
    p.add_argument('--weight-epochs', type=int, default=6, help='T_W')
    p.add_argument('--theta-epochs', type=int, default=4, help='T_θ (Method 2 runs it once per ε)')
    p.add_argument('--epsilons', type=float, nargs='+', default=[0.0, 0.1, 0.3, 0.5])
    p.add_argument('--lam', type=int, default=2, help='λ, architectures per step')
    p.add_argument('--eta', type=float, default=None, help='θ learning rate η (default 1/Σ_d K_d, the paper)')
    p.add_argument('--weight-lr', type=float, default=0.05,
                   help='initial SGD learning rate of the weight stage (paper: 0.025 over 200 epochs)')
    p.add_argument('--complexity-samples', type=int, default=None,
                   help='random architectures of the regression complexity table (default 3·Σ(K_d−1)+10)')
    p.add_argument('--additivity-samples', type=int, default=50,
                   help='random architectures on which the table is compared with exact counts')
    # evaluation
    p.add_argument('--val-size', type=int, default=2000, help='held-out images (stratified, from the test split)')
    p.add_argument('--eval-batch-size', type=int, default=250)
    p.add_argument('--recalibrate-batches', type=int, default=10, help='D_x batches for BN recalibration')
    p.add_argument('--retrain-epochs', type=int, default=2)
    p.add_argument('--retrain-limit', type=int, default=4000, help='training images of the retraining')
    p.add_argument('--retrain-batch-size', type=int, default=64)
    p.add_argument('--retrain-lr', type=float, default=0.1)
    p.add_argument('--no-retrain', action='store_true', help='skip the retraining from scratch')
    p.add_argument('--no-save-supernet', action='store_true', help='do not write supernet_weight_stage.pt')
    p.add_argument('--keep-work', action='store_true', help='keep the NNI/Lightning working folder')
    args = p.parse_args(argv)
    if args.quick:
        # Only what the user did not set explicitly is shrunk.
        given = {a.split('=')[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith('--')}
        quick = dict(limit=512, weight_epochs=1, theta_epochs=1, val_size=500, retrain_epochs=1, retrain_limit=512,
                     complexity_samples=150, additivity_samples=10, recalibrate_batches=4)
        for key, value in quick.items():
            if '--' + key.replace('_', '-') not in given:
                setattr(args, key, value)
    if args.out is None:
        args.out = DEFAULT_OUT / 'quick' if args.quick else DEFAULT_OUT
    if len(args.epsilons) < 2:
        p.error('give at least two ε')
    for name in ('weight_epochs', 'theta_epochs', 'limit', 'val_size', 'threads'):
        if getattr(args, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be >= 1')
    return args


# ---------------------------------------------------------------------------------------------- helpers
def machine_info() -> dict[str, Any]:
    from nni_asng.app import versions
    info = {'platform': platform.platform(), 'machine': platform.machine(), 'processor': platform.processor(),
            'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(), 'versions': versions(),
            'gpu': torch.cuda.is_available()}
    with contextlib.suppress(OSError):
        info['loadavg_start'] = list(os.getloadavg())
    with contextlib.suppress(OSError):
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                info['cpu_model'] = line.split(':', 1)[1].strip()
                break
    return info


def arch_key(arch: dict[str, Any]) -> str:
    return json.dumps(arch, sort_keys=True)


def fingerprint(state: dict[str, torch.Tensor], trainable_only_keys: Sequence[str] | None = None) -> str:
    """sha1 of the tensors (optionally only ``trainable_only_keys``), to show two runs start alike."""
    h = hashlib.sha1()
    for key in sorted(state):
        if trainable_only_keys is not None and key not in trainable_only_keys:
            continue
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def quiet():
    """Lightning's and NNI's advice about workers, loggers and traced modules, not our business here:
    :func:`nni_asng.app.quiet_warnings`, also muting the scheduler-order and unused-GPU advice and Lightning's
    other UserWarnings."""
    from nni_asng.app import quiet_warnings
    return quiet_warnings(r'.*lr_scheduler.step\(\).*', '.*GPU available but not used.*',
                          modules=('pytorch_lightning', 'lightning_fabric'))


def make_space(args) -> nn.Module:
    from search_spaces.enas_cell import ENASCellSpace
    return ENASCellSpace(channels=args.channels, cells_per_stage=args.cells, num_nodes=args.nodes, in_channels=1,
                         num_classes=10)


# ---------------------------------------------------------------------------------------------- one stage
def staged_strategy_class():
    import nni_asng
    import nni_asng.oneshot.multi_complexity as mc_module

    class StagedMultiComplexity(nni_asng.MultiComplexity):
        """``MultiComplexity`` running one stage only (see the module docstring), with a given table.

        ``stage='weights'``: the searcher's θ epochs are set to 0 (T_W epochs of uniform sampling);
        ``stage='theta'``: its weight epochs are set to 0 (T_θ, or N·T_θ for ``separate``, θ-only epochs).
        """

        def __init__(self, *, stage: str, table, **kwargs):
            super().__init__(**kwargs)
            if stage not in ('weights', 'theta'):
                raise ValueError(f'stage must be "weights" or "theta", got {stage!r}')
            self.stage = stage
            self._table = table

        def build_searcher(self, encoding, model=None):
            original = mc_module.measure_complexity
            mc_module.measure_complexity = lambda *a, **k: self._table      # measured once, by main()
            try:
                searcher = super().build_searcher(encoding, model)
            finally:
                mc_module.measure_complexity = original
            weight, theta = searcher.stage_settings          # (T_W, T_θ) as given; start() resolves them
            searcher.stage_settings = (weight, 0) if self.stage == 'weights' else (0, theta)
            searcher.weight_epochs, searcher.theta_epochs = searcher._stages(None)
            return searcher

    return StagedMultiComplexity


def stage_callbacks():
    import pytorch_lightning as pl

    class StageTimer(pl.Callback):
        """Wall and CPU seconds of the fit and of each epoch (model building and NNI set-up excluded)."""

        def __init__(self):
            self.epochs: list[dict[str, float]] = []
            self.wall = self.cpu = math.nan

        def on_train_start(self, trainer, pl_module):
            self._w0, self._c0 = time.perf_counter(), time.process_time()

        def on_train_epoch_start(self, trainer, pl_module):
            self._ew, self._ec = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs.append({'epoch': int(trainer.current_epoch), 'wall_s': time.perf_counter() - self._ew,
                                'cpu_s': time.process_time() - self._ec})

        def on_train_end(self, trainer, pl_module):
            self.wall, self.cpu = time.perf_counter() - self._w0, time.process_time() - self._c0

    class LoadSupernet(pl.Callback):
        """Load the weight stage's supernet into this run's (identically built) supernet at fit start."""

        def __init__(self, state: dict[str, torch.Tensor]):
            self.state = state
            self.fingerprint: str | None = None

        def on_fit_start(self, trainer, pl_module):
            supernet = pl_module.model
            supernet.load_state_dict(self.state, strict=True)
            self.fingerprint = fingerprint(supernet.state_dict())

    return StageTimer, LoadSupernet


def loader(dataset, batch_size: int, shuffle: bool = True):
    from nni.nas.evaluator.pytorch import DataLoader
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=0,
                      drop_last=shuffle and len(dataset) >= batch_size)


def run_stage(args, *, stage: str, method: str, table, d_x, d_theta, batch_size: int, epochs: int,
              work: Path, supernet_state: dict | None = None) -> dict[str, Any]:
    """One ``NasExperiment`` run; returns the space (its supernet), the strategy and timings."""
    import pytorch_lightning as pl
    from nni.nas.experiment import NasExperiment

    from nni_asng.evaluators.classification import classification_evaluator

    StageTimer, LoadSupernet = stage_callbacks()
    pl.seed_everything(args.seed, workers=True, verbose=False)
    with quiet():
        space = make_space(args)
    strategy = staged_strategy_class()(
        stage=stage, table=table, epsilons=list(args.epsilons), weight_epochs=args.weight_epochs if stage == 'weights'
        else 1, theta_epochs=args.theta_epochs, lam=args.lam, learning_rate=args.eta, complexity='params',
        complexity_method='regression', method=method, seed=args.seed, gradient_clip_val=5.0,
        log_every_n_steps=50)
    timer = StageTimer()
    callbacks: list = [timer]
    loading = None
    if supernet_state is not None:
        loading = LoadSupernet(supernet_state)
        callbacks.insert(0, loading)
    root = work / f'{stage}_{method}'
    root.mkdir(parents=True, exist_ok=True)
    recipe = dict(optimizer='sgd', learning_rate=args.weight_lr, momentum=0.9, weight_decay=3e-4,
                  lr_schedule='cosine')
    evaluator = classification_evaluator(loader(d_x, batch_size), loader(d_theta, batch_size), recipe=recipe,
                                         max_epochs=epochs, accelerator='cpu', devices=1, logger=False,
                                         enable_progress_bar=False, enable_checkpointing=False,
                                         enable_model_summary=False, num_sanity_val_steps=0,
                                         default_root_dir=str(root), callbacks=callbacks)
    exp = NasExperiment(space, evaluator, strategy)
    exp.config.experiment_working_directory = str(root / 'nni-experiments')
    started_w, started_c = time.perf_counter(), time.process_time()
    try:
        with quiet():
            exp.run()
    finally:
        with contextlib.suppress(Exception):
            exp.stop()
    return {'space': space, 'strategy': strategy, 'timer': timer,
            'run_wall_s': time.perf_counter() - started_w, 'run_cpu_s': time.process_time() - started_c,
            'start_fingerprint': None if loading is None else loading.fingerprint}


# ---------------------------------------------------------------------------------------------- evaluation
def batches_of(dataset, batch_size: int, count: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` ordered batches, as tensors (evaluated many times: built once)."""
    out = []
    dl = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for i, (x, y) in enumerate(dl):
        if count is not None and i >= count:
            break
        out.append((x, y))
    return out


@torch.no_grad()
def evaluate(net: nn.Module, batches) -> tuple[float, float]:
    net.eval()
    loss, correct, n = 0.0, 0, 0
    for x, y in batches:
        out = net(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        loss += float(F.cross_entropy(out, y, reduction='sum'))
        correct += int((out.argmax(1) == y).sum())
        n += len(y)
    return loss / n, correct / n


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches) -> None:
    """Replace the running BatchNorm statistics by the exact averages over ``batches`` (train mode)."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None                       # cumulative average
    net.train()
    for x, _ in batches:
        net(x)


def retrain_config(args):
    """nni-asng's ExperimentConfig of the retraining recipe; its ``retrain`` section is what
    :func:`nni_asng.app.fit_fixed_network` trains with: SGD (momentum 0.9, weight decay 3e-4) from
    ``--retrain-lr``, cosine to 0 per step, gradient clipping 5, ``--retrain-epochs`` epochs, the held-out
    set evaluated once, after the last epoch: the recipe of this script's former hand-written loop, unchanged."""
    import yaml
    from nni_asng.app import parse_config
    doc = {'name': 'multi-complexity-fmnist-retrain', 'seed': args.seed,
           'space': {'name': 'enas_cell', 'args': {'channels': args.channels, 'cells_per_stage': args.cells,
                                                   'num_nodes': args.nodes}},
           'strategy': {'name': 'asng'},                 # required by the schema; a retrain does not use it
           'data': {'dataset': 'fashion_mnist'},
           'retrain': {'epochs': args.retrain_epochs, 'batch_size': args.retrain_batch_size,
                       'limit': args.retrain_limit,
                       'optimizer': {'name': 'sgd', 'lr': args.retrain_lr, 'momentum': 0.9, 'nesterov': False,
                                     'weight_decay': 3e-4, 'schedule': 'cosine', 'min_lr': 0.0},
                       'gradient_clip': 5.0, 'aux_weight': 0.0, 'drop_path_prob': 0.0, 'label_smoothing': 0.0,
                       'eval_every_n_epochs': args.retrain_epochs, 'progress_bar': False, 'device': 'cpu'}}
    return parse_config(yaml.safe_dump(doc, sort_keys=False), source='multi_complexity_fmnist.py --retrain-*')


def retrain(arch: dict[str, Any], args, train_set, val_batches, recal_batches) -> dict[str, Any]:
    """Fresh weights, same recipe for every architecture (:func:`retrain_config`, trained by nni-asng's
    ``fit_fixed_network``), same data order (seeded); before the held-out evaluation the BatchNorm statistics
    are recalibrated on ``recal_batches`` (after so few steps the running averages lag far behind the
    weights: 10% vs 49% held-out accuracy on a probe). Losses and accuracies are the epoch records of
    nni-asng's ``EpochHistory``: ``train_loss`` of the last epoch, ``val_loss`` / ``val_acc`` held out.
    Same recipe and first epoch as the former hand-written loop (checked: identical weights); from the
    second epoch on, Lightning draws the shuffling order from the seeded generator differently, so results
    differ from that loop's by a different (equally seeded) data order."""
    import pytorch_lightning as pl

    from nni_asng.app import fit_fixed_network
    from nni_asng.evaluators.classification import EpochHistory
    from search_spaces.enas_cell import build_enas_network, count_parameters

    class RecalibrateBN(pl.Callback):
        def on_validation_start(self, trainer, pl_module):        # the model is in eval mode already
            recalibrate_bn(net, recal_batches)
            net.eval()

    cfg = retrain_config(args)
    torch.manual_seed(args.seed)
    net = build_enas_network(arch, channels=args.channels, cells_per_stage=args.cells, num_nodes=args.nodes,
                             in_channels=1, num_classes=10, affine=True, auxiliary=False, drop_path_prob=0.0)
    g = torch.Generator().manual_seed(args.seed)
    dl = torch.utils.data.DataLoader(train_set, batch_size=args.retrain_batch_size, shuffle=True, generator=g,
                                     drop_last=len(train_set) >= args.retrain_batch_size)
    held_out = torch.utils.data.DataLoader(                       # the same batches, as a loader for Lightning
        torch.utils.data.TensorDataset(torch.cat([x for x, _ in val_batches]), torch.cat([y for _, y in val_batches])),
        batch_size=len(val_batches[0][1]), shuffle=False)
    history = EpochHistory()
    w0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix='mc_retrain_') as root, quiet():
        fit_fixed_network(cfg, net, dl, {'val': held_out}, device='cpu', callbacks=[RecalibrateBN(), history],
                          default_root_dir=root, enable_checkpointing=False)
    last = history.epochs[-1]
    return {'val_loss': last['val_loss'], 'val_acc': last['val_acc'], 'train_loss': last['train_loss'],
            'params': count_parameters(net), 'wall_s': time.perf_counter() - w0, 'cpu_s': time.process_time() - c0}


def additivity(table, space, encoding, samples: int, seed: int) -> dict[str, Any]:
    """|exact − predicted| / exact over random architectures (uniform distribution)."""
    from search_spaces.enas_cell import count_parameters
    if samples < 1:
        return {}
    rows = encoding.distribution().sample(samples, np.random.default_rng(seed + 12345))
    exact, predicted = [], []
    for row in rows:
        arch = encoding.to_architecture(row)
        exact.append(count_parameters(space.freeze(arch)))
        predicted.append(table.predict(arch))
    exact, predicted = np.array(exact, float), np.array(predicted)
    rel = np.abs(exact - predicted) / exact
    return {'samples': samples, 'mean_rel_error': float(rel.mean()), 'max_rel_error': float(rel.max()),
            'median_rel_error': float(np.median(rel)), 'exact_min': int(exact.min()), 'exact_max': int(exact.max()),
            'exact_mean': float(exact.mean())}


# ---------------------------------------------------------------------------------------------- report
def fmt_int(v) -> str:
    return '—' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{int(round(v)):,}'


def fmt(v, spec: str) -> str:
    return '—' if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table_text(rows: list[dict[str, Any]]) -> str:
    head = (f"{'method':<22}{'ε':>6}{'params':>9}{'pred.':>9}{'err%':>7}{'E_θ[R]':>9}"
            f"{'inh.loss':>10}{'inh.acc%':>9}{'re.loss':>9}{'re.acc%':>9}  same arch as")
    lines = [head, '-' * len(head)]
    for r in rows:
        lines.append(f"{METHOD_NAMES[r['method']]:<22}{r['epsilon']:>6g}{fmt_int(r['params_exact']):>9}"
                     f"{fmt_int(r['params_predicted']):>9}{fmt(100 * r['prediction_rel_error'], '+.1f'):>7}"
                     f"{fmt_int(r['expected_params']):>9}"
                     f"{fmt(r['inherited_val_loss'], '.4f'):>10}{fmt(100 * r['inherited_val_acc'], '.2f'):>9}"
                     f"{fmt(r.get('retrained_val_loss'), '.4f'):>9}"
                     f"{fmt(100 * r['retrained_val_acc'] if r.get('retrained_val_acc') is not None else None, '.2f'):>9}"
                     f"  {r['same_as'] or ''}")
    return '\n'.join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """2x3 panels: held-out loss / error vs exact parameters (inherited and retrained), and per ε the
    expected size E_θ[R] and the exported architecture's exact size (the ordering claim)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    style = {'importance_sampling': dict(marker='o', color='tab:blue', linestyle='-'),
             'separate': dict(marker='s', color='tab:orange', linestyle='--')}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.4))
    panels = [(axes[0][0], 'inherited_val_loss', 'held-out loss, inherited supernet weights'),
              (axes[0][1], 'inherited_val_err', 'held-out error %, inherited supernet weights'),
              (axes[1][0], 'retrained_val_loss', 'held-out loss after retraining from scratch'),
              (axes[1][1], 'retrained_val_err', 'held-out error % after retraining from scratch')]
    for ax, key, label in panels:
        for method in METHODS:
            pts = sorted((r for r in rows if r['method'] == method), key=lambda r: r['params_exact'])
            xs = [r['params_exact'] for r in pts]
            if key.endswith('_err'):
                base = key[:-4] + '_acc'
                ys = [100 * (1 - r[base]) if r.get(base) is not None else math.nan for r in pts]
            else:
                ys = [r.get(key) if r.get(key) is not None else math.nan for r in pts]
            ax.plot(xs, ys, label=METHOD_NAMES[method], alpha=0.85, **style[method])
            for x, y, r in zip(xs, ys, pts):
                ax.annotate(f"ε={r['epsilon']:g}", (x, y), textcoords='offset points',
                            xytext=(4, 4 if method == 'importance_sampling' else -10), fontsize=7,
                            color=style[method]['color'])
        ax.set_xlabel('parameters (exact, fixed network)')
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    for ax, key, label in [(axes[0][2], 'expected_params', 'E_θ⁽ⁿ⁾[parameters] at the end of the θ stage'),
                           (axes[1][2], 'params_exact', 'exported architecture (argmax θ⁽ⁿ⁾): exact parameters')]:
        for method in METHODS:
            pts = sorted((r for r in rows if r['method'] == method), key=lambda r: r['epsilon'])
            ax.plot([r['epsilon'] for r in pts], [r[key] for r in pts], label=METHOD_NAMES[method], **style[method])
        ax.set_xlabel('ε')
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    keys = ['method', 'epsilon', 'params_exact', 'params_predicted', 'prediction_rel_error', 'expected_params',
            'inherited_val_loss', 'inherited_val_acc', 'retrained_val_loss', 'retrained_val_acc',
            'retrained_params', 'retrain_wall_s', 'same_as', 'architecture']
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction='ignore')
        w.writeheader()
        for r in rows:
            w.writerow({**r, 'architecture': arch_key(r['architecture'])})


def claims(rows: list[dict[str, Any]], timing: dict[str, Any], epsilons: Sequence[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        pts = sorted((r for r in rows if r['method'] == method), key=lambda r: r['epsilon'])
        sizes = [r['params_exact'] for r in pts]
        expected = [r['expected_params'] for r in pts]
        out[method] = {
            'params_by_increasing_epsilon': sizes,
            'sizes_non_increasing_in_epsilon': all(a >= b for a, b in zip(sizes, sizes[1:])),
            'sizes_strictly_decreasing_in_epsilon': all(a > b for a, b in zip(sizes, sizes[1:])),
            'distinct_architectures': len({arch_key(r['architecture']) for r in pts}),
            'expected_params_by_increasing_epsilon': expected,
            'expected_params_strictly_decreasing': all(a > b for a, b in zip(expected, expected[1:])),
            'mean_inherited_val_acc': float(np.mean([r['inherited_val_acc'] for r in pts])),
        }
        accs = [r.get('retrained_val_acc') for r in pts]
        if all(a is not None for a in accs):
            out[method]['mean_retrained_val_acc'] = float(np.mean(accs))
    is_t, sep_t = timing['theta_importance_sampling'], timing['theta_separate']
    out['theta_stage_wall_ratio_IS_over_separate'] = is_t['fit_wall_s'] / sep_t['fit_wall_s']
    out['theta_stage_cpu_ratio_IS_over_separate'] = is_t['fit_cpu_s'] / sep_t['fit_cpu_s']
    out['theta_evaluations_ratio_IS_over_separate'] = is_t['architecture_evaluations'] / \
        sep_t['architecture_evaluations']
    return out


# ---------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _main(args, argv)
    finally:
        torch.set_num_threads(threads)


def _main(args: argparse.Namespace, argv: Sequence[str] | None) -> dict[str, Any]:
    logging.getLogger('pytorch_lightning').setLevel(logging.ERROR)
    logging.getLogger('lightning').setLevel(logging.ERROR)
    logging.getLogger('nni').setLevel(logging.ERROR)
    from nni_asng.data import ImageClassificationDataset, search_datasets
    from nni_asng.oneshot.complexity import measure_complexity
    from nni_asng.oneshot.encoding import SearchSpaceEncoding
    from search_spaces.enas_cell import count_parameters

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix='mc_fmnist_'))
    t_start = time.perf_counter()
    command = shlex.join([sys.executable, *([sys.argv[0]] if argv is None else ['experiments/multi_complexity_fmnist.py']),
                          *(sys.argv[1:] if argv is None else list(argv))])
    info = machine_info()
    print(f'command: {command}', flush=True)
    print(f"machine: {info.get('cpu_model', info['processor'])}, {info['cpu_count']} cores, load "
          f"{info.get('loadavg_start')}, torch threads {info['torch_threads']}", flush=True)

    # ---------------------------------------------------------------- data
    d_x, d_theta = search_datasets('fashion_mnist', limit=args.limit, seed=args.seed)                 # augmented
    d_x_plain, _ = search_datasets('fashion_mnist', limit=args.limit, seed=args.seed, augment=False)  # BN stats
    held_out = ImageClassificationDataset('fashion_mnist', split='test', limit=args.val_size, seed=args.seed)
    retrain_set = ImageClassificationDataset('fashion_mnist', split='train', limit=args.retrain_limit,
                                             seed=args.seed + 1, augment=True)
    val_batches = batches_of(held_out, args.eval_batch_size)
    recal_batches = batches_of(d_x_plain, args.batch_size, args.recalibrate_batches)
    print(f'data: D_x {len(d_x)}, D_θ {len(d_theta)} (Fashion-MNIST train, stratified), held-out {len(held_out)} '
          f'(test split), retraining {len(retrain_set)}', flush=True)

    # ---------------------------------------------------------------- complexity table (once)
    w0 = time.perf_counter()
    with quiet():
        probe = make_space(args)
    encoding = SearchSpaceEncoding(probe)
    eta = args.eta if args.eta is not None else 1.0 / float(np.sum(encoding.num_categories))
    table = measure_complexity(probe, encoding, 'params', method='regression', samples=args.complexity_samples,
                               seed=args.seed)
    add = additivity(table, probe, encoding, args.additivity_samples, args.seed)
    table_s = time.perf_counter() - w0
    print(f'space: ENAS cell C={args.channels}, {args.cells} cell(s)/stage, B={args.nodes}: {len(encoding.labels)} '
          f'variables, Σ K_d = {int(np.sum(encoding.num_categories))}, η = {eta:.5f}; supernet '
          f'{count_parameters(probe):,} parameters', flush=True)
    if add:
        print(f"complexity table (regression, {table_s:.0f} s): base {table.base:,.0f}; additivity error over "
              f"{add['samples']} uniform architectures: mean {100 * add['mean_rel_error']:.2f}%, max "
              f"{100 * add['max_rel_error']:.2f}% (exact sizes {add['exact_min']:,}–{add['exact_max']:,})",
              flush=True)
    del probe

    # ---------------------------------------------------------------- weight stage (once)
    n_eps = len(args.epsilons)
    print(f'weight stage: T_W={args.weight_epochs} epoch(s), λ={args.lam}, batch {args.batch_size} ...', flush=True)
    ws = run_stage(args, stage='weights', method='importance_sampling', table=table, d_x=d_x, d_theta=d_theta,
                   batch_size=args.batch_size, epochs=args.weight_epochs, work=work)
    trained_space = ws['space']                              # the supernet, mutated in place by the strategy
    supernet_state = copy.deepcopy(trained_space.state_dict())
    if not args.no_save_supernet:
        torch.save(supernet_state, out / 'supernet_weight_stage.pt')
    weight_fp = fingerprint(supernet_state)
    timing: dict[str, Any] = {'weights': {'fit_wall_s': ws['timer'].wall, 'fit_cpu_s': ws['timer'].cpu,
                                          'run_wall_s': ws['run_wall_s'], 'run_cpu_s': ws['run_cpu_s'],
                                          'epochs': ws['timer'].epochs}}
    print(f"  done: {ws['timer'].wall:.0f} s wall, {ws['timer'].cpu:.0f} s CPU (weights {weight_fp})", flush=True)

    # ---------------------------------------------------------------- θ stages from the same weights
    theta_runs = {}
    for method in METHODS:
        epochs = args.theta_epochs * (n_eps if method == 'separate' else 1)
        print(f'θ stage, {METHOD_NAMES[method]}: {epochs} epoch(s), batch {args.theta_batch_size} ...', flush=True)
        run = run_stage(args, stage='theta', method=method, table=table, d_x=d_x, d_theta=d_theta,
                        batch_size=args.theta_batch_size, epochs=epochs, work=work, supernet_state=supernet_state)
        opt = run['strategy'].searcher.optimizer
        per_eps = None
        if method == 'separate':
            per_eps = [sum(e['wall_s'] for e in run['timer'].epochs[i * args.theta_epochs:(i + 1) * args.theta_epochs])
                       for i in range(n_eps)]
        timing[f'theta_{method}'] = {
            'fit_wall_s': run['timer'].wall, 'fit_cpu_s': run['timer'].cpu, 'run_wall_s': run['run_wall_s'],
            'run_cpu_s': run['run_cpu_s'], 'epochs': run['timer'].epochs, 'theta_updates': int(opt.iteration),
            'architecture_evaluations': int(opt.iteration) * args.lam, 'per_epsilon_wall_s': per_eps,
            'start_fingerprint': run['start_fingerprint']}
        theta_runs[method] = run
        print(f"  done: {run['timer'].wall:.0f} s wall, {run['timer'].cpu:.0f} s CPU, {opt.iteration} θ updates "
              f"(start weights {run['start_fingerprint']}, {'same' if run['start_fingerprint'] == weight_fp else 'DIFFERENT'})",
              flush=True)

    # ---------------------------------------------------------------- evaluate the N architectures per method
    rows: list[dict[str, Any]] = []
    inherited_cache: dict[str, tuple[float, float]] = {}
    retrain_cache: dict[str, dict[str, Any]] = {}
    first_seen: dict[str, str] = {}
    eval_w0 = time.perf_counter()
    for method in METHODS:
        strategy = theta_runs[method]['strategy']
        searcher = strategy.searcher
        summary = searcher.summary()
        for n, res in enumerate(strategy.results()):
            arch = res['architecture']
            key = arch_key(arch)
            if key not in inherited_cache:
                with quiet():
                    net = trained_space.freeze(arch)
                params = count_parameters(net)
                recalibrate_bn(net, recal_batches)
                inherited_cache[key] = (params, *evaluate(net, val_batches))
            params, inh_loss, inh_acc = inherited_cache[key]
            tag = f"{METHOD_NAMES[method]} ε={res['epsilon']:g}"
            same_as = first_seen.get(key)
            first_seen.setdefault(key, tag)
            rows.append({'method': method, 'epsilon': res['epsilon'], 'architecture': arch, 'params_exact': params,
                         'params_predicted': res['params'],
                         'prediction_rel_error': (res['params'] - params) / params,
                         'expected_params': summary.get(f'expected_params_{n}'),
                         'inherited_val_loss': inh_loss, 'inherited_val_acc': inh_acc, 'same_as': same_as,
                         'convergence': summary.get(f'convergence_{n}')})
    timing['inherited_eval_wall_s'] = time.perf_counter() - eval_w0
    print(f'inherited-weight evaluation: {len(inherited_cache)} distinct architecture(s), '
          f"{timing['inherited_eval_wall_s']:.0f} s", flush=True)
    if not args.no_retrain:
        retrain_w0 = time.perf_counter()
        for r in rows:
            key = arch_key(r['architecture'])
            if key not in retrain_cache:
                print(f"  retraining {METHOD_NAMES[r['method']]} ε={r['epsilon']:g} ({r['params_exact']:,} params) ...",
                      flush=True)
                retrain_cache[key] = retrain(r['architecture'], args, retrain_set, val_batches, recal_batches)
                print(f"    {retrain_cache[key]['wall_s']:.0f} s: held-out acc {100 * retrain_cache[key]['val_acc']:.2f}%",
                      flush=True)
            res = retrain_cache[key]
            r.update(retrained_val_loss=res['val_loss'], retrained_val_acc=res['val_acc'],
                     retrained_params=res['params'], retrain_wall_s=res['wall_s'])
        timing['retrain_wall_s'] = time.perf_counter() - retrain_w0

    # ---------------------------------------------------------------- report
    total = time.perf_counter() - t_start
    summary_claims = claims(rows, timing, args.epsilons)
    with contextlib.suppress(OSError):
        info['loadavg_end'] = list(os.getloadavg())
    lines = ['', '=' * 100,
             f'Multi-complexity search, Fashion-MNIST, ENAS cell C={args.channels} N={args.cells} B={args.nodes}; '
             f'ε={list(args.epsilons)}, λ={args.lam}, η={eta:.5f}, T_W={args.weight_epochs}, T_θ={args.theta_epochs}',
             f"weight stage (shared, once): {timing['weights']['fit_wall_s']:.1f} s wall / "
             f"{timing['weights']['fit_cpu_s']:.1f} s CPU"]
    for method in METHODS:
        t = timing[f'theta_{method}']
        extra = '' if t['per_epsilon_wall_s'] is None else \
            ' (per ε: ' + ', '.join(f'{s:.1f}' for s in t['per_epsilon_wall_s']) + ' s)'
        lines.append(f"θ stage {METHOD_NAMES[method]:<22}: {t['fit_wall_s']:.1f} s wall / {t['fit_cpu_s']:.1f} s CPU, "
                     f"{t['theta_updates']} updates, {t['architecture_evaluations']} architecture evaluations{extra}")
    lines.append(f"θ-stage cost ratio IS/Separate: wall {summary_claims['theta_stage_wall_ratio_IS_over_separate']:.3f}, "
                 f"CPU {summary_claims['theta_stage_cpu_ratio_IS_over_separate']:.3f}, evaluations "
                 f"{summary_claims['theta_evaluations_ratio_IS_over_separate']:.3f} (1/N = {1 / n_eps:.3f})")
    if add:
        lines.append(f"complexity table additivity error (uniform architectures): mean {100 * add['mean_rel_error']:.2f}%, "
                     f"max {100 * add['max_rel_error']:.2f}%; on the exported ones: max "
                     f"{100 * max(abs(r['prediction_rel_error']) for r in rows):.2f}%")
    lines += ['', table_text(rows), '',
              'params: exact count of the frozen search-size network; pred.: complexity table; err%: (pred−exact)/exact;',
              'E_θ[R]: expected parameters under the final θ⁽ⁿ⁾ (table); inh.: inherited supernet weights, BN '
              'recalibrated; re.: retrained from scratch',
              f"({args.retrain_epochs} epoch(s) on {len(retrain_set)} images); accuracies on {len(held_out)} held-out "
              'test-split images.']
    for method in METHODS:
        c = summary_claims[method]
        lines.append(f"{METHOD_NAMES[method]}: sizes by increasing ε {c['params_by_increasing_epsilon']} → "
                     f"non-increasing: {c['sizes_non_increasing_in_epsilon']}, strictly: "
                     f"{c['sizes_strictly_decreasing_in_epsilon']}, distinct: {c['distinct_architectures']}/{n_eps}; "
                     f"E_θ[R] strictly decreasing: {c['expected_params_strictly_decreasing']}; mean inherited acc "
                     f"{100 * c['mean_inherited_val_acc']:.2f}%"
                     + (f", mean retrained acc {100 * c['mean_retrained_val_acc']:.2f}%"
                        if 'mean_retrained_val_acc' in c else ''))
    lines.append(f'total wall time {total:.0f} s')
    report = '\n'.join(lines)
    print(report, flush=True)

    histories = {m: theta_runs[m]['strategy'].history for m in METHODS}
    document = {
        'command': command, 'argv': list(sys.argv if argv is None else argv), 'args': {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        'machine': info, 'eta': eta, 'total_wall_s': total, 'timing': timing, 'claims': summary_claims,
        'complexity_table': {'method': 'regression', 'base': table.base, 'per_category': table.per_category.tolist(),
                             'labels': encoding.labels, 'num_categories': list(encoding.num_categories),
                             'additivity': add, 'measure_wall_s': table_s},
        'weights_fingerprint': weight_fp, 'rows': rows,
        'theta_history': histories, 'report': report,
        'how_compared': 'weights trained once (T_W epochs, cosine to 0 over them), state_dict loaded by both θ '
                        'stages; same seed; θ stages never update weights',
    }
    (out / 'results.json').write_text(json.dumps(document, indent=1, default=_json_default))
    write_csv(rows, out / 'results.csv')
    plot(rows, out / 'loss_vs_params.png',
         f'Fashion-MNIST, ENAS cell C={args.channels}: N={n_eps} architectures per method (ε={list(args.epsilons)})')
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    print(f'written: {out / "results.json"}, {out / "results.csv"}, {out / "loss_vs_params.png"}', flush=True)
    return document


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return repr(o)


if __name__ == '__main__':
    main()

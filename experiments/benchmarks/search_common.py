"""Search-and-retrain pieces shared by ``search_quality.py`` and ``convergence.py``.

A search is driven exactly like ``step_cost.py`` does (``strategy.mutate_model`` / ``mutate_evaluator`` /
``evaluate``), on the ENAS cell space built through ``nni_asng.app.config.registry`` and D_x / D_θ from
``nni_asng.data.search_loaders``. A :class:`ConvergenceRecorder` callback evaluates, every N steps, the
current argmax architecture (the one-shot module's ``export()``) with the supernet's weights
(``supernet.freeze(arch)`` inherits them; BatchNorm uses batch statistics, since a supernet's running
statistics mix many paths) on a fixed D_θ subset, and records the distribution's entropy (from
``export_probs()``: nni-asng's θ, NNI DARTS' softmax(α)) against the search's wall and CPU time, with
the evaluation time taken out of both clocks. Found architectures are retrained from scratch with one
short recipe (:func:`retrain`), trained by nni-asng's own ``nni_asng.app.fit_fixed_network`` with the
``retrain`` section of an ExperimentConfig built from :class:`RetrainConfig`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import common  # noqa: F401  (sets sys.path, imports nni_asng first)
import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class SearchConfig:
    dataset: str = 'fashion_mnist'
    data_root: str | None = None
    channels: int = 8                 # C of the searched ENAS cell space
    cells_per_stage: int = 1          # N: 3N + 2 cells (5)
    batch: int = 32
    limit: int = 4000                 # training examples used by the search: D_x and D_θ halves
    epochs: int = 4
    lr: float = 1e-3                  # weights: Adam (NNI Classification evaluator)
    weight_decay: float = 0.0
    theta_lr: float = 0.03            # Adam on θ/α for AdvantageNAS, Reinforce, NNI DARTS (see README)
    eval_every: int = 10              # steps between argmax evaluations
    eval_examples: int = 256          # fixed D_θ subset for them
    max_minutes: float | None = None  # wall-clock cap of one search (Lightning max_time)
    device: str = 'cpu'
    threads: int | None = 1


@dataclass
class RetrainConfig:
    channels: int = 8
    cells_per_stage: int = 1
    batch: int = 64
    limit: int = 4000                 # training examples
    test_limit: int = 2000            # test examples
    epochs: int = 2
    lr: float = 2e-3                  # Adam, cosine to 0
    weight_decay: float = 3e-4
    device: str = 'cpu'
    threads: int | None = 1


def _info_for(dataset: str, root: str | None):
    from nni_asng.data import search_datasets
    from nni_asng.app import DataInfo
    d_x, _ = search_datasets(dataset, root, limit=64, seed=0)
    c, h, w = d_x.input_shape
    return DataInfo(in_channels=int(c), num_classes=int(d_x.num_classes), input_shape=(int(c), int(h), int(w)))


def build_space(cfg: SearchConfig):
    from nni_asng.app import space_entry
    info = _info_for(cfg.dataset, cfg.data_root)
    return space_entry('enas_cell').build_space({'channels': cfg.channels, 'cells_per_stage': cfg.cells_per_stage},
                                                info), info


def build_fixed(arch: dict, rcfg: RetrainConfig, info):
    from nni_asng.app import space_entry
    return space_entry('enas_cell').build_fixed(arch, {'channels': rcfg.channels, 'cells_per_stage': rcfg.cells_per_stage,
                                                       'auxiliary': False, 'drop_path_prob': 0.0, 'affine': True}, info)


def random_architectures(n: int, seed: int, cfg: SearchConfig) -> list[dict]:
    from nni_asng import SearchSpaceEncoding
    from search_spaces.enas_cell import enas_mutables
    enc = SearchSpaceEncoding(enas_mutables())
    rng = np.random.default_rng(seed)
    return [enc.to_architecture(np.array([rng.integers(k) for k in enc.num_categories], float)) for _ in range(n)]


def strategy_overrides(name: str, cfg: SearchConfig) -> dict[str, Any]:
    if name in ('advantage_nas', 'reinforce'):
        return {'learning_rate': cfg.theta_lr}
    if name in ('darts', 'gumbel_darts'):
        return {'arc_learning_rate': cfg.theta_lr}
    return {}


def _bn_batch_stats(model: torch.nn.Module) -> None:
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()


@torch.no_grad()
def evaluate_fixed(net: torch.nn.Module, batches, device: str) -> tuple[float, float]:
    """(accuracy, mean loss) with BatchNorm on batch statistics, no gradient."""
    net = net.to(device)
    _bn_batch_stats(net)
    correct = total = 0
    loss_sum = 0.0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out = net(x)
        out = out[0] if isinstance(out, tuple) else out
        loss_sum += float(F.cross_entropy(out, y, reduction='sum'))
        correct += int((out.argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1), loss_sum / max(total, 1)


def normalised_entropy(probs: dict[str, dict[Any, float]]) -> float:
    if not probs:
        return math.nan
    h_max = sum(math.log(len(p)) for p in probs.values() if len(p) > 1)
    return common.entropy_of_probs(probs) / h_max if h_max else math.nan


def _probs_as_floats(probs) -> dict[str, dict[str, float]]:
    out = {}
    for label, dist in (probs or {}).items():
        if isinstance(dist, dict):
            out[str(label)] = {str(k): float(v) for k, v in dist.items()}
        else:       # a tensor / list of probabilities
            out[str(label)] = {str(i): float(v) for i, v in enumerate(torch.as_tensor(dist).flatten().tolist())}
    return out


def make_recorder(eval_batches, every: int, device: str, evaluate_argmax: bool = True):
    from pytorch_lightning import Callback

    class ConvergenceRecorder(Callback):
        """Every ``every`` steps (and at the end): argmax architecture accuracy with the supernet weights on a
        fixed D_θ subset, the normalised entropy of the distribution, and the search clocks without evaluation time."""

        def __init__(self):
            self.points: list[dict[str, Any]] = []
            self.steps = 0
            self.paused_wall = 0.0
            self.paused_cpu = 0.0
            self.wall0 = self.cpu0 = None
            self.search_wall = self.search_cpu = None

        def on_train_start(self, trainer, pl_module):
            self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
            self._record(pl_module)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.steps += 1
            if self.steps % every == 0:
                self._record(pl_module)

        def on_train_end(self, trainer, pl_module):
            common.sync(device)
            self.search_wall = time.perf_counter() - self.wall0 - self.paused_wall
            self.search_cpu = time.process_time() - self.cpu0 - self.paused_cpu
            if not self.points or self.points[-1]['step'] != self.steps:
                self._record(pl_module)

        def _record(self, pl_module):
            common.sync(device)
            w0, c0 = time.perf_counter(), time.process_time()
            point = {'step': self.steps, 'wall_s': w0 - self.wall0 - self.paused_wall,
                     'cpu_s': c0 - self.cpu0 - self.paused_cpu}
            try:
                probs = _probs_as_floats(pl_module.export_probs())
            except Exception:  # noqa: BLE001 - RandomOneShot has no distribution
                probs = {}
            point['entropy'] = normalised_entropy(probs)
            if evaluate_argmax:
                with common.quiet_warnings():
                    arch = pl_module.export()
                    was_training = pl_module.training
                    fixed = pl_module.model.freeze(arch)
                    acc, loss = evaluate_fixed(fixed, eval_batches, device)
                    pl_module.train(was_training)
                point.update(acc=acc, loss=loss)
            self.points.append(point)
            self.paused_wall += time.perf_counter() - w0
            self.paused_cpu += time.process_time() - c0

    return ConvergenceRecorder()


def run_search(strategy_name: str, seed: int, cfg: SearchConfig, evaluate_argmax: bool = True) -> dict[str, Any]:
    """Search once; returns the exported architecture, clocks and the convergence trajectory."""
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification
    from nni_asng.data import search_datasets, search_loaders

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(seed, verbose=False)
    space, info = build_space(cfg)
    # Same D_x / D_θ split (seed 0) for every strategy and search seed: only the search's randomness varies.
    d_x, d_theta = search_loaders(cfg.dataset, batch_size=cfg.batch, root=cfg.data_root, limit=cfg.limit, seed=0)
    _, theta_plain = search_datasets(cfg.dataset, cfg.data_root, limit=cfg.limit, seed=0, augment=False)
    n_eval = min(cfg.eval_examples, len(theta_plain))
    xs = torch.stack([theta_plain[i][0] for i in range(n_eval)])
    ys = torch.as_tensor([int(theta_plain[i][1]) for i in range(n_eval)])
    eval_batches = [(xs[i:i + 128], ys[i:i + 128]) for i in range(0, n_eval, 128)]
    strategy = common.make_strategy(strategy_name, seed=seed, **strategy_overrides(strategy_name, cfg))
    recorder = make_recorder(eval_batches, cfg.eval_every, cfg.device,
                             evaluate_argmax=evaluate_argmax and strategy_name != 'random_one_shot')
    extra = {'max_time': {'seconds': int(cfg.max_minutes * 60)}} if cfg.max_minutes else {}
    evaluator = Classification(learning_rate=cfg.lr, weight_decay=cfg.weight_decay, train_dataloaders=d_x,
                               val_dataloaders=d_theta, num_classes=info.num_classes, max_epochs=cfg.epochs,
                               limit_val_batches=0, callbacks=[recorder], **common.trainer_device_kwargs(cfg.device),
                               **common.quiet_trainer_kwargs(), **extra)
    t0 = time.perf_counter()
    with common.quiet_warnings():
        supernet = strategy.mutate_model(space)
        mutated = strategy.mutate_evaluator(evaluator)
        module = mutated.module
        build_s = time.perf_counter() - t0
        mutated.evaluate(supernet)
        arch = module.export()
    steps_per_epoch = len(d_x) if strategy_name == 'random_one_shot' else min(len(d_x), len(d_theta))
    planned = steps_per_epoch * cfg.epochs
    return {'strategy': strategy_name, 'seed': seed, 'architecture': arch, 'build_s': build_s,
            'search_wall_s': recorder.search_wall, 'search_cpu_s': recorder.search_cpu, 'steps': recorder.steps,
            'planned_steps': planned, 'examples_seen': recorder.steps * cfg.batch *
            (1 if strategy_name == 'random_one_shot' else 2),
            'completed_budget': recorder.steps >= planned, 'trajectory': recorder.points,
            'final_entropy': recorder.points[-1].get('entropy') if recorder.points else math.nan,
            'config': asdict(cfg)}


def retrain_experiment_config(rcfg: RetrainConfig, scfg: SearchConfig):
    """nni-asng's ExperimentConfig of this recipe: its ``retrain`` section is what
    :func:`nni_asng.app.fit_fixed_network` trains with (Adam at ``rcfg.lr``, cosine to 0 per step,
    ``rcfg.weight_decay``, no gradient clipping, ``rcfg.epochs`` epochs; the test set is evaluated once,
    after the last epoch). The fixed network, its loaders and the seeds stay this module's."""
    import yaml
    from nni_asng.app import parse_config
    doc = {'name': 'search-quality-retrain',
           'space': {'name': 'enas_cell', 'args': {'channels': rcfg.channels, 'cells_per_stage': rcfg.cells_per_stage}},
           'strategy': {'name': 'asng'},                 # required by the schema; a retrain does not use it
           'data': {'dataset': scfg.dataset, 'root': scfg.data_root},
           'retrain': {'epochs': rcfg.epochs, 'batch_size': rcfg.batch, 'limit': rcfg.limit,
                       'test_limit': rcfg.test_limit,
                       'optimizer': {'name': 'adam', 'lr': rcfg.lr, 'weight_decay': rcfg.weight_decay,
                                     'schedule': 'cosine', 'min_lr': 0.0},
                       'gradient_clip': None, 'aux_weight': 0.0, 'drop_path_prob': 0.0, 'label_smoothing': 0.0,
                       'eval_every_n_epochs': rcfg.epochs, 'progress_bar': False, 'device': rcfg.device}}
    return parse_config(yaml.safe_dump(doc, sort_keys=False), source='search_common.RetrainConfig')


def retrain(arch: dict, seed: int, rcfg: RetrainConfig, scfg: SearchConfig) -> dict[str, Any]:
    """Train the fixed network of ``arch`` from scratch (one short recipe for all, trained by
    :func:`nni_asng.app.fit_fixed_network`) and test it. ``retrain_wall_s`` / ``retrain_cpu_s`` cover
    that fit, including its one test evaluation after the last epoch."""
    import tempfile

    from nni_asng.app import fit_fixed_network
    from nni_asng.data import retrain_loaders
    from nni_asng.model_size import count_parameters

    if rcfg.threads:
        torch.set_num_threads(int(rcfg.threads))
    cfg = retrain_experiment_config(rcfg, scfg)
    torch.manual_seed(seed)
    np.random.seed(seed)
    info = _info_for(scfg.dataset, scfg.data_root)
    net = build_fixed(arch, rcfg, info)
    params = count_parameters(net)
    train, test = retrain_loaders(scfg.dataset, batch_size=rcfg.batch, root=scfg.data_root, limit=rcfg.limit,
                                  test_limit=rcfg.test_limit, seed=seed)
    w0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix='sq_retrain_') as root, common.quiet_warnings():
        trainer = fit_fixed_network(cfg, net, train, {'test': test}, device=rcfg.device, default_root_dir=root,
                                    enable_checkpointing=False)
    train_wall, train_cpu = time.perf_counter() - w0, time.process_time() - c0
    test_acc = float(trainer.callback_metrics['test_acc'])
    return {'test_acc': test_acc, 'params': int(params), 'retrain_wall_s': train_wall,
            'retrain_cpu_s': train_cpu, 'seed': seed, 'test_examples': len(test.dataset)}


def config_dicts(scfg: SearchConfig, rcfg: RetrainConfig) -> dict[str, Any]:
    return {'search': asdict(scfg), 'retrain': asdict(rcfg)}


__all__ = ['SearchConfig', 'RetrainConfig', 'run_search', 'retrain', 'random_architectures']

"""The one place a run is built from its config.

Every part of a search, a retraining or a tabular benchmark that depends on an :class:`ExperimentConfig`
is built here; the modules below (:mod:`~nni_asng.app.runners.tasks`, :mod:`~nni_asng.app.runners.userdata`,
:mod:`~nni_asng.app.config.registry`, :mod:`nni_asng.data`) take plain arguments and never see a config, and
the steps after a build (:mod:`~nni_asng.app.runners.runs`) take its parts, not the config. What it builds::

    build_search(cfg)               SearchParts: device (resolved), threads set, everything seeded with
                                    ``seed``, data (D_x, D_θ), space, strategy (strategy.args + search settings)
    search_evaluator(parts, ...)    NNI's Lightning evaluator: the task's module with search.optimizer and the
                                    search trainer (epochs, precision, channels_last, devices x num_nodes)
    trial_reporter(parts, output)   the progress reporter of a search run as a trial of an NNI experiment
    build_retrain(cfg, arch, seed)  RetrainParts: device, threads, seeded data, the architecture checked against
                                    the space, space_args (+ retrain.space_args, scaled to retrain.param_budget),
                                    the fixed network and its parameter count
    fit_retrain(parts, ...)         RetrainParts trained as fit_fixed_network trains
    fit_fixed_network(cfg, ...)     the retrain recipe's module and trainer, fitted (the one training loop)
    search_data / retrain_data      the loaders of data.dataset, or of the user's data.factory
    search_space, search_module, retrain_trainer, validate_architecture
    table_data / table_network / table_loaders     the tabular benchmark's images, networks and loaders

So the config flows one way: config → assembly → (tasks, userdata, registry, data) → parts → runs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pytorch_lightning as pl
import torch
from nni.nas.evaluator.pytorch.lightning import Lightning, Trainer

from ...data import ImageClassificationDataset
from ...model_size import count_parameters
from ...oneshot import ArchitectureError, SearchSpaceEncoding
from ..config.errors import ArchitectureFileError, ConfigError
from ..config.registry import DataInfo, SpaceEntry, StrategyEntry, scale_to_budget, space_entry, strategy_entry
from ..config.schema import ExperimentConfig, RetrainConfig, SearchConfig
from . import tasks, userdata
from .quiet import quiet_warnings
from .reporter import SearchTrialReporter

__all__ = ['SearchParts', 'RetrainParts', 'build_search', 'search_evaluator', 'trial_reporter', 'build_retrain',
           'fit_retrain', 'fit_fixed_network', 'retrain_trainer', 'search_data', 'retrain_data', 'search_space',
           'search_module', 'validate_architecture', 'table_data', 'table_network', 'table_loaders', 'preflight']

_logger = logging.getLogger(__name__)
Log = Callable[[str], None]


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- data, space
def _masking(cfg: ExperimentConfig) -> dict[str, Any]:
    """The inpainting masks (InpaintingDataset's arguments); drawn with ``seed`` in search and retraining."""
    d = cfg.data
    return dict(mask=d.mask or 'center', seed=cfg.seed, center_fraction=d.center_fraction,
                pixel_fraction=d.pixel_fraction)


def search_data(cfg: ExperimentConfig):
    """D_x and D_θ of the search (:func:`nni_asng.app.runners.tasks.search_data`, or the user's ``data.factory``)."""
    return _search_data(cfg, space_entry(cfg.space.name))


def _search_data(cfg: ExperimentConfig, entry: SpaceEntry):
    d = cfg.data
    if d.factory:
        return userdata.search_data(d.factory, d.factory_args, seed=cfg.seed, batch_size=d.batch_size,
                                    num_workers=d.num_workers)
    return tasks.search_data(entry, d.dataset, d.root, limit=d.limit, seed=cfg.seed,
                             subset_seed=d.subset_seed, resolution=d.resolution, augment=d.augment,
                             batch_size=d.batch_size, num_workers=d.num_workers, device=cfg.search.device,
                             masking=_masking(cfg))


def retrain_data(cfg: ExperimentConfig, seed: int):
    """Training and test loaders of a retraining with ``seed`` (:func:`nni_asng.app.runners.tasks.retrain_data`, or
    the user's ``data.factory``)."""
    return _retrain_data(cfg, space_entry(cfg.space.name), seed)


def _retrain_data(cfg: ExperimentConfig, entry: SpaceEntry, seed: int):
    d, r = cfg.data, cfg.retrain
    if d.factory:
        return userdata.retrain_data(d.factory, d.factory_args, seed=seed, batch_size=r.batch_size,
                                     num_workers=d.num_workers)
    return tasks.retrain_data(entry, d.dataset, d.root, limit=r.limit,
                              test_limit=r.test_limit or 1.0, seed=seed, subset_seed=d.subset_seed,
                              resolution=d.resolution, augment=r.augment, cutout=r.cutout, batch_size=r.batch_size,
                              num_workers=d.num_workers, device=r.device, masking=_masking(cfg))


def search_space(cfg: ExperimentConfig, info: DataInfo):
    """The search space ``space.name`` with ``space.args`` (and the data's channels and classes)."""
    return _search_space(cfg, space_entry(cfg.space.name), info)


def _search_space(cfg: ExperimentConfig, entry: SpaceEntry, info: DataInfo):
    with quiet_warnings():
        return entry.build_space(cfg.space.args, info)


def validate_architecture(cfg: ExperimentConfig, arch: Mapping[str, Any], info: DataInfo, path) -> None:
    """Check ``arch`` against the configured search space; errors name the offending label."""
    _validate_architecture(cfg, space_entry(cfg.space.name), arch, info, path)


def _validate_architecture(cfg: ExperimentConfig, entry: SpaceEntry, arch: Mapping[str, Any], info: DataInfo,
                           path) -> None:
    space = _search_space(cfg, entry, info)
    try:
        SearchSpaceEncoding(space).validate(arch)
    except ArchitectureError as err:
        raise ArchitectureFileError(f'{path} does not match space {cfg.space.name!r} '
                                    f'(args {dict(cfg.space.args)}): {err}') from None


# ---------------------------------------------------------------------------------------------- search
@dataclass
class SearchParts:
    """What a search runs: built by :func:`build_search` before anything is written."""

    space_entry: SpaceEntry
    strategy_entry: StrategyEntry
    strategy: Any
    space: Any
    data: Any                    # nni_asng.app.runners.tasks.TaskData: D_x (train), D_θ (val)
    device: str                  # 'cpu' or 'cuda'
    space_args: Mapping[str, Any]   # space.args: the space's and its fixed networks' constructor arguments
    settings: SearchConfig       # the search section: epochs, optimizer recipe, trainer options
    reporting: dict[str, Any]    # a trial's SearchTrialReporter: every, batches (launch.report_*), batch_size


def _strategy(cfg: ExperimentConfig, info: DataInfo) -> tuple[StrategyEntry, Any]:
    entry = strategy_entry(cfg.strategy.name)
    cls = entry.load_class()
    args = dict(cfg.strategy.args)
    params = entry.parameters()
    if 'gradient_clip_val' in params:
        args['gradient_clip_val'] = cfg.search.gradient_clip
    elif cfg.search.gradient_clip is not None:
        _logger.warning('strategy %s cannot clip gradients; search.gradient_clip is ignored', entry.name)
    if 'log_every_n_steps' in params:
        args['log_every_n_steps'] = cfg.search.log_every_n_steps
    if 'seed' in params:
        args['seed'] = cfg.seed
    # The data's input shape: FLOPs and latency need it, and so does a space with lazy modules (one forward pass)
    if entry.name == 'multi_complexity' and 'input_shape' not in args:
        args['input_shape'] = list(info.input_shape)
    if isinstance(args.get('budget'), dict) and 'input_shape' not in args['budget']:
        args['budget'] = {**args['budget'], 'input_shape': list(info.input_shape)}
    try:
        return entry, cls(**args)
    except (ValueError, TypeError) as err:   # the strategies check their hyperparameters
        raise ConfigError(f'{cfg.source}: strategy.args: {err}') from err


def build_search(cfg: ExperimentConfig) -> SearchParts:
    """Resolve ``search.device``, set ``search.threads``, seed everything with ``seed``, then build the data,
    the space and the strategy (everything of a search that can fail on user input)."""
    entry = space_entry(cfg.space.name)
    device = tasks.resolve_device(cfg.search.device)
    _set_threads(cfg.search.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data = _search_data(cfg, entry)
    space = _search_space(cfg, entry, data.info)
    strategy_e, strategy = _strategy(cfg, data.info)
    reporting = dict(every=cfg.launch.report_every_n_steps, batches=cfg.launch.report_batches,
                     batch_size=cfg.data.batch_size)
    return SearchParts(entry, strategy_e, strategy, space, data, device, cfg.space.args, cfg.search, reporting)


def preflight(cfg: ExperimentConfig) -> SearchParts:
    """Everything of a search of ``cfg`` that can fail on user input (data found and read, space built with its
    arguments, strategy built with its arguments), without training: ``nni-asng check`` and ``launch``."""
    with quiet_warnings():
        return build_search(cfg)


def search_module(parts: SearchParts):
    """The task's Lightning module with the ``search.optimizer`` recipe."""
    return tasks.make_module(parts.space_entry, parts.settings.optimizer.recipe())


def search_evaluator(parts: SearchParts, *, callbacks: list, logger, default_root_dir: str,
                     fit_kwargs: dict | None = None):
    """NNI ``Lightning`` evaluator for the one-shot search (train = D_x, val = D_θ)."""
    s, device = parts.settings, parts.device
    module = search_module(parts)
    if s.channels_last:
        callbacks = [*callbacks, tasks.ChannelsLast()]
    trainer = Trainer(max_epochs=s.epochs, callbacks=callbacks, logger=logger,
                      enable_progress_bar=s.progress_bar, enable_model_summary=False,
                      log_every_n_steps=s.log_every_n_steps, default_root_dir=default_root_dir,
                      num_sanity_val_steps=0, limit_train_batches=s.limit_train_batches,
                      plugins=[tasks.AtomicCheckpointIO()],
                      precision=tasks.trainer_precision(s.precision, device, 'search'),
                      **tasks.trainer_device_kwargs(device, s.devices, s.num_nodes))
    return Lightning(module, trainer, train_dataloaders=parts.data.train, val_dataloaders=parts.data.val,
                     fit_kwargs=fit_kwargs or {})


def trial_reporter(parts: SearchParts, output) -> SearchTrialReporter:
    """The :class:`~nni_asng.app.runners.reporter.SearchTrialReporter` of a search run as an NNI trial
    (``launch.report_*``)."""
    return SearchTrialReporter(parts.space_entry, parts.space_args, parts.data, output, **parts.reporting)


# ---------------------------------------------------------------------------------------------- retrain
@dataclass
class RetrainParts:
    """What a retraining runs: built by :func:`build_retrain`."""

    space_entry: SpaceEntry
    device: str
    data: Any                    # nni_asng.app.runners.tasks.TaskData: training split (train), test split (val)
    architecture: Mapping[str, Any]   # checked against the space
    space_args: dict[str, Any]   # space.args + retrain.space_args (width scaled to retrain.param_budget)
    network: torch.nn.Module
    params: int
    settings: RetrainConfig      # the retrain section: epochs, optimizer recipe, trainer options


def build_retrain(cfg: ExperimentConfig, arch: Mapping[str, Any], seed: int, *, source: Any,
                  log: Log = print) -> RetrainParts:
    """Resolve ``retrain.device``, set ``retrain.threads``, seed everything with ``seed``, read the data, check
    ``arch`` (read from ``source``) against the space and build its fixed network with fresh weights."""
    entry = space_entry(cfg.space.name)
    device = tasks.resolve_device(cfg.retrain.device)
    _set_threads(cfg.retrain.threads)
    pl.seed_everything(seed, workers=True, verbose=False)
    data = _retrain_data(cfg, entry, seed)
    _validate_architecture(cfg, entry, arch, data.info, source)
    space_args = {**cfg.space.args, **cfg.retrain.space_args}
    if cfg.retrain.param_budget:
        with quiet_warnings():
            space_args, _ = scale_to_budget(entry, arch, space_args, data.info, cfg.retrain.param_budget, log)
    with quiet_warnings():
        network = entry.build_fixed(arch, space_args, data.info)
    return RetrainParts(entry, device, data, arch, space_args, network, count_parameters(network), cfg.retrain)


def fit_retrain(parts: RetrainParts, *, callbacks: Sequence = (), logger: Any = False,
                default_root_dir: str | None = None):
    """Train ``parts.network`` on ``parts.data.train`` as :func:`fit_fixed_network` does, evaluating on
    ``parts.data.val`` (metrics ``val_*``); returns the fitted Lightning trainer."""
    return _fit(parts.space_entry, parts.settings, parts.network, parts.data.train, {'val': parts.data.val},
                device=parts.device, callbacks=callbacks, logger=logger, default_root_dir=default_root_dir)


def retrain_trainer(settings: RetrainConfig, *, device: str, callbacks: list, logger,
                    default_root_dir: str | None, **overrides):
    """The Lightning trainer of the ``retrain`` ``settings`` on ``device`` (``overrides`` win)."""
    r = settings
    if r.channels_last:
        callbacks = [*callbacks, tasks.ChannelsLast()]
    kwargs = dict(max_epochs=r.epochs, callbacks=callbacks, logger=logger, enable_progress_bar=r.progress_bar,
                  enable_model_summary=False, gradient_clip_val=r.gradient_clip,
                  check_val_every_n_epoch=r.eval_every_n_epochs, num_sanity_val_steps=0,
                  limit_train_batches=r.limit_train_batches, default_root_dir=default_root_dir,
                  log_every_n_steps=10, precision=tasks.trainer_precision(r.precision, device, 'retrain'),
                  **tasks.trainer_device_kwargs(device))
    return pl.Trainer(**{**kwargs, **overrides})


def fit_fixed_network(cfg: ExperimentConfig, network: torch.nn.Module, train_loader, eval_loaders: Mapping[str, Any],
                      *, device: str, callbacks: Sequence = (), logger: Any = False,
                      default_root_dir: str | None = None, **trainer_overrides):
    """Train a fixed network with the config's ``retrain`` recipe; returns the fitted Lightning trainer.

    The one way nni-asng trains a fixed architecture (``nni-asng retrain``, launched trials, the tabular
    benchmark's builder): the task's module with the ``retrain.optimizer`` recipe and the ``retrain``
    trainer settings. ``eval_loaders`` maps metric prefixes to loaders evaluated after every
    ``retrain.eval_every_n_epochs`` epochs (``{'val': test}`` logs ``val_acc``; ``{'val': v, 'test': t}`` both).
    """
    return _fit(space_entry(cfg.space.name), cfg.retrain, network, train_loader, eval_loaders, device=device,
                callbacks=callbacks, logger=logger, default_root_dir=default_root_dir, **trainer_overrides)


def _fit(entry: SpaceEntry, settings: RetrainConfig, network: torch.nn.Module, train_loader,
         eval_loaders: Mapping[str, Any], *, device: str, callbacks: Sequence, logger: Any,
         default_root_dir: str | None, **trainer_overrides):
    r = settings
    module = tasks.make_module(entry, r.optimizer.recipe(), aux_weight=r.aux_weight,
                               drop_path_prob=r.drop_path_prob, label_smoothing=r.label_smoothing)
    module.set_model(network)
    module.eval_stages = tuple(eval_loaders)
    trainer = retrain_trainer(r, device=device, callbacks=list(callbacks), logger=logger,
                              default_root_dir=default_root_dir, **trainer_overrides)
    trainer.fit(module, train_loader, list(eval_loaders.values()))
    return trainer


# ---------------------------------------------------------------------------------------------- tabular
def table_data(cfg: ExperimentConfig):
    """(train = the search's images, validation = ``tabular.validation`` held-out training images, test = the
    test split, info) of ``nni-asng tabulate``."""
    d, r = cfg.data, cfg.retrain
    subset_seed = cfg.seed if d.subset_seed is None else d.subset_seed
    common = dict(name=d.dataset, root=d.root, resolution=d.resolution)
    train = ImageClassificationDataset(split='train', limit=d.limit, seed=subset_seed, subset_seed=subset_seed,
                                       augment=r.augment, **common)
    val = ImageClassificationDataset(split='train', half='holdout', limit=d.limit, seed=subset_seed,
                                     subset_seed=subset_seed, holdout=cfg.tabular.validation, **common)
    test = ImageClassificationDataset(split='test', **common)
    info = DataInfo(in_channels=train.input_shape[0], num_classes=train.num_classes, input_shape=train.input_shape)
    return train, val, test, info


def table_network(cfg: ExperimentConfig, arch: Mapping[str, Any], info: DataInfo, seed: int) -> torch.nn.Module:
    """A table job's fixed network: everything seeded with ``seed``, then ``arch`` built with ``space.args`` +
    ``retrain.space_args`` (no ``retrain.param_budget`` scaling: a table compares architectures as they are)."""
    entry = space_entry(cfg.space.name)
    pl.seed_everything(seed, workers=True, verbose=False)
    with quiet_warnings():
        return entry.build_fixed(arch, {**cfg.space.args, **cfg.retrain.space_args}, info)


def table_loaders(cfg: ExperimentConfig, train, val, test):
    """A table job's loaders: shuffled training batches of ``retrain.batch_size``, validation and test in order."""
    workers = cfg.data.num_workers
    return (tasks._loader(train, cfg.retrain.batch_size, workers, True), tasks._loader(val, 256, workers, False),
            tasks._loader(test, 256, workers, False))

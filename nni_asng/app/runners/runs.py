"""What the CLI's ``search`` and ``retrain`` commands do, as functions.

``run_search`` writes into its output folder (all JSON written atomically)::

    config.yaml            the complete config (defaults filled in), for the record and for ``launch``
    architecture.json      {"space", "space_args", "strategy", "architecture": {label: value}}
    architectures.json     multi_complexity: per ε (smallest network first) the architecture and its size
    history.json           per-epoch summaries of the distribution and the architectures exported then
    probabilities.json     {label: {value: P(value)}} of the final distribution
    distribution.png       heatmap of the final distribution, exported choices framed
    history.png            convergence / entropy / step size per epoch
    complexity.png         multi_complexity: the front, validation loss vs its complexity metric (params, flops
                           or latency_ms, measured) of the N architectures, over random architectures of the space
    inpainting.png         inpainting: test images through the exported architecture (supernet weights),
                           masked input / output / original side by side
    summary.json           config, wall time, device, final metrics, versions
    checkpoints/last.ckpt  Lightning checkpoint incl. the search state (``--resume`` continues it)
    logs/metrics.csv       everything logged during the search

Both run NNI's ``NasExperiment`` in this process without recording it in NNI's experiment manifest
(:class:`InProcessExperiment`): ``nnictl experiment list`` does not fill with a port-less entry per search.

Resume (documented hook, kept simple): ``--resume`` passes ``ckpt_path=<output>/checkpoints/last.ckpt``
to ``trainer.fit`` through the evaluator's ``fit_kwargs``; Lightning restores weights, optimizer, loop
counters and, via ``on_load_checkpoint``, the strategy's search state.

``run_retrain`` trains the fixed network of an exported architecture and writes ``retrain.json`` (inpainting:
and ``inpainting.png``, test images through the retrained network beside the original and masked ones).
Inside an NNI trial it reports every evaluation with ``nni.report_intermediate_result`` and the test
metric with ``nni.report_final_result``.

What both run (data, space, strategy, evaluator, fixed network, trainer) is built from the config by
:mod:`nni_asng.app.runners.assembly`; this module checks and writes the output folder around it.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nni
import numpy as np
import torch
from nni.nas.experiment import NasExperiment
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from ...evaluators.classification import in_nni_trial
from ...model_size import count_parameters
from ...oneshot.budget import BudgetError
from ...oneshot.complexity import ComplexityError
from ..config.errors import ArchitectureFileError, ConfigError, SearchInterrupted, UserError
from ..config.loading import dump_config, load_config
from ..config.registry import space_entry
from ..config.schema import ExperimentConfig
from . import assembly, plots, tasks
from .outputs import check_output, prepare_output, read_json, write_json, write_text
from .quiet import quiet_warnings
from .reporter import supernet_evaluation
from .stopping import GracefulStop

__all__ = ['run_search', 'run_retrain', 'SearchResult', 'RetrainResult', 'load_architectures', 'versions',
           'InProcessExperiment', 'PICTURE_EXAMPLES']

_logger = logging.getLogger(__name__)
Log = Callable[[str], None]


#: Test images in an inpainting run's ``inpainting.png``.
PICTURE_EXAMPLES = 6


class InProcessExperiment(NasExperiment):
    """NNI's ``NasExperiment`` run in this process, left out of NNI's experiment manifest.

    Without NNI's manager (one-shot strategies run in process), ``NasExperiment`` records itself in
    ``~/nni-experiments/.experiment`` as RUNNING, then STOPPED, without a port: ``nnictl experiment list`` would
    show one such entry per search (in the pipeline: per search trial), which nnictl can neither view nor
    resume. A search's files are in its output folder (``nni-experiments/`` there holds NNI's own).
    """

    def _start_without_nni_manager(self):
        pass

    def _stop_without_nni_manager(self):
        pass


@dataclass
class SearchResult:
    output: Path
    architectures: list[dict[str, Any]]          # one, or N for multi_complexity (smallest first)
    architecture_file: Path
    wall_time: float
    metrics: dict[str, float] = field(default_factory=dict)
    rank: int = 0                                # > 0: a DDP worker process, which writes no results


@dataclass
class RetrainResult:
    output: Path
    metric_name: str
    metric: float
    metrics: dict[str, float]
    params: int
    wall_time: float


def versions() -> dict[str, str]:
    """The versions of Python and the packages a run depends on (for summary.json, retrain.json, tables)."""
    out = {'python': platform.python_version()}
    for pkg in ('nni-asng', 'nni', 'torch', 'pytorch-lightning', 'numpy'):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[pkg] = importlib.metadata.version(pkg)
    return out


# ---------------------------------------------------------------------------------------------- search
def world_size(cfg: ExperimentConfig) -> int:
    return cfg.search.devices * cfg.search.num_nodes


def process_rank(cfg: ExperimentConfig) -> int:
    """Global rank of this process in a multi-process search (``search.devices`` x ``search.num_nodes``).

    Lightning's DDP launcher re-runs the same command line for local ranks 1..devices-1 with
    ``LOCAL_RANK`` set (and ``NODE_RANK`` on other nodes); torchrun and SLURM set ``RANK`` /
    ``SLURM_PROCID``. Only rank 0 checks and writes the output folder.
    """
    if world_size(cfg) == 1:
        return 0
    for key in ('RANK', 'SLURM_PROCID', 'JSM_NAMESPACE_RANK'):
        if os.environ.get(key, '').isdigit():
            return int(os.environ[key])
    node, local = os.environ.get('NODE_RANK', '0'), os.environ.get('LOCAL_RANK', '0')
    return (int(node) if node.isdigit() else 0) * cfg.search.devices + (int(local) if local.isdigit() else 0)


#: Variables by which Lightning recognises a cluster scheduler or launcher that tells every process its rank
#: (SLURM, torchrun / TorchElastic, LSF, Kubeflow's PyTorchJob through MASTER_ADDR + RANK + WORLD_SIZE).
_SCHEDULER_VARIABLES = ('SLURM_NTASKS', 'TORCHELASTIC_RUN_ID', 'GROUP_RANK', 'LSB_JOBID', 'RANK')


def check_nodes(cfg: ExperimentConfig, environ: dict[str, str] | None = None) -> None:
    """A search on ``search.num_nodes`` > 1 machines: every node must be told where node 0 listens and which node it
    is, else its first collective call waits (30 minutes by default) for processes that never come."""
    if cfg.search.num_nodes == 1:
        return
    env = os.environ if environ is None else environ
    nodes, devices = cfg.search.num_nodes, cfg.search.devices
    how = (f'start `nni-asng search` once on each of the {nodes} machines with MASTER_ADDR=<address of node 0>, '
           f'MASTER_PORT=<a free port on node 0>, NODE_RANK=<0..{nodes - 1}> (and the same config and --output on '
           f'storage every node sees), or under a scheduler that sets them (SLURM, torchrun); docs/multi-machine.md')
    if any(key in env for key in _SCHEDULER_VARIABLES):
        size = env.get('WORLD_SIZE', env.get('SLURM_NTASKS'))
        if size is not None and size.isdigit() and int(size) != nodes * devices:
            raise ConfigError(f'search.num_nodes={nodes} x search.devices={devices} = {nodes * devices} processes, '
                              f'but the scheduler started {size} (WORLD_SIZE / SLURM_NTASKS): ask it for {nodes} '
                              f'node(s) with {devices} task(s) each, or change the config')
        return
    missing = [key for key in ('MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK') if not env.get(key)]
    if missing:
        raise ConfigError(f'search.num_nodes is {nodes}, but {", ".join(missing)} {"is" if len(missing) == 1 else "are"} '
                          f'not set: {how}')
    node, port = env['NODE_RANK'], env['MASTER_PORT']
    if not node.isdigit() or int(node) >= nodes:
        raise ConfigError(f'NODE_RANK={node!r} but search.num_nodes is {nodes}: NODE_RANK must be one of '
                          f'0..{nodes - 1}, a different one on each machine')
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f'MASTER_PORT={port!r} is not a port number (1..65535)')
    size = env.get('WORLD_SIZE')
    if size is not None and size != str(nodes * devices):
        raise ConfigError(f'WORLD_SIZE={size} but search.num_nodes={nodes} x search.devices={devices} = '
                          f'{nodes * devices} processes: set WORLD_SIZE={nodes * devices} (or leave it unset)')


def _check_resume(out: Path, cfg: ExperimentConfig) -> Path:
    ckpt = out / 'checkpoints' / 'last.ckpt'
    if not ckpt.is_file():
        raise UserError(f'--resume: no checkpoint to resume from ({ckpt} does not exist)')
    previous = out / 'config.yaml'
    if previous.is_file():
        try:
            old = load_config(previous)
        except ConfigError:
            old = None
        if old is not None:
            was, now = old.model_dump(mode='json'), cfg.model_dump(mode='json')
            changed = _differences({k: was[k] for k in ('seed', 'space', 'strategy', 'data')},
                                   {k: now[k] for k in ('seed', 'space', 'strategy', 'data')})
            if changed:
                raise UserError(f'--resume: the config differs from the run in {out} ({previous}): '
                                f'{"; ".join(changed)}; a checkpoint can only continue the same search (only '
                                f'search.* settings such as search.epochs may change)')
            if world_size(old) != world_size(cfg):
                raise UserError(f'--resume: the checkpoint in {out} was written by a search on {world_size(old)} '
                                f'process(es) (search.devices x search.num_nodes), this one runs {world_size(cfg)}; '
                                f'the position inside an epoch depends on it: resume with '
                                f'--set search.devices={old.search.devices} --set search.num_nodes={old.search.num_nodes}')
    _check_checkpoint_file(ckpt)
    return ckpt


def _differences(old: Any, new: Any, path: str = '') -> list[str]:
    """``key.path: old -> new`` for every leaf where two config dumps differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            out += _differences(old.get(key, '<unset>'), new.get(key, '<unset>'), f'{path}.{key}' if path else key)
        return out
    return [] if old == new else [f'{path}: {old!r} -> {new!r}']


def _check_checkpoint_file(ckpt: Path) -> None:
    """A truncated or foreign ``last.ckpt`` fails here with its name, not deep inside Lightning."""
    try:
        state = torch.load(ckpt, map_location='cpu', weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for unreadable files
        raise UserError(f'--resume: {ckpt} is not a readable checkpoint ({type(err).__name__}: '
                        f'{str(err).splitlines()[0][:200]}); it may have been cut off while being written. '
                        f'Start again with --overwrite, or restore the file') from None
    if not isinstance(state, dict) or 'nni_asng' not in state:
        raise UserError(f'--resume: {ckpt} holds no nni-asng search state (it was not written by `nni-asng search`)')


def run_search(cfg: ExperimentConfig, output: str | os.PathLike | None = None, *, resume: bool = False,
               overwrite: bool = False, log: Log = print) -> SearchResult:
    """One-shot search as configured; writes the files listed in the module docstring."""
    out = Path(output) if output is not None else cfg.output_dir
    check_nodes(cfg)
    rank = process_rank(cfg)
    if rank:                          # a DDP worker: rank 0 owns the output folder and the messages
        log = _no_log
    if resume and not (out / 'checkpoints' / 'last.ckpt').is_file():
        shared = (f' on this node (rank {rank}); every node of a multi-node search reads the checkpoint, so --output '
                  'must be on storage all nodes share (or hold a copy of checkpoints/last.ckpt)'
                  if cfg.search.num_nodes > 1 else '')
        raise UserError(f'--resume: no checkpoint to resume from ({out / "checkpoints" / "last.ckpt"} does not '
                        f'exist{shared})')
    if rank == 0:
        check_output(out, resume=resume, overwrite=overwrite, what='search results')
    ckpt = _check_resume(out, cfg) if resume else None

    # Build everything that can fail on user input before the output folder is touched.
    parts = assembly.build_search(cfg)
    strategy, strategy_e, data, device = parts.strategy, parts.strategy_entry, parts.data, parts.device

    if rank == 0:
        out = prepare_output(out, resume=resume, overwrite=overwrite, what='search results')
        write_text(out / 'config.yaml', dump_config(cfg))
    fit_kwargs = {'ckpt_path': str(ckpt)} if ckpt is not None else {}
    processes = f' x {world_size(cfg)} processes (DDP)' if world_size(cfg) > 1 else ''
    log(f'search: {cfg.strategy.name} on {cfg.space.name} ({cfg.data.dataset}: D_x {data.sizes[0]}, '
        f'D_θ {data.sizes[1]} examples), {cfg.search.epochs} epoch(s) on {device}{processes}')

    # Ctrl-C / SIGTERM: finish the step, save checkpoints/last.ckpt, raise SearchInterrupted.
    stop = GracefulStop(out / 'checkpoints' / 'last.ckpt', announce=rank == 0)
    callbacks: list = []
    if cfg.search.checkpoint_every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=out / 'checkpoints', filename='step{step}', save_top_k=0,
                                         save_last=True, every_n_train_steps=cfg.search.checkpoint_every_n_steps))
    if rank == 0 and in_nni_trial():  # a trial of an NNI experiment: progress to the web UI (.reporter)
        callbacks.append(assembly.trial_reporter(parts, out))
    callbacks.append(stop)            # last: a stop at an epoch's end comes after the epoch's report
    # A resumed run logs beside the first one (Lightning's CSV logger would replace its metrics.csv).
    version = time.strftime('resumed_%Y%m%d-%H%M%S') if resume else ''
    logger = CSVLogger(save_dir=str(out), name='logs', version=version)
    evaluator = assembly.search_evaluator(parts, callbacks=callbacks, logger=logger, default_root_dir=str(out),
                                          fit_kwargs=fit_kwargs)
    exp = InProcessExperiment(parts.space, evaluator, strategy)
    exp.config.experiment_name = cfg.name
    # NNI's own records: rank 0's in the output folder; the other ranks' (on another node, possibly started before
    # node 0 has checked that folder) in a temporary one, so that they never write into the output.
    private = tempfile.mkdtemp(prefix=f'nni-asng-rank{rank}-') if rank else None
    exp.config.experiment_working_directory = private or str((out / 'nni-experiments').resolve())

    started = time.time()
    summary: dict[str, Any] = {'name': cfg.name, 'command': 'search', 'status': 'running',
                               'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'device': device,
                               'world_size': world_size(cfg), 'config': cfg.model_dump(mode='json'),
                               'versions': versions(), 'argv': sys.argv, 'resumed': resume}
    if rank == 0:
        write_json(out / 'summary.json', summary)
    try:
        with quiet_warnings(), stop.quiet_nni_errors():
            exp.run()
    except BaseException as err:
        # SystemExit: Lightning exits that way after a second (hard) Ctrl-C
        interrupted = isinstance(err, (KeyboardInterrupt, SearchInterrupted, SystemExit))
        if isinstance(err, SearchInterrupted):
            err.rank = rank
        if rank == 0:
            summary.update(status='interrupted' if interrupted else 'failed', error=f'{type(err).__name__}: {err}',
                           wall_time_s=time.time() - started)
            if isinstance(err, SearchInterrupted):
                summary.update(checkpoint=str(err.checkpoint), global_step=err.step, epochs=err.epoch)
            write_json(out / 'summary.json', summary)
            _save_partial(strategy, strategy_e, out)
        if isinstance(err, (BudgetError, ComplexityError)):      # the config's budget or space: the user's to fix
            raise ConfigError(f'{cfg.source}: strategy.args: {err}') from err
        raise
    finally:
        with contextlib.suppress(Exception):
            exp.stop()
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    wall = time.time() - started
    trainer = evaluator.trainer
    if cfg.search.checkpoint_every_n_steps:
        # The final state, whatever the step (every rank calls it: it synchronises; rank 0 writes).
        trainer.save_checkpoint(str(out / 'checkpoints' / 'last.ckpt'))
    if rank:
        return SearchResult(out, [], out / 'architecture.json', wall, rank=rank)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if v.numel() == 1 and not k.startswith('arch/argmax/')}

    result = _write_search_results(cfg, out, exp, parts, wall, log)
    result.metrics = metrics
    summary.update(status='done', wall_time_s=wall, final_metrics=metrics, accelerator=tasks.accelerator_info(device),
                   global_step=int(trainer.global_step), epochs=int(trainer.current_epoch),
                   architecture_file=result.architecture_file.name)
    digests = getattr(strategy.oneshot_module, 'rank_digests', None) if strategy_e.ours else None
    if digests:
        summary['search_state_sha256'] = digests          # one per rank; equal (checked at the end of training)
        summary['export_sha256'] = strategy.oneshot_module.rank_export_digests   # likewise, of what each exports
    write_json(out / 'summary.json', summary)
    return result


def _no_log(message: str) -> None:
    return None


def _save_partial(strategy, strategy_e, out: Path) -> None:
    """Keep what a failed/interrupted search had: its history (the checkpoint is already on disk)."""
    with contextlib.suppress(Exception):
        if strategy_e.ours and strategy.history:
            write_json(out / 'history.json', strategy.history)


def _arch_document(cfg: ExperimentConfig, **extra) -> dict[str, Any]:
    return {'space': cfg.space.name, 'space_args': dict(cfg.space.args), 'strategy': cfg.strategy.name,
            'dataset': cfg.data.dataset, **extra}


def _write_search_results(cfg, out, exp, parts: assembly.SearchParts, wall, log) -> SearchResult:
    strategy, strategy_e = parts.strategy, parts.strategy_entry
    module = strategy.oneshot_module
    history = list(strategy.history) if strategy_e.ours else []
    write_json(out / 'history.json', history)
    try:
        probabilities = module.export_probs()
    except Exception as err:   # e.g. NNI's RandomOneShot has no distribution
        _logger.info('no probabilities to export (%s)', err)
        probabilities = {}
    write_json(out / 'probabilities.json', probabilities)

    distribution_title = f'{cfg.name}: final distribution (red: exported choice)'
    if strategy_e.name == 'multi_complexity':
        rows = _multi_complexity_rows(parts)
        arch_file = write_json(out / 'architectures.json', _arch_document(cfg, architectures=rows))
        architectures = [r['architecture'] for r in rows]
        # probabilities.json holds the distribution of the first ε; frame that ε's architecture
        first = strategy.results()[0]
        chosen = first['architecture']
        distribution_title = f"{cfg.name}: distribution of ε={first['epsilon']:g} (red: its architecture)"
        metric = _front_metric(strategy)
        plots.plot_complexity(rows, out / 'complexity.png', title=f'{cfg.name}: loss vs {metric}', metric=metric,
                              background=_front_background(parts, metric))
        for r in rows:
            loss = f", val loss {r['val_loss']:.4f}" if r.get('val_loss') is not None else ''
            measured = f", {metric} {r[metric]:.4g}" if metric != 'params' and r.get(metric) is not None else ''
            log(f"  ε={r['epsilon']:g}: {r['params']:,} parameters{measured}{loss}")
    else:
        with quiet_warnings():
            architecture = exp.export_top_models(formatter='dict')[0]
        extra = {}
        if strategy_e.name in ('advantage_nas', 'reinforce'):
            extra['exports'] = {mode: strategy.export_architectures(mode) for mode in ('argmax', 'process_best')}
        budget = strategy.budget_report() if hasattr(strategy, 'budget_report') else []
        if budget:
            extra['budget'] = budget[0]
            log(f"  within budget: {budget[0]['metric']} measured {budget[0]['measured']:.6g} <= {budget[0]['max']:g}")
        arch_file = write_json(out / 'architecture.json', _arch_document(cfg, architecture=architecture, **extra))
        architectures = [architecture]
        chosen = architecture

    plots.plot_history(history, out / 'history.png', title=f'{cfg.name}: distribution per epoch')
    plots.plot_distribution(probabilities, out / 'distribution.png', chosen=chosen, title=distribution_title)
    if parts.space_entry.task == 'inpainting':
        _search_picture(cfg, parts, architectures[0], out / 'inpainting.png')
    log(f'search done in {wall:.0f} s; architecture written to {arch_file}')
    return SearchResult(out, architectures, arch_file, wall)


def _examples(loader, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``count`` (masked, clean) images of an inpainting loader."""
    masked, clean = [], []
    for batch in loader:
        masked.append(batch[0])
        clean.append(batch[1])
        if sum(len(m) for m in masked) >= count:
            break
    return torch.cat(masked)[:count], torch.cat(clean)[:count]


def _search_picture(cfg: ExperimentConfig, parts: assembly.SearchParts, architecture: dict[str, Any],
                    path: Path) -> None:
    """``inpainting.png`` of a search: the first test images (the retraining's, with their fixed masks) through the
    exported architecture (the first of several) with the supernet's weights."""
    try:
        masked, clean = _examples(assembly.retrain_data(cfg, cfg.seed).val, PICTURE_EXAMPLES)
        with supernet_evaluation(parts.strategy.oneshot_module, architecture) as network:
            restored = network.restore(masked.to(next(network.parameters()).device)).cpu()
            data_range = float(network.data_range)
        plots.plot_inpainting(masked, restored, clean, path, data_range=data_range,
                              title=f'{cfg.name}\nexported architecture, supernet weights')
    except Exception as err:  # noqa: BLE001 - a picture is a bonus; never lose the search results for it
        _logger.warning('could not draw %s: %s: %s', path.name, type(err).__name__, err)


def _retrain_picture(module, loader, path: Path, title: str) -> None:
    """``inpainting.png`` of a retraining: the first test images through the retrained network."""
    try:
        masked, clean = _examples(loader, PICTURE_EXAMPLES)
        training = module.training
        module.eval()
        try:
            restored = module.restore(masked.to(module.device)).cpu()
        finally:
            module.train(training)
        plots.plot_inpainting(masked, restored, clean, path, data_range=float(module.data_range), title=title)
    except Exception as err:  # noqa: BLE001 - a picture is a bonus; never lose the retraining's results for it
        _logger.warning('could not draw %s: %s: %s', path.name, type(err).__name__, err)


def _multi_complexity_rows(parts: assembly.SearchParts) -> list[dict[str, Any]]:
    """Per ε: architecture, exact parameter count of its fixed network, predicted count and the validation
    loss of the trained supernet on a few D_θ batches; smallest network first."""
    strategy, data = parts.strategy, parts.data
    results = strategy.results()
    metric = _front_metric(strategy)
    losses = _supernet_losses(strategy, [r['architecture'] for r in results], data.val,
                              parts.settings.evaluate_batches)
    budget = {_arch_key(r['architecture']): r for r in strategy.budget_report()}
    rows = []
    for r, loss in zip(results, losses):
        arch = r['architecture']
        with quiet_warnings():
            params = count_parameters(parts.space_entry.build_fixed(arch, parts.space_args, data.info))
            row = {'epsilon': r['epsilon'], 'params': params, f'predicted_{metric}': r.get(metric),
                   'val_loss': loss, 'architecture': arch}
            if metric != 'params':               # measured on the search space's network, as the table was
                row[metric] = strategy.complexity_table.measure(parts.space, arch)
        if _arch_key(arch) in budget:
            row['budget'] = budget[_arch_key(arch)]
        rows.append(row)
    rows.sort(key=lambda row: (row[metric], row['epsilon']))
    return rows


def _arch_key(arch: dict[str, Any]) -> str:
    return json.dumps(arch, sort_keys=True, default=str)


def _front_metric(strategy) -> str:
    table = getattr(strategy, 'complexity_table', None)
    return table.metric if table is not None else 'params'


FRONT_BACKGROUND = 24
"""Random architectures drawn beside the N exports of a multi-complexity search, for its front plot."""


def _front_background(parts: assembly.SearchParts, metric: str) -> list[dict[str, float]]:
    """(predicted complexity, supernet validation loss) of :data:`FRONT_BACKGROUND` uniformly drawn architectures:
    the cloud the front of ``complexity.png`` is drawn over."""
    strategy = parts.strategy
    table, encoding = strategy.complexity_table, strategy.encoding
    try:
        rows = encoding.distribution().sample(FRONT_BACKGROUND, np.random.default_rng(0))
        archs = [encoding.to_architecture(r) for r in rows]
        losses = _supernet_losses(strategy, archs, parts.data.val, parts.settings.evaluate_batches)
        return [{metric: table.predict(a), 'val_loss': v} for a, v in zip(archs, losses) if v is not None]
    except Exception as err:   # noqa: BLE001 - the plot's background is a bonus
        _logger.warning('could not evaluate random architectures for the front plot: %s', err)
        return []


@torch.no_grad()
def _supernet_losses(strategy, architectures, loader, batches: int) -> list[float | None]:
    """Mean loss of each architecture on the first ``batches`` D_θ batches, with the supernet's weights."""
    module = strategy.oneshot_module
    if not hasattr(module, 'activate'):
        return [None] * len(architectures)
    training = module.training_module
    device = next(module.parameters()).device
    collected = []
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        collected.append(tuple(t.to(device) for t in batch))
    losses = []
    saved_log = training.__dict__.get('log')
    training.log = lambda *a, **k: None
    try:
        for arch in architectures:
            module.activate(arch)
            values = []
            for j, batch in enumerate(collected):
                out = training.training_step(batch, j)
                values.append(float(out['loss'] if isinstance(out, dict) else out))
            losses.append(sum(values) / len(values) if values else None)
    except Exception as err:   # the plot is a bonus; never lose the search results for it
        _logger.warning('could not evaluate the multi-complexity architectures: %s', err)
        return [None] * len(architectures)
    finally:
        if saved_log is None:
            training.__dict__.pop('log', None)
        else:
            training.log = saved_log
    return losses


# ---------------------------------------------------------------------------------------------- retrain
def load_architectures(path: str | os.PathLike, cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """The architecture(s) in an ``architecture.json`` / ``architectures.json`` (or a bare ``{label: value}``)."""
    path = Path(path)
    if not path.is_file():
        raise ArchitectureFileError(f'architecture file {path} does not exist')
    try:
        doc = read_json(path)
    except (ValueError, UnicodeDecodeError) as err:
        raise ArchitectureFileError(f'{path}: not valid JSON ({err})') from None
    if not isinstance(doc, dict):
        raise ArchitectureFileError(f'{path}: expected a JSON object, got {type(doc).__name__}')
    space = doc.get('space')
    if space is not None and space_entry(space).name != space_entry(cfg.space.name).name:
        raise ArchitectureFileError(f'{path} holds an architecture of space {space!r}, but the config searches space '
                                    f'{cfg.space.name!r}')
    if 'architectures' in doc:
        archs = [row.get('architecture') if isinstance(row, dict) else None for row in doc['architectures']]
    elif 'architecture' in doc:
        archs = [doc['architecture']]
    else:
        archs = [doc]
    for i, arch in enumerate(archs):
        if not isinstance(arch, dict) or not arch:
            raise ArchitectureFileError(f'{path}: architecture {i} is not a {{label: value}} object')
    return archs


def _select(archs: list[dict], index: int | None, path) -> tuple[dict, int]:
    if index is None:
        if len(archs) > 1:
            raise ArchitectureFileError(f'{path} holds {len(archs)} architectures; choose one with --index 0..'
                                        f'{len(archs) - 1}')
        index = 0
    if not 0 <= index < len(archs):
        raise ArchitectureFileError(f'--index {index}: {path} holds {len(archs)} architecture(s) (0..{len(archs) - 1})')
    return archs[index], index


def run_retrain(cfg: ExperimentConfig, arch_path: str | os.PathLike, *, seed: int | None = None,
                index: int | None = None, output: str | os.PathLike | None = None, overwrite: bool = False,
                log: Log = print, report_to_nni: bool = False) -> RetrainResult:
    """Train the fixed network of an exported architecture with the ``retrain`` settings."""
    seed = cfg.retrain.seeds[0] if seed is None else seed
    archs = load_architectures(arch_path, cfg)
    arch, index = _select(archs, index, arch_path)
    if output is None:
        output = cfg.output_dir / (f'retrain_seed{seed}' if len(archs) == 1 else f'retrain_arch{index}_seed{seed}')
    check_output(output, overwrite=overwrite, what='retraining results')

    parts = assembly.build_retrain(cfg, arch, seed, source=arch_path, log=log)
    data, device, params = parts.data, parts.device, parts.params
    metric, extra = tasks.report_metric(parts.space_entry)
    log(f'retrain: {cfg.space.name} architecture {index} of {arch_path} ({params:,} parameters), seed {seed}, '
        f'{cfg.retrain.epochs} epoch(s) on {data.sizes[0]} training images, {device}')

    out = prepare_output(output, overwrite=overwrite, what='retraining results')
    reporter = tasks.report_callback(parts.space_entry)
    logger = CSVLogger(save_dir=str(out), name='logs', version='')
    record: dict[str, Any] = {'name': cfg.name, 'command': 'retrain', 'status': 'running', 'space': cfg.space.name,
                              'space_args': parts.space_args, 'architecture_file': str(arch_path), 'index': index,
                              'architecture': arch, 'seed': seed, 'params': params, 'device': device,
                              'train_size': data.sizes[0], 'test_size': data.sizes[1],
                              'config': cfg.model_dump(mode='json'), 'versions': versions()}
    write_json(out / 'retrain.json', record)
    started = time.time()
    try:
        with quiet_warnings():
            trainer = assembly.fit_retrain(parts, callbacks=[reporter], logger=logger, default_root_dir=str(out))
            last = reporter.reported[-1] if reporter.reported else None
            if last is None or last['epoch'] != trainer.current_epoch - 1 or trainer.interrupted:
                trainer.validate(trainer.lightning_module, data.val, verbose=False)   # evaluate the final weights
    except BaseException as err:
        record.update(status='interrupted' if isinstance(err, KeyboardInterrupt) else 'failed',
                      error=f'{type(err).__name__}: {err}', wall_time_s=time.time() - started,
                      history=reporter.reported)
        write_json(out / 'retrain.json', record)
        raise
    if trainer.interrupted:
        record.update(status='interrupted', wall_time_s=time.time() - started, history=reporter.reported)
        write_json(out / 'retrain.json', record)
        raise KeyboardInterrupt
    wall = time.time() - started
    final = {k[len('val_'):]: float(v) for k, v in trainer.callback_metrics.items()
             if k.startswith('val_') and v.numel() == 1}
    if metric not in final or not math.isfinite(final[metric]):
        raise RuntimeError(f'retraining produced no finite test {metric} (metrics: {final})')
    if parts.space_entry.task == 'inpainting':
        ssim = f', SSIM {final["ssim"]:.3f}' if 'ssim' in final else ''
        _retrain_picture(trainer.lightning_module, data.val, out / 'inpainting.png',
                         f'{cfg.name}, retrained (seed {seed})\ntest PSNR {final[metric]:.2f} dB{ssim}')
    record.update(status='done', wall_time_s=wall, test_metric=metric, test=final, history=reporter.reported,
                  accelerator=tasks.accelerator_info(device))
    write_json(out / 'retrain.json', record)
    if report_to_nni:
        nni.report_final_result({'default': final[metric], **{m: final[m] for m in extra if m in final},
                                 'params': params})
    return RetrainResult(out, metric, final[metric], final, params, wall)


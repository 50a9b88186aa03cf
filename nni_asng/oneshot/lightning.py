"""The Lightning module shared by all nni-asng strategies.

Each training step receives ``{'train': D_x batch, 'val': D_θ batch}`` (the split of
asng-nas §3.2 / pdas §2) and does what the searcher's phase asks for:

1. weight step: for each architecture the searcher gives, activate it in NNI's path-sampling
   supernet (only that path runs) and back-propagate loss/λ; then one optimizer step with the
   mean gradient (asng-nas Eq. 9);
2. architecture step: the searcher evaluates architectures on the D_θ batch through a
   :class:`BatchEvaluator` — losses under ``no_grad`` (ASNG, PDAS, REINFORCE) or one backward
   pass for the per-label credits of AdvantageNAS (Eq. 7) — and updates its distribution.
"""
from __future__ import annotations

import contextlib
import logging
import math
import random
import warnings
from typing import Any

import numpy as np
import torch
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule

from .checkpoint import from_checkpoint, to_checkpoint
from .encoding import SearchSpaceEncoding
from .gated import CreditGatedMixin
from .gates import CreditGates
from .searcher import ArchitectureSearcher

_logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss stayed NaN/inf: the search cannot continue."""


class ProbabilisticOneShotModule(BaseOneShotLightningModule):
    """Search loop of every nni-asng strategy (see module docstring).

    Parameters
    ----------
    training_module
        The evaluator's Lightning module (its ``training_step`` must return the loss).
    searcher
        The algorithm (ASNG, PDAS, AdvantageNAS, ...).
    gradient_clip_val
        Clip the weight gradient norm before each weight step (asng-nas §3.3 uses 5).
    log_every_n_steps
        How often the distribution's summary and argmax architecture are logged.
    max_nonfinite_steps
        Consecutive NaN/inf training losses tolerated (the weight step is skipped) before the
        search stops with an error.
    """

    def __init__(self, training_module, searcher: ArchitectureSearcher, *,
                 gradient_clip_val: float | None = None, log_every_n_steps: int = 10,
                 max_nonfinite_steps: int = 20):
        super().__init__(training_module)
        self.searcher = searcher
        self.encoding: SearchSpaceEncoding = searcher.encoding
        self.gradient_clip_val = gradient_clip_val
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        self.max_nonfinite_steps = int(max_nonfinite_steps)
        self.gates = CreditGates()
        self._supernet: list | None = None
        self.history: list[dict[str, Any]] = []
        self._nonfinite_in_a_row = 0
        self._warned_nonfinite = False
        self._clip_pending = False
        self._warned_clip = False
        self.rank_digests: list[str] = []
        self.rank_export_digests: list[str] = []

    # ------------------------------------------------------------------ the step
    def training_step(self, batch, batch_idx):
        if not isinstance(batch, dict) or 'train' not in batch or 'val' not in batch:
            raise TypeError('expected a combined batch {"train": ..., "val": ...}; run this module through an '
                            'nni-asng strategy, which builds that loader from the evaluator\'s train and val loaders')
        epoch = self.trainer.current_epoch
        phase = self.searcher.phase(epoch, self.trainer.fit_loop.total_batch_idx)
        output = None
        if phase.train_weights:
            output = self._weight_step(batch['train'], batch_idx, self.searcher.weight_architectures(epoch))
        if phase.train_architecture:
            logged = self.searcher.architecture_step(_SupernetEvaluator(self, batch['val'], batch_idx))
            self.log_dict({f'arch/{k}': float(v) for k, v in logged.items()})
        if phase.train_weights:                   # the weights' schedule only counts weight steps
            self.advance_lr_schedulers(batch_idx)
        if batch_idx % self.log_every_n_steps == 0:
            self._log_distribution()
        if self.trainer.is_last_batch:
            # Recorded here rather than in on_train_epoch_end: checkpoint callbacks run before that
            # hook, and the epoch's record must be inside the checkpoint written at its end.
            self._record_epoch()
        return output

    def _weight_step(self, batch, batch_idx: int, rows: np.ndarray):
        optimizer = self._weight_optimizer()
        self.training_module.optimizer_zero_grad(self.trainer.current_epoch, batch_idx, optimizer)
        local, scale = self.share_of(rows)
        output, finite, loss = None, None, torch.tensor(float('nan'))
        for i, row in enumerate(local):
            self.activate(self.encoding.to_architecture(row))
            output = self.training_module.training_step(batch, batch_idx)
            loss = output['loss'] if isinstance(output, dict) else output
            # A flag on the device: reading each path's loss on the host would wait for the device λ times.
            ok = torch.isfinite(loss.detach()).all()
            finite = ok if finite is None else finite & ok
            # Every rank must run its backward passes (DDP synchronises the last one), NaN or not.
            with self._backward_sync(last=i == len(local) - 1):
                self.manual_backward(loss * scale)
        # The weight step's one device->host read: whether to apply it (NaN/inf semantics below).
        if not self.trainer.strategy.reduce_boolean_decision(True if finite is None else bool(finite), all=True):
            self._skip_nonfinite_weight_step(optimizer, batch_idx, float(loss.detach().float()))
            return output
        self._nonfinite_in_a_row = 0
        # Clipping runs in on_before_optimizer_step, i.e. after mixed precision's gradient unscaling.
        self._clip_pending = self.gradient_clip_val is not None
        try:
            self.training_module.optimizer_step(self.trainer.current_epoch, batch_idx, optimizer)
        finally:
            missed, self._clip_pending = self._clip_pending, False
        if missed and not self._warned_clip:
            warnings.warn('gradient_clip_val is set but the weight step did not go through Lightning\'s precision '
                          'plugin (does the evaluator override optimizer_step?): its gradients were not clipped',
                          RuntimeWarning)
            self._warned_clip = True
        return output

    def on_before_optimizer_step(self, optimizer) -> None:
        """Clip the weight gradients of the step being taken (the precision plugin calls this hook after it
        unscaled 16-mixed gradients, right before ``optimizer.step``; for 32/bf16 it is the same point)."""
        if getattr(self, '_clip_pending', False):
            self._clip_pending = False
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm='norm')

    def _skip_nonfinite_weight_step(self, optimizer, batch_idx: int, loss: float) -> None:
        self.training_module.optimizer_zero_grad(self.trainer.current_epoch, batch_idx, optimizer)
        self._nonfinite_in_a_row += 1
        if not self._warned_nonfinite:
            warnings.warn(f'training loss is {loss}; this weight step is skipped (warned once; the search stops after '
                          f'{self.max_nonfinite_steps} such steps in a row)', RuntimeWarning)
            self._warned_nonfinite = True
        if self._nonfinite_in_a_row >= self.max_nonfinite_steps:
            raise NonFiniteLossError(
                f'the training loss was NaN/inf for {self._nonfinite_in_a_row} steps in a row (last: {loss}); '
                'lower the learning rate, enable gradient clipping (gradient_clip_val) or check the data. '
                'The last checkpoint and the architecture history are kept.')

    def share_of(self, rows: np.ndarray) -> tuple[np.ndarray, float]:
        """This rank's architectures for the weight step and the loss scale that makes DDP's gradient
        average equal the mean over all λ (asng-nas Eq. 9; λ = #GPUs parallelises it, §2.3)."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if world > 1 and len(rows) >= world:
            return rows[rank::world], world / len(rows)
        return rows, 1.0 / len(rows)

    def _backward_sync(self, last: bool):
        block = getattr(self.trainer.strategy, 'block_backward_sync', None)
        return contextlib.nullcontext() if last or block is None else block()

    def _weight_optimizer(self):
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        weight = [o for o in optimizers if not getattr(o, 'is_arch_optimizer', False)]
        if len(weight) != 1:
            raise ValueError(f'the evaluator must configure exactly one optimizer, found {len(weight)}')
        if not self.training_module.automatic_optimization:
            raise ValueError('evaluator modules with manual optimization are not supported by one-shot strategies')
        return weight[0]

    # ------------------------------------------------------------------ supernet control
    def activate(self, arch: dict[str, Any]) -> None:
        """Make every path-sampling supermodule run the path of ``arch``."""
        for module in self._supernet if self._supernet is not None else self.supernet_modules():
            module.resample(memo=arch)

    @contextlib.contextmanager
    def quiet(self):
        """Run the evaluator's ``training_step`` without it logging (θ-step evaluations)."""
        module = self.training_module
        saved = module.__dict__.get('log')
        module.log = _ignore
        try:
            yield
        finally:
            if saved is None:
                del module.log
            else:
                module.log = saved

    # ------------------------------------------------------------------ export
    def export(self) -> dict[str, Any]:
        return self.searcher.export()[0]

    def export_all(self) -> list[dict[str, Any]]:
        return self.searcher.export()

    def export_probs(self) -> dict[str, dict[str, float]]:
        return self.searcher.probabilities()

    def resample(self) -> dict[str, Any]:
        """Activate (and return) one architecture of the searcher, e.g. for validation."""
        arch = self.encoding.to_architecture(self.searcher.weight_architectures(self.current_epoch_or_zero)[0])
        self.activate(arch)
        return arch

    @property
    def weight_training_steps(self) -> int | None:
        """Steps that train the weights (evaluators size their lr schedule with it; MultiComplexity's
        θ-only stage does not count)."""
        total, epochs = self.trainer.estimated_stepping_batches, self.trainer.max_epochs
        if not (math.isfinite(total) and epochs and epochs > 0):
            return None
        return max(1, int(round(total * self.searcher.weight_training_epochs(epochs) / epochs)))

    @property
    def current_epoch_or_zero(self) -> int:
        return self.trainer.current_epoch if self._trainer is not None else 0

    # ------------------------------------------------------------------ logging, history, checkpoints
    def _log_distribution(self) -> None:
        summary = self.searcher.summary()
        self.log_dict({f'arch/{k}': v for k, v in summary.items()},
                      prog_bar=True)
        argmax = self.searcher.most_likely_rows()[0]
        self.log_dict({f'arch/argmax/{label}': float(v) for label, v in zip(self.encoding.labels, argmax)})

    def on_fit_start(self):
        # NNI hands the supernet to the evaluator's module only now: cache the supermodules that have
        # something to resample (activated 2λ times per step; NNI's hub spaces wrap every convolution in a
        # mixed operation, mostly over fixed arguments) and bind the credit gates.
        self._supernet = []
        for module in self.supernet_modules():
            if module.simplify():
                self._supernet.append(module)
            else:
                module.resample(memo={})          # nothing to choose: one resample sets them up for good
            if isinstance(module, CreditGatedMixin):
                module.bind_gates(self.gates)
        ungated = [label for label in self.encoding.labels if label not in self.gates.labels]
        if getattr(self.searcher, 'uses_credits', False) and ungated:
            warnings.warn(f'no credit gate could be placed for label(s) {ungated} (only LayerChoice, InputChoice and '
                          'NNI Cell choices are gated); they are updated with the REINFORCE credit r - b instead',
                          RuntimeWarning)
        if self.trainer.world_size > 1:
            ddp_kwargs = getattr(self.trainer.strategy, '_ddp_kwargs', {}) or {}
            if not ddp_kwargs.get('find_unused_parameters', False):
                raise ValueError('multi-process search samples different paths on different ranks: use '
                                 "Trainer(strategy='ddp_find_unused_parameters_true') in the evaluator")
            # Every rank must sample the same architectures and make the same θ update.
            self.searcher.load_state_dict(self.trainer.strategy.broadcast(self.searcher.state_dict(), src=0))
        return super().on_fit_start()

    def on_fit_end(self):
        # NNI's evaluators report their last train/val metric at fit end. A run that only updates θ
        # (MultiComplexity's second stage, or a resume into it) never logged one: skip that report.
        try:
            return super().on_fit_end()
        except KeyError as missing:
            if not str(missing).strip("'").startswith(('train_', 'val_')):
                raise
            _logger.warning('the evaluator could not report metric %s at the end of the search: no weight step '
                            'logged it in this run (architecture-only stage); the report is skipped', missing)
            return None

    def on_train_end(self):
        # Every rank (on every node) must end with the same distribution and export the same architecture(s):
        # compare digests of the search state and of the export.
        self.rank_digests = [state_digest(self.searcher.state_dict())]
        self.rank_export_digests = [export_digest(self.searcher.export())]
        if self.trainer.world_size > 1:
            local = torch.tensor(list(bytes.fromhex(self.rank_digests[0] + self.rank_export_digests[0])),
                                 dtype=torch.int64, device=next(self.parameters()).device)
            gathered = self.trainer.strategy.all_gather(local).reshape(self.trainer.world_size, -1).cpu()
            rows = [bytes(row.tolist()).hex() for row in gathered]
            self.rank_digests, self.rank_export_digests = [r[:64] for r in rows], [r[64:] for r in rows]
            if len(set(self.rank_digests)) != 1 or len(set(self.rank_export_digests)) != 1:
                raise RuntimeError(f'the ranks ended the search with different distributions or exports (search-state '
                                   f'digests {self.rank_digests}, export digests {self.rank_export_digests}); this is '
                                   'a bug in the multi-process search')
        return super().on_train_end()

    def on_train_start(self):
        _restore_loader_positions(self.trainer)
        total = self.trainer.estimated_stepping_batches
        per_epoch = self.trainer.num_training_batches
        self.searcher.start(int(total) if math.isfinite(total) else None,
                            int(per_epoch) if math.isfinite(per_epoch) else None)
        return super().on_train_start()

    def _record_epoch(self) -> None:
        record = {'epoch': int(self.trainer.current_epoch), 'step': int(self.trainer.global_step),
                  **self.searcher.summary(), 'architectures': self.searcher.export()}
        self.history.append(record)
        _logger.info('epoch %d: %s', record['epoch'], {k: v for k, v in record.items() if k != 'architectures'})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Search state, history and every RNG state, so a resumed search repeats the same trajectory."""
        rng = {'torch': torch.get_rng_state(), 'numpy': np.random.get_state(), 'python': random.getstate()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['nni_asng'] = to_checkpoint({'searcher': self.searcher.state_dict(), 'history': self.history,
                                                'rng': rng})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = from_checkpoint(checkpoint.get('nni_asng'))
        if state is None:
            raise KeyError('this checkpoint has no nni-asng search state (was it written by an nni-asng strategy?)')
        self.searcher.load_state_dict(state['searcher'])
        self.history = list(state['history'])
        rng = state.get('rng', {})
        if 'torch' in rng:
            torch.set_rng_state(rng['torch'])
            np.random.set_state(tuple(rng['numpy']))
            random.setstate(_as_tuples(rng['python']))
        if 'cuda' in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng['cuda'])


def _ignore(*args, **kwargs) -> None:
    return None


def _restore_loader_positions(trainer) -> None:
    """Give stateful data loaders the positions saved in the checkpoint being resumed.

    Lightning 2.x drops them when the training loaders were set up before the checkpoint's loop
    state was restored, which ``trainer.estimated_stepping_batches`` in ``configure_optimizers``
    (the evaluators' cosine schedule) does: the fit loop's later ``setup_data`` returns early and
    never loads the pending states (Lightning-AI/pytorch-lightning#20550). A search resumed from a
    mid-epoch checkpoint would then restart the epoch's data order. Here, before the first batch
    is drawn, the pending states are loaded; a no-op when Lightning has loaded them itself.
    """
    loop = trainer.fit_loop
    if getattr(loop, '_combined_loader_states_to_load', None) and hasattr(loop, '_load_combined_loader_states'):
        loop._load_combined_loader_states()


def export_digest(architectures: list[dict[str, Any]]) -> str:
    """SHA-256 of a searcher's exported architectures (in its order) as canonical JSON, keys sorted: for a search
    that exports one, the digest of ``[architecture]`` of the ``architecture.json`` it writes."""
    import hashlib
    import json
    text = json.dumps(architectures, sort_keys=True, default=lambda v: v.item() if hasattr(v, 'item') else str(v))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def state_digest(state: Any) -> str:
    """SHA-256 of a search state (nested dicts/lists of arrays and scalars), independent of dict order."""
    import hashlib
    digest = hashlib.sha256()

    def feed(obj) -> None:
        if isinstance(obj, dict):
            digest.update(b'{')
            for key in sorted(obj, key=str):
                digest.update(repr(key).encode())
                feed(obj[key])
            digest.update(b'}')
        elif isinstance(obj, (list, tuple)):
            digest.update(b'[')
            for item in obj:
                feed(item)
            digest.update(b']')
        elif isinstance(obj, torch.Tensor):
            feed(obj.detach().cpu().numpy())
        elif isinstance(obj, np.ndarray):
            digest.update(f'{obj.dtype.str}{obj.shape}'.encode())
            digest.update(np.ascontiguousarray(obj).tobytes())
        else:
            digest.update(repr(obj).encode())

    feed(state)
    return digest.hexdigest()


def _full_precision(value: torch.Tensor) -> torch.Tensor:
    """A detached scalar, cast to float32 when mixed precision produced it in bf16/fp16 (θ never learns
    from half-precision numbers: ties and rounding would decide ASNG's ranking)."""
    value = value.detach().reshape(())
    return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value


def _as_tuples(obj):
    '''random.setstate needs the nested tuples random.getstate gave (lists after some round trips).'''
    return tuple(_as_tuples(v) for v in obj) if isinstance(obj, (list, tuple)) else obj


class _SupernetEvaluator:
    """:class:`~.searcher.BatchEvaluator` over one D_θ batch of a :class:`ProbabilisticOneShotModule`."""

    def __init__(self, module: ProbabilisticOneShotModule, batch, batch_idx: int):
        self.module = module
        self.batch = batch
        self.batch_idx = batch_idx

    def _loss(self) -> torch.Tensor:
        output = self.module.training_module.training_step(self.batch, self.batch_idx)
        return output['loss'] if isinstance(output, dict) else output

    def _evaluate(self, rows: np.ndarray) -> torch.Tensor:
        """Losses of ``rows`` as one tensor on the module's device, at least float32 (mixed precision may
        compute them in bf16/fp16: the θ update gets float32 values). Nothing is read on the host here."""
        values = []
        with torch.no_grad(), self.module.quiet():
            for row in rows:
                self.module.activate(self.module.encoding.to_architecture(row))
                values.append(_full_precision(self._loss()))
        if not values:
            return torch.zeros(0, device=next(self.module.parameters()).device)
        return torch.stack(values)

    def losses(self, rows: np.ndarray) -> np.ndarray:
        """Loss of every row; with several ranks each evaluates its share on its own D_θ shard and
        the losses are all-gathered, so every rank tells the optimizer the same λ values.
        One device->host transfer for all λ losses."""
        module = self.module
        world, rank = module.trainer.world_size, module.trainer.global_rank
        if world == 1:
            return self._evaluate(rows).cpu().numpy().astype(np.float64)
        device = next(module.parameters()).device
        if len(rows) < world:            # too few rows to share: average each row's loss over the ranks
            local = self._evaluate(rows).to(device=device, dtype=torch.float64)
            return module.trainer.strategy.reduce(local, reduce_op='mean').cpu().numpy()
        per_rank = -(-len(rows) // world)
        mine = self._evaluate(rows[rank::world])
        padded = torch.full((per_rank,), float('nan'), dtype=torch.float64, device=device)
        padded[:len(mine)] = mine.to(device=device, dtype=torch.float64)
        gathered = module.all_gather(padded).reshape(world, per_rank).cpu().numpy()
        out = np.empty(len(rows))
        for r in range(world):
            count = len(range(r, len(rows), world))
            out[r::world] = gathered[r, :count]
        return out

    def credits(self, row: np.ndarray) -> tuple[float, dict[str, float]]:
        module = self.module
        arch = module.encoding.to_architecture(row)
        module.activate(arch)
        device = next(module.parameters()).device
        with module.gates.open(arch, device) as gates, module.quiet():
            loss = self._loss()
            tensors = list(gates.values())
            # Differentiated whatever the loss: asking the host whether it is finite would wait for the device.
            # A NaN/inf loss gets zero credits below, and still goes through the reduction (no rank left waiting).
            grads = torch.autograd.grad(loss, tensors, allow_unused=True) if tensors else []
        labels = list(gates)
        loss = _full_precision(loss)
        finite = torch.isfinite(loss)
        zero = torch.zeros((), device=loss.device)
        credits = [torch.where(finite, -_full_precision(g), zero) if g is not None else zero for g in grads]
        values = torch.stack([loss, *credits]).to(device=device, dtype=torch.float64)
        if module.trainer.world_size > 1:      # same row on every rank: average loss and credits over shards
            values = module.trainer.strategy.reduce(values, reduce_op='mean')
        values = values.cpu().numpy().tolist()        # the θ step's one device->host transfer
        return values[0], dict(zip(labels, values[1:]))

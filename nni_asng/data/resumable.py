"""A DataLoader that a checkpoint can stop and continue in the middle of an epoch.

Lightning restarts a plain DataLoader from its first batch when a run resumes from a mid-epoch
checkpoint, and a ``RandomSampler`` draws its permutation from torch's global RNG at every
``iter()``, so the resumed run sees other batches than the uninterrupted one. Lightning's
``CombinedLoader`` saves and restores the state of every loader that implements
``state_dict()`` / ``load_state_dict()`` (``FitLoop.on_save_checkpoint`` and
``FitLoop._load_combined_loader_states``); :class:`ResumableDataLoader` implements them:

* its :class:`ResumableSampler` draws the order of every pass over the data from
  ``(seed, epoch, pass within the epoch)`` only — never from a global RNG. ``epoch`` is what
  Lightning passes to ``sampler.set_epoch`` at every epoch start; the pass counter counts the
  re-iterations of a shorter loader inside one epoch (``CombinedLoader`` mode ``max_size_cycle``);
* ``state_dict()`` is ``{epoch, pass, batches}``: the next batch to deliver. After
  ``load_state_dict``, the next ``iter()`` continues that pass at that batch, skipping the
  delivered batches by index (nothing is read or transformed for them, so no RNG is consumed);
* the pass is chosen when the first batch is requested, not at ``iter()`` (Lightning calls
  ``iter()`` before ``set_epoch`` when it sets up or resumes a fit).

Augmentation: the transforms draw from torch's global CPU generator. Restoring that generator
from the checkpoint is not enough: Lightning fetches one batch ahead, so the state saved after step
``k`` already holds the draws of batch ``k + 1``, and ``iter()`` draws a base seed from it. So with
``num_workers=0`` every batch is fetched (and every ``iter()`` made) under a private CPU generator
seeded from ``(seed, rank, epoch, pass, batch)``; the global generator is left as it was. The
augmentation of a batch is then a function of its position only, and a resumed search sees
bit-identical batches. With worker processes the *order* is still exact, but the workers' RNG
streams start at each ``iter()``, so the augmentation of a resumed epoch differs.

Under DDP the sampler shards every pass like ``DistributedSampler`` (it is one, so Lightning keeps
it): the permutation is padded to a multiple of the world size and rank ``r`` takes every
``world``-th index starting at ``r``.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Optional, Sequence, Union

import nni
import numpy as np
import torch
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset, DistributedSampler, Sampler

__all__ = ['ResumableDataLoader', 'ResumableSampler']

_STATE_VERSION = 1


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def _seed_entropy(seed: Union[int, Sequence[int]]) -> list[int]:
    values = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in values):
        raise ValueError(f'seed must be a non-negative integer or a sequence of them, got {seed!r}')
    return [int(v) for v in values]


class ResumableSampler(DistributedSampler):
    """Indices of one pass: a permutation drawn from ``(seed, epoch, pass)``, this rank's shard of it.

    A ``DistributedSampler`` (so Lightning does not replace it under DDP), but usable without
    ``torch.distributed``: the world size and rank are read when a pass begins (1 and 0 when no
    process group is initialised), unless given.
    """

    def __init__(self, length: int, *, shuffle: bool = True, seed: Union[int, Sequence[int]] = 0,
                 num_replicas: Optional[int] = None, rank: Optional[int] = None):
        Sampler.__init__(self)       # not DistributedSampler.__init__: it needs a process group
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f'length must be a non-negative integer, got {length!r}')
        if (num_replicas is None) != (rank is None):
            raise ValueError('give both num_replicas and rank, or neither')
        if num_replicas is not None and not 0 <= rank < num_replicas:
            raise ValueError(f'rank must lie in 0..{num_replicas - 1}, got {rank}')
        self.length = int(length)
        self.shuffle = bool(shuffle)
        self._entropy = _seed_entropy(seed)
        self.seed = seed
        self._fixed_world = None if num_replicas is None else (int(num_replicas), int(rank))
        self.drop_last = False
        self.epoch = 0
        self._next_pass = 0                                  # passes begun in this epoch
        self._resume: Optional[tuple[int, int, int]] = None  # (epoch, pass, first sample) to continue
        self._planned: Optional[tuple[int, int, int]] = None  # chosen by begin_pass, used by __iter__
        self.current: Optional[tuple[int, int]] = None        # (epoch, pass) being delivered

    # DistributedSampler's attributes, resolved when read
    @property
    def num_replicas(self) -> int:
        return (self._fixed_world or _world())[0]

    @property
    def rank(self) -> int:
        return (self._fixed_world or _world())[1]

    @property
    def num_samples(self) -> int:
        return math.ceil(self.length / self.num_replicas) if self.length else 0

    @property
    def total_size(self) -> int:
        return self.num_samples * self.num_replicas

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start; a new epoch starts its passes at 0."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch, self._next_pass = epoch, 0
            if self._resume is not None and self._resume[0] != epoch:
                self._resume = None          # the checkpointed pass belonged to an earlier epoch

    def order(self, epoch: int, pass_index: int) -> np.ndarray:
        """This rank's indices of pass ``pass_index`` of ``epoch`` (a pure function of the seed)."""
        n, world, rank = self.length, self.num_replicas, self.rank
        if self.shuffle:
            rng = np.random.default_rng(self._entropy + [int(epoch), int(pass_index)])
            indices = rng.permutation(n)
        else:
            indices = np.arange(n)
        if world > 1 and n:
            pad = self.total_size - n
            if pad:
                indices = np.concatenate([indices, np.resize(indices, pad)])
            indices = indices[rank::world]
        return indices

    def begin_pass(self) -> int:
        """Choose the pass the next ``__iter__`` delivers; returns its first sample (0 unless resuming)."""
        if self._resume is not None:
            epoch, pass_index, start = self._resume
            self._resume = None
        else:
            epoch, pass_index, start = self.epoch, self._next_pass, 0
        self.epoch, self._next_pass = epoch, pass_index + 1
        self._planned = (epoch, pass_index, start)
        self.current = (epoch, pass_index)
        return start

    def resume_at(self, epoch: int, pass_index: int, start: int) -> None:
        """Make the next pass continue pass ``pass_index`` of ``epoch`` at sample ``start`` of this shard."""
        if start >= self.num_samples:            # that pass was complete: the next one follows
            pass_index, start = pass_index + 1, 0
        self.epoch, self._next_pass = int(epoch), int(pass_index)
        self._resume = (int(epoch), int(pass_index), int(start))

    def __iter__(self) -> Iterator[int]:
        if self._planned is None:
            self.begin_pass()
        epoch, pass_index, start = self._planned
        self._planned = None
        return iter(self.order(epoch, pass_index)[start:].tolist())

    def __repr__(self) -> str:
        return f'ResumableSampler(length={self.length}, shuffle={self.shuffle}, seed={self.seed!r})'


@nni.trace
class ResumableDataLoader(TorchDataLoader):
    """``torch.utils.data.DataLoader`` (``nni.trace``d) whose position survives a checkpoint.

    Parameters
    ----------
    dataset
        A map-style dataset.
    batch_size, drop_last, num_workers, **kwargs
        As for ``DataLoader`` (``sampler`` / ``batch_sampler`` are set by this class).
    shuffle
        Draw a new permutation for every pass (from ``seed``, the epoch and the pass; never from
        a global RNG). ``False``: dataset order.
    seed
        Seed of the order (an int or a sequence of ints).

    ``state_dict()`` / ``load_state_dict()`` are what Lightning's ``CombinedLoader`` saves in a
    checkpoint and restores on resume; see the module docstring.
    """

    def __init__(self, dataset: Dataset, batch_size: int = 1, shuffle: bool = True,
                 seed: Union[int, Sequence[int]] = 0, drop_last: bool = False, num_workers: int = 0, **kwargs: Any):
        for forbidden in ('sampler', 'batch_sampler'):
            if kwargs.get(forbidden) is not None:
                raise ValueError(f'ResumableDataLoader chooses its own {forbidden}; use a plain DataLoader for a '
                                 f'custom one')
            kwargs.pop(forbidden, None)
        if batch_size is None or isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ValueError(f'batch_size must be a positive integer, got {batch_size!r}')
        sampler = ResumableSampler(len(dataset), shuffle=shuffle, seed=seed)
        super().__init__(dataset, batch_size=int(batch_size), sampler=sampler, drop_last=drop_last,
                         num_workers=num_workers, **kwargs)
        self._batches = 0                    # batches delivered in the current pass

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Any]:
        # Lazy: the pass is chosen at the first batch, after Lightning's set_epoch.
        return self._deliver()

    def _deliver(self) -> Iterator[Any]:
        start = self.sampler.begin_pass()
        self._batches = start // self.batch_size
        epoch, pass_index = self.sampler.current
        with self._position_rng(epoch, pass_index, 0, 0):
            batches = super().__iter__()
        while True:
            with self._position_rng(epoch, pass_index, 1, self._batches):
                try:
                    batch = next(batches)
                except StopIteration:
                    return
            self._batches += 1               # counted once handed out: a checkpoint after it skips it
            yield batch

    @contextlib.contextmanager
    def _position_rng(self, *position: int) -> Iterator[None]:
        """Run with torch's CPU generator seeded from the seed, the rank and ``position``; restore it after."""
        sampler: ResumableSampler = self.sampler
        entropy = sampler._entropy + [sampler.rank] + [int(p) for p in position]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """The next batch to deliver: batch ``batches`` of pass ``pass`` of ``epoch``."""
        sampler: ResumableSampler = self.sampler
        if sampler._resume is not None:                      # loaded, not iterated yet
            epoch, pass_index, start = sampler._resume
            batches = start // self.batch_size
        elif sampler.current is not None and sampler.current[0] == sampler.epoch:
            (epoch, pass_index), batches = sampler.current, self._batches
        else:                                                # nothing delivered in this epoch yet
            epoch, pass_index, batches = sampler.epoch, sampler._next_pass, 0
        return {'version': _STATE_VERSION, 'epoch': int(epoch), 'pass': int(pass_index), 'batches': int(batches),
                'batch_size': int(self.batch_size), 'length': sampler.length, 'shuffle': sampler.shuffle,
                'seed': list(sampler._entropy), 'world_size': sampler.num_replicas}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where ``state`` stopped at the next ``iter()`` (the loader's data settings must match)."""
        sampler: ResumableSampler = self.sampler
        expected = {'batch_size': int(self.batch_size), 'length': sampler.length, 'shuffle': sampler.shuffle,
                    'seed': list(sampler._entropy), 'world_size': sampler.num_replicas}
        differs = {k: (state.get(k), v) for k, v in expected.items() if state.get(k) != v}
        if differs:
            detail = ', '.join(f'{k}: checkpoint {a!r}, now {b!r}' for k, (a, b) in differs.items())
            raise ValueError(f'the data loader position in the checkpoint does not fit this loader ({detail}); '
                             'resume with the same data settings, seed and number of processes')
        batches = int(state['batches'])
        start = batches * self.batch_size
        if batches >= len(self):
            start = sampler.num_samples                      # the pass was complete
        sampler.resume_at(int(state['epoch']), int(state['pass']), start)

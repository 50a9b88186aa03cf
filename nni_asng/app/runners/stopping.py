"""Stop a search cleanly on Ctrl-C (SIGINT) or SIGTERM: finish the step, save a checkpoint, exit.

What Lightning 2.6 does by itself, and why that is not enough for a search:

* SIGTERM: its handler sets ``trainer.received_sigterm``; the loop raises ``SIGTERMException`` (a
  ``SystemExit`` without a code, i.e. exit status 0) after the current batch, and nothing is saved;
* SIGINT: ``KeyboardInterrupt`` is raised wherever the main thread happens to be — possibly between
  the weight step and the θ update of a step — then Lightning calls ``on_exception`` and
  ``sys.exit(1)``. A checkpoint written at that point would hold a half-done step.

:class:`GracefulStop` replaces both handlers while the search trains. A signal only sets a flag; at
the end of the current training step (``on_train_batch_end``, where Lightning's own periodic
checkpoints are written, so the saved state is one Lightning restores exactly; after an epoch's last step, at
the epoch's end, once the callbacks listed before this one reported the epoch) the callback saves
``checkpoint_path`` and raises :class:`~nni_asng.app.config.errors.SearchInterrupted`. A second Ctrl-C aborts at
once without saving (the last checkpoint on disk is kept). Under DDP the flag is or-reduced over
the ranks at every step, so all ranks stop after the same step whichever rank got the signal.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Optional

from pytorch_lightning.callbacks import Callback

from ..config.errors import SearchInterrupted

__all__ = ['GracefulStop']

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop(Callback):
    """Turn SIGINT/SIGTERM into "finish this step, save ``checkpoint_path``, raise SearchInterrupted"."""

    def __init__(self, checkpoint_path: str | Path, announce: bool = True):
        self.checkpoint_path = Path(checkpoint_path)
        self.announce = announce
        self.requested: Optional[str] = None
        self.stopped = False                     # set when the search stopped on a signal
        self._at_epoch_end = False               # a signal during an epoch's last step: stop at its end
        self._previous: dict[int, Any] = {}

    # ------------------------------------------------------------------ handlers
    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None:
            if signum == signal.SIGINT:          # the second Ctrl-C: stop now, keep the last checkpoint
                self._restore()
                raise KeyboardInterrupt
            return
        self.requested = name
        if self.announce:
            print(f'\nnni-asng: {name} received: finishing the current step and saving a checkpoint '
                  '(press Ctrl-C again to abort without saving)', file=sys.stderr, flush=True)

    def _install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._handle and handler is not None:
                signal.signal(signum, handler)
        self._previous = {}

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning registers its own SIGTERM handler just before the loop starts; ours replaces it.
        self._install()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stop = self.requested is not None or bool(getattr(trainer, 'received_sigterm', False))
        if trainer.world_size > 1:               # any rank asked: every rank stops after this step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        if trainer.is_last_batch:
            # The epoch's last step: the epoch-end hooks of the callbacks before this one (an NNI trial's report
            # of the epoch) run first, then on_train_epoch_end stops; a resumed run starts the next epoch and
            # would never report this one.
            self._at_epoch_end = True
            return
        self._stop(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._at_epoch_end:
            self._stop(trainer)

    def _stop(self, trainer) -> None:
        reason = self.requested or 'SIGTERM'
        trainer.save_checkpoint(str(self.checkpoint_path))    # every rank takes part; rank 0 writes
        self._restore()
        self.stopped = True
        raise SearchInterrupted(reason, self.checkpoint_path, epoch=int(trainer.current_epoch),
                                step=int(trainer.global_step))

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore()

    @contextlib.contextmanager
    def quiet_nni_errors(self):
        """While active: NNI's "Model 1 fails to be executed" / "Strategy failed" error logs are dropped
        once the search stopped on a signal (the CLI reports the stop itself)."""
        loggers = [logging.getLogger(name) for name in ('nni.nas.execution.sequential', 'nni.nas.strategy.base')]
        drop = _DropAfterStop(self)
        for logger in loggers:
            logger.addFilter(drop)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(drop)


class _DropAfterStop(logging.Filter):
    def __init__(self, stop: GracefulStop):
        super().__init__()
        self.stop = stop

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.stop.stopped and record.levelno >= logging.ERROR)

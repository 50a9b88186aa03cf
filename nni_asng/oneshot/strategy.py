"""The NNI one-shot strategy skeleton shared by every nni-asng strategy.

A strategy is "which searcher, which supermodules": subclasses only implement
:meth:`ProbabilisticOneShotStrategy.build_searcher` (and, for AdvantageNAS, add gated
supermodules). The rest is common: the supernet is built with NNI's own path-sampling
supermodules (those of ``RandomOneShot``, so every space NNI can sample works here), the
evaluator's train and val loaders become the D_x / D_θ pair, and the Lightning module is
:class:`~.lightning.ProbabilisticOneShotModule`.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Iterator

import pytorch_lightning
from nni.nas.oneshot.pytorch.strategy import OneShotStrategy, RandomOneShot

from .budget import Budget, BudgetGuard
from .encoding import SearchSpaceEncoding, UnsupportedSpaceError
from .lightning import ProbabilisticOneShotModule
from .sampling import CACHED_HOOKS
from .searcher import ArchitectureSearcher

_logger = logging.getLogger(__name__)


class ProbabilisticOneShotStrategy(OneShotStrategy):
    """Base class of ASNG, PDAS, SNG, AdvantageNAS, Reinforce and MultiComplexity.

    Parameters
    ----------
    gradient_clip_val
        Clip the weight gradient norm before each weight step (None: no clipping).
    log_every_n_steps
        How often the distribution's summary and its argmax architecture are logged.
    seed
        Makes the search reproducible: the architecture sampler draws from it, and when the search starts
        (NNI mutates the space into the supernet) the strategy calls ``pytorch_lightning.seed_everything(seed)``,
        so the data order and everything else random from then on repeat whatever drew from the global
        generators before. The initial weights are the space's: build the space after ``torch.manual_seed``
        for those to repeat too. None: nothing is seeded.
    max_nonfinite_steps
        Consecutive NaN/inf training losses tolerated (each skips its weight step) before the
        search stops with :class:`~.lightning.NonFiniteLossError`.
    mutation_hooks
        Extra NNI mutation hooks for custom supermodules (see ``OneShotStrategy``).
    budget
        A cost the exported architecture must not exceed, e.g. ``{'metric': 'latency_ms', 'max': 5.0,
        'input_shape': (1, 28, 28)}`` (metric ``'params'``, ``'flops'`` or ``'latency_ms'``; see
        :class:`~.budget.Budget` for the other keys). The per-choice table of the metric is measured on the space
        before the search, which stops at once (:class:`~.budget.BudgetError`, naming the smallest achievable
        value) when no architecture fits; samples over budget rank below every sample within it, and the export
        is the most likely architecture whose measured cost fits (``budget_report``). docs/budgets.md.
    """

    def __init__(self, *, gradient_clip_val: float | None = None, log_every_n_steps: int = 10,
                 seed: int | None = None, max_nonfinite_steps: int = 20, mutation_hooks: list | None = None,
                 budget: Budget | dict | None = None, **kwargs: Any):
        super().__init__(mutation_hooks=mutation_hooks, **kwargs)
        if gradient_clip_val is not None and not gradient_clip_val > 0:
            raise ValueError(f'gradient_clip_val must be > 0 or None, got {gradient_clip_val!r}')
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f'seed must be a non-negative integer or None, got {seed!r}')
        self.gradient_clip_val = gradient_clip_val
        self.log_every_n_steps = log_every_n_steps
        self.seed = seed
        self.max_nonfinite_steps = max_nonfinite_steps
        self.budget = Budget.parse(budget)
        self.encoding: SearchSpaceEncoding | None = None
        self.searcher: ArchitectureSearcher | None = None

    # ------------------------------------------------------------------ what subclasses decide
    def build_searcher(self, encoding: SearchSpaceEncoding, model=None) -> ArchitectureSearcher:
        """The algorithm for this space; ``model`` is the (not yet mutated) space, for inspection."""
        raise NotImplementedError

    def budget_for(self, model) -> Budget:
        """The budget as given (MultiComplexity lends it its own table when both measure the same metric)."""
        return self.budget

    def budget_report(self) -> list[dict[str, Any]]:
        """Per exported architecture: the budget's metric and max, and its measured and predicted cost."""
        guard = self.searcher.budget if self.searcher is not None else None
        return [] if guard is None else [guard.report(arch) for arch in self.searcher.export()]

    # ------------------------------------------------------------------ NNI hooks
    def mutate_model(self, model):
        if self.seed is not None:
            pytorch_lightning.seed_everything(self.seed, workers=True, verbose=False)
        # Encode before mutation so unsupported mutables are reported by label, not by NNI internals.
        self.encoding = SearchSpaceEncoding(model)
        self.searcher = self.build_searcher(self.encoding, model)
        if self.budget is not None:
            self.searcher.budget = BudgetGuard(self.budget_for(model), model, self.encoding, seed=self.seed or 0)
        try:
            return super().mutate_model(model)
        except TypeError as err:
            unsupported = _unsupported_module(model, err)
            if unsupported is None:
                raise
            raise unsupported from None

    def default_mutation_hooks(self) -> list:
        return CACHED_HOOKS + RandomOneShot.default_mutation_hooks(self)

    def run_hook(self, hook, name, module, memo):
        return RandomOneShot.run_hook(self, hook, name, module, memo)

    def mutate_evaluator(self, evaluator):
        # Lightning refuses Trainer(gradient_clip_val=...) under manual optimisation; adopt the value.
        trainer = getattr(evaluator, 'trainer', None)
        clip = getattr(trainer, 'gradient_clip_val', None)
        if clip:
            if self.gradient_clip_val is None:
                self.gradient_clip_val = float(clip)
            trainer.gradient_clip_val = None
            _logger.info('the evaluator\'s gradient_clip_val=%s is applied by %s to every weight step',
                         self.gradient_clip_val, type(self).__name__)
        return super().mutate_evaluator(evaluator)

    def configure_oneshot_module(self, training_module) -> ProbabilisticOneShotModule:
        if self.searcher is None:
            raise RuntimeError('the model space must be mutated (mutate_model) before the evaluator')
        return ProbabilisticOneShotModule(training_module, self.searcher, gradient_clip_val=self.gradient_clip_val,
                                          log_every_n_steps=self.log_every_n_steps,
                                          max_nonfinite_steps=self.max_nonfinite_steps)

    def train_dataloader(self, train_dataloader_fn, val_dataloader_fn):
        # A dict becomes Lightning's CombinedLoader: every step gets one D_x and one D_θ batch.
        return {'train': train_dataloader_fn(), 'val': val_dataloader_fn()}

    def val_dataloader(self, train_dataloader_fn, val_dataloader_fn):
        return None

    # ------------------------------------------------------------------ results
    def list_models(self, sort: bool = True, limit: int | None = 1) -> Iterator:
        """The found architecture(s), frozen from the search space (several for MultiComplexity)."""
        module: ProbabilisticOneShotModule = self.oneshot_module  # type: ignore[assignment]
        module.set_model(self.supernet)
        architectures = module.export_all()
        for arch in architectures[:limit] if limit else architectures:
            yield self.model_space.freeze(arch)

    @property
    def history(self) -> list[dict]:
        """Per-epoch summaries and exported architectures recorded during the search."""
        return list(self.oneshot_module.history) if self._mutated_model_space is not None else []


def _unsupported_module(model, err: TypeError) -> UnsupportedSpaceError | None:
    """NNI's "Module `x` ... has dangling mutables" as an error naming the module's labels and the way out."""
    match = re.match(r'Module `(.+?)` of type `(.+?)` has dangling mutables', str(err))
    if match is None:
        return None
    name, kind = match.groups()
    try:
        labels = sorted({str(label) for m in model.get_submodule(name).mutables for label in m.simplify()})
    except Exception:  # noqa: BLE001 - the message is still useful without the labels
        labels = []
    return UnsupportedSpaceError(
        f'module {name!r} ({kind}) takes the architecture choice(s) {labels} as arguments, and NNI has no one-shot '
        f'(supernet) version of {kind}, so one-shot strategies cannot sample it. Put the candidates in a '
        f'LayerChoice of fixed modules instead (e.g. LayerChoice([{kind.replace("Mutable", "nn.")}(...), ...])); '
        'MutableConv2d, MutableLinear and MutableBatchNorm2d can take nni.choice arguments directly')

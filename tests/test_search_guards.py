"""Two properties of the natural-gradient searches that the published numbers rely on, checked step by step.

* Warm-up: θ is bit-for-bit the initial θ through every warm-up step (``warmup_epochs`` for ASNG, SNG and
  PDAS; the weight stage, ``weight_epochs``, for MultiComplexity) and moves after it.
* Sample reuse (pdas Algorithm 1, lines 3–6): the θ step is told exactly the λ architectures the weight step
  of the same training step trained on, unless ``resample_for_architecture=True`` asks for fresh ones.

Each search runs once on a tiny space (3 choices of 4 candidates, 16 random examples, 2 steps per epoch,
2 epochs), with spies on the searcher's ``phase`` (θ at the start of every step), ``weight_architectures``
(what the weight step trains) and its optimizer's ``tell`` (what the θ update is given).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn
from nni.nas.nn.pytorch import LayerChoice, ModelSpace

import nni_asng
from oneshot_harness import run_strategy


class TinySpace(ModelSpace):
    """4^3 = 64 architectures; the candidates differ in parameter count (MultiComplexity measures them)."""

    def __init__(self):
        super().__init__()
        self.choices = nn.ModuleList(
            LayerChoice([nn.Linear(4, 4), nn.Identity(), nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Tanh()],
                        label=f'choice{i}') for i in range(3))
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        for choice in self.choices:
            x = choice(x)
        return self.fc(x)


def _theta(searcher) -> np.ndarray:
    optimizer = searcher.optimizer
    if hasattr(optimizer, 'distributions'):                      # MultiComplexity: one θ per ε
        return np.concatenate([np.asarray(d.theta, float).ravel() for d in optimizer.distributions])
    return np.array(optimizer.theta, dtype=float, copy=True)


def spy(strategy) -> list[tuple]:
    """Events of the search, in order: ('step', epoch, θ at the step's start), ('weight', rows the weight step
    trains), ('tell', rows the θ update is given)."""
    events: list[tuple] = []
    build = strategy.build_searcher

    def build_and_spy(encoding, model=None):
        searcher = build(encoding, model)
        phase, weight, tell = searcher.phase, searcher.weight_architectures, searcher.optimizer.tell

        def phase_spy(epoch, step=0):
            events.append(('step', epoch, _theta(searcher)))
            return phase(epoch, step)

        def weight_spy(epoch):
            rows = weight(epoch)
            events.append(('weight', np.array(rows, copy=True)))
            return rows

        def tell_spy(rows, *args, **kwargs):
            events.append(('tell', np.array(rows, copy=True)))
            return tell(rows, *args, **kwargs)

        searcher.phase, searcher.weight_architectures, searcher.optimizer.tell = phase_spy, weight_spy, tell_spy
        return searcher

    strategy.build_searcher = build_and_spy
    return events


STRATEGIES = {
    'ASNG': lambda **kw: nni_asng.ASNG(seed=0, **kw),
    'SNG': lambda **kw: nni_asng.SNG(seed=0, **kw),
    'PDAS': lambda **kw: nni_asng.PDAS(seed=0, **kw),
}
RUNS = {name: (lambda make=make: make(warmup_epochs=1)) for name, make in STRATEGIES.items()}
RUNS['MultiComplexity'] = lambda: nni_asng.MultiComplexity(epsilons=[0.0, 0.5], weight_epochs=1, theta_epochs=1,
                                                           seed=0)
RUNS.update({f'{name}-resample': (lambda make=make: make(resample_for_architecture=True, warmup=0))
             for name, make in STRATEGIES.items()})


@pytest.fixture(scope='module')
def searches(tmp_path_factory):
    """Each configuration of ``RUNS`` searched once (2 epochs x 2 steps): its events and final θ."""
    done = {}

    def get(name):
        if name not in done:
            strategy = RUNS[name]()
            events = spy(strategy)
            run_strategy(TinySpace(), strategy, tmp_path_factory.mktemp(name), (4,), n=16, batch_size=8,
                         max_epochs=2)
            done[name] = events, _theta(strategy.searcher)
        return done[name]
    return get


def _pairs(events) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows the weight step trained, rows the θ step was told) for every step that updated θ."""
    pairs, last_weight = [], None
    for event in events:
        if event[0] == 'step':
            last_weight = None
        elif event[0] == 'weight':
            last_weight = event[1]
        elif event[0] == 'tell':
            pairs.append((last_weight, event[1]))
    return pairs


@pytest.mark.parametrize('name', ['ASNG', 'SNG', 'PDAS', 'MultiComplexity'])
def test_theta_is_held_during_warmup_and_moves_after(name, searches):
    """θ is bit-unchanged through the warm-up epoch (epoch 0), nothing is told to the optimizer then, and θ
    has moved by the end of epoch 1."""
    events, final = searches(name)
    steps = [(epoch, theta) for kind, *rest in events if kind == 'step' for epoch, theta in [rest]]
    assert [epoch for epoch, _ in steps] == [0, 0, 1, 1]
    initial = steps[0][1]
    # the θ seen at the start of epoch-0 step 1 and of epoch-1 step 0 is what the warm-up steps left
    for epoch, theta in steps[:3]:
        assert np.array_equal(theta, initial), f'θ moved during the warm-up (seen at a step of epoch {epoch})'
    kinds = [e[0] for e in events]
    epoch_1 = [i for i, kind in enumerate(kinds) if kind == 'step'][2]
    assert 'tell' not in kinds[:epoch_1]
    assert not np.array_equal(final, initial), 'θ did not move after the warm-up'


@pytest.mark.parametrize('name', ['ASNG', 'SNG', 'PDAS'])
def test_theta_step_reuses_the_weight_steps_samples(name, searches):
    """By default the θ update is told exactly the λ architectures the same step's weight step trained on."""
    pairs = _pairs(searches(name)[0])
    assert len(pairs) == 2                                          # epoch 1's two steps
    for trained, told in pairs:
        assert trained is not None and np.array_equal(trained, told)


@pytest.mark.parametrize('name', ['ASNG', 'SNG', 'PDAS'])
def test_resample_for_architecture_draws_fresh_samples(name, searches):
    """With ``resample_for_architecture=True`` the θ update gets λ architectures of its own: over the four
    steps they are not the weight steps' (4 draws of 2 of 64 architectures all repeating: < 1e-6)."""
    pairs = _pairs(searches(f'{name}-resample')[0])
    assert len(pairs) == 4
    assert all(trained is not None and told.shape == trained.shape for trained, told in pairs)
    assert not all(np.array_equal(trained, told) for trained, told in pairs)

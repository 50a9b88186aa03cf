"""The warm-up that holds θ while the weights learn: its arithmetic, its errors, and that a search honours it
by share of the planned steps (the default) or by whole epochs."""
import pytest
import torch.nn as nn
from nni.nas.nn.pytorch import LayerChoice, ModelSpace

import nni_asng
from nni_asng.oneshot.searcher import DEFAULT_WARMUP, WarmupSchedule
from oneshot_harness import run_strategy


def test_share_of_the_planned_steps():
    schedule = WarmupSchedule(0.25)
    schedule.start(total_steps=40, steps_per_epoch=8)
    assert schedule.steps == 10
    assert [schedule.holds(s) for s in (0, 9, 10, 39)] == [True, True, False, False]


def test_whole_epochs_win_over_the_share():
    schedule = WarmupSchedule(0.5, warmup_epochs=1)
    schedule.start(total_steps=40, steps_per_epoch=8)
    assert schedule.steps == 8


def test_the_papers_setting_never_holds_even_without_a_planned_length():
    schedule = WarmupSchedule(0.0)
    schedule.start(total_steps=None, steps_per_epoch=None)
    assert not schedule.holds(0)


def test_a_share_without_a_planned_length_is_a_clear_error():
    schedule = WarmupSchedule(0.5)
    with pytest.raises(ValueError, match='no planned length.*max_epochs.*warmup_epochs=N.*warmup=0'):
        schedule.start(total_steps=None, steps_per_epoch=8)


@pytest.mark.parametrize('warmup, epochs', [(1.0, None), (-0.1, None), (True, None), ('half', None), (0.5, -1),
                                            (0.5, 1.5)])
def test_bad_arguments_are_named(warmup, epochs):
    with pytest.raises(ValueError, match='warmup'):
        nni_asng.ASNG(warmup=warmup, warmup_epochs=epochs)
    with pytest.raises(ValueError, match='warmup'):
        nni_asng.AdvantageNAS(warmup=warmup, warmup_epochs=epochs)


def test_every_warmup_strategy_defaults_to_the_shared_share():
    for cls in (nni_asng.ASNG, nni_asng.SNG, nni_asng.PDAS, nni_asng.AdvantageNAS, nni_asng.Reinforce):
        assert cls().warmup == DEFAULT_WARMUP


class _Space(ModelSpace):
    def __init__(self):
        super().__init__()
        self.a = LayerChoice([nn.Linear(4, 4), nn.Identity(), nn.Linear(4, 4)], label='a')
        self.b = LayerChoice([nn.Linear(4, 4), nn.Identity()], label='b')
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.b(self.a(x)))


def _theta_steps(strategy, tmp_path, max_epochs=3, **trainer):
    """Record at which run-wide steps the searcher asked for a θ step."""
    steps = []
    original = type(strategy).build_searcher

    def build(self, encoding, model=None):
        searcher = original(self, encoding, model)
        phase = searcher.phase

        def spy(epoch, step=0):
            result = phase(epoch, step)
            if result.train_architecture:
                steps.append(step)
            return result
        searcher.phase = spy
        return searcher

    strategy.build_searcher = build.__get__(strategy)
    run_strategy(_Space(), strategy, tmp_path, (4,), num_classes=3, n=32, batch_size=8, max_epochs=max_epochs,
                 **trainer)
    return steps


@pytest.mark.parametrize('cls', [nni_asng.ASNG, nni_asng.AdvantageNAS])
def test_a_search_holds_theta_for_the_share_then_every_step_moves_it(cls, tmp_path):
    # 3 epochs x 4 batches = 12 planned steps; a share of 0.5 holds the first 6
    assert _theta_steps(cls(seed=0, warmup=0.5), tmp_path) == list(range(6, 12))
    assert _theta_steps(cls(seed=0, warmup=0.5, warmup_epochs=2), tmp_path / 'e') == list(range(8, 12))
    assert _theta_steps(cls(seed=0, warmup=0.0), tmp_path / 'p') == list(range(12))


def test_an_open_ended_search_with_a_share_stops_with_the_rule(tmp_path):
    with pytest.raises(Exception, match='no planned length'):
        _theta_steps(nni_asng.ASNG(seed=0, warmup=0.5), tmp_path, max_epochs=-1)

"""Softmax policy, REINFORCE and AdvantageNAS estimators (advantagenas §4, Appendix B/C), no NNI."""
import math

import numpy as np
import pytest
import torch

from nni_asng.optimizers.policy_gradient import (AdvantageOptimizer, ReinforceOptimizer,
                                                 SoftmaxCategoricalPolicy)


def captured_ascent(optimizer):
    """Record the ascent direction handed to Adam instead of only checking the moved logits."""
    seen = []
    original = optimizer._apply

    def spy(ascent):
        seen.append(np.array(ascent, dtype=float))
        original(ascent)
    optimizer._apply = spy
    return seen


def test_policy_starts_uniform_and_scores_one_hot_minus_mu():
    policy = SoftmaxCategoricalPolicy([2, 3])
    np.testing.assert_allclose(policy.probabilities(), [0.5, 0.5, 1 / 3, 1 / 3, 1 / 3])
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([0.0, math.log(3.0), 0.0, 0.0, math.log(2.0)], dtype=torch.float64))
    np.testing.assert_allclose(policy.probabilities(), [0.25, 0.75, 0.25, 0.25, 0.5])
    np.testing.assert_allclose(policy.score([1, 2]), [-0.25, 0.25, -0.25, -0.25, 0.5])
    np.testing.assert_array_equal(policy.mode(), [1, 2])


def test_policy_sampling_matches_probabilities():
    policy = SoftmaxCategoricalPolicy([3])
    with torch.no_grad():
        policy.logits.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)))
    x = policy.sample(100_000, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(x[:, 0], minlength=3) / 1e5, [0.2, 0.3, 0.5], atol=0.005)


def test_excluded_categories_are_never_sampled():
    policy = SoftmaxCategoricalPolicy([3, 2], excluded=np.array([True, False, False, False, False]))
    p = policy.probabilities()
    assert p[0] == 0 and p[1] == pytest.approx(0.5)
    x = policy.sample(5000, np.random.default_rng(1))
    assert (x[:, 0] != 0).all()
    with pytest.raises(ValueError, match=r'variable\(s\) \[1\] empty'):
        SoftmaxCategoricalPolicy([2, 2], excluded=np.array([False, False, True, True]))


def test_reinforce_ascends_reward_minus_ema_baseline():
    opt = ReinforceOptimizer(SoftmaxCategoricalPolicy([2, 3]), lr=0.1, weight_decay=0.0, grad_clip=None, gamma=0.05)
    seen = captured_ascent(opt)
    opt.tell(np.array([0, 1]), loss=2.0)        # baseline starts at the first reward r = −2
    np.testing.assert_allclose(seen[0], 0.0)
    assert opt.baseline == pytest.approx(-2.0)
    score = opt.policy.score([1, 2])
    opt.tell(np.array([1, 2]), loss=1.0)        # r − b = −1 − (−2) = 1
    np.testing.assert_allclose(seen[1], 1.0 * score)
    assert opt.baseline == pytest.approx(-2.0 + 0.05 * 1.0)


def test_advantage_uses_per_variable_credit():
    opt = AdvantageOptimizer(SoftmaxCategoricalPolicy([2, 3]), lr=0.1, weight_decay=0.0, grad_clip=None)
    seen = captured_ascent(opt)
    score = opt.policy.score([1, 0])
    opt.tell(np.array([1, 0]), loss=1.0, advantages=[0.5, -2.0])
    np.testing.assert_allclose(seen[0], np.concatenate([0.5 * score[:2], -2.0 * score[2:]]))
    np.testing.assert_allclose(opt.ema, [0, 0.05 * 0.5, 0.05 * -2.0, 0, 0])   # Eq. 9: chosen entries only


def test_zero_operation_gets_worst_expected_advantage():
    """Appendix B: choosing the zero op (category 0) uses min EMA over the other categories."""
    zero = np.array([True, False, False])
    opt = AdvantageOptimizer(SoftmaxCategoricalPolicy([3]), zero=zero, lr=0.1, weight_decay=0.0, grad_clip=None,
                             gamma=0.5)
    seen = captured_ascent(opt)
    opt.tell(np.array([1]), 1.0, [0.4])          # EMA = [0, 0.2, 0]
    opt.tell(np.array([1]), 1.0, [0.4])          # EMA = [0, 0.2 + 0.5(0.4 − 0.2) = 0.3, 0]
    opt.tell(np.array([2]), 1.0, [-0.6])         # EMA = [0, 0.3, -0.3]
    np.testing.assert_allclose(opt.ema, [0, 0.3, -0.3])
    score = opt.policy.score([0])
    opt.tell(np.array([0]), 1.0, [0.0])          # the zero op's own advantage is 0 by Eq. 6
    np.testing.assert_allclose(seen[-1], -0.3 * score)
    np.testing.assert_allclose(opt.ema, [0, 0.3, -0.3])   # the zero op's EMA entry is not learned


def test_unknown_advantages_fall_back_to_reinforce_credit():
    opt = AdvantageOptimizer(SoftmaxCategoricalPolicy([2, 2]), lr=0.1, weight_decay=0.0, grad_clip=None)
    seen = captured_ascent(opt)
    opt.tell(np.array([0, 0]), 3.0, [0.7, math.nan])       # first reward sets the baseline: credit 0
    np.testing.assert_allclose(seen[0][2:], 0.0)
    score = opt.policy.score([1, 1])
    opt.tell(np.array([1, 1]), 1.0, [0.7, math.nan])       # r − b = −1 − (−3) = 2
    np.testing.assert_allclose(seen[1], np.concatenate([0.7 * score[:2], 2.0 * score[2:]]))


def test_nonfinite_loss_is_skipped():
    opt = AdvantageOptimizer(SoftmaxCategoricalPolicy([2]))
    before = opt.policy.logits.detach().clone()
    assert not opt.tell(np.array([0]), math.nan, [1.0])
    assert torch.equal(opt.policy.logits.detach(), before) and opt.skipped_nonfinite == 1


def test_cosine_schedule_and_clipping():
    opt = ReinforceOptimizer(SoftmaxCategoricalPolicy([2]), lr=0.2, total_steps=4, grad_clip=1.0)
    lrs = []
    for _ in range(5):
        lrs.append(opt._current_lr())
        opt._apply(np.array([100.0, -100.0]))
    np.testing.assert_allclose(lrs, [0.2, 0.2 * (1 + math.cos(math.pi / 4)) / 2, 0.1,
                                     0.2 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0])
    assert opt.policy.logits.grad.norm().item() == pytest.approx(1.0)          # clipped from 141


def test_advantage_converges_faster_than_reinforce_on_additive_bandit():
    """10 variables x 5 categories, reward = Σ_i value[i, a_i] + noise: exact per-variable
    advantages (the case Eq. 6 is exact) must reach the optimum sooner than one shared reward."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(10, 5))
    best = values.argmax(axis=1)

    def run(make, use_adv, steps=1500):
        opt = make()
        hits = []
        for _ in range(steps):
            row = opt.ask()[0]
            contrib = values[np.arange(10), row]
            loss = -contrib.sum() + rng.normal()
            if use_adv:
                opt.tell(row, loss, contrib)                  # A_i = r(a) − r(s_i, 0) for an additive reward
            else:
                opt.tell(row, loss)
            hits.append((opt.most_likely() == best).mean())
        return np.array(hits)

    kwargs = dict(lr=0.05, betas=(0.9, 0.999), weight_decay=0.0, grad_clip=None, seed=1)
    adv = run(lambda: AdvantageOptimizer(SoftmaxCategoricalPolicy([5] * 10), **kwargs), True)
    rei = run(lambda: ReinforceOptimizer(SoftmaxCategoricalPolicy([5] * 10), **kwargs), False)
    assert adv[-1] == 1.0
    assert adv[:500].mean() > rei[:500].mean()


def test_state_dict_round_trip():
    a = AdvantageOptimizer(SoftmaxCategoricalPolicy([3, 3]), seed=3)
    for _ in range(5):
        row = a.ask()[0]
        a.tell(row, 1.0, [0.1, -0.2])
    b = AdvantageOptimizer(SoftmaxCategoricalPolicy([3, 3]), seed=99)
    b.load_state_dict(a.state_dict())
    for _ in range(5):
        ra, rb = a.ask()[0], b.ask()[0]
        np.testing.assert_array_equal(ra, rb)
        a.tell(ra, 0.5, [0.3, 0.1])
        b.tell(rb, 0.5, [0.3, 0.1])
    assert torch.equal(a.policy.logits.detach(), b.policy.logits.detach())
    np.testing.assert_array_equal(a.ema, b.ema)


@pytest.mark.parametrize('kwargs, message', [
    (dict(lr=0), 'lr'), (dict(gamma=0), 'gamma'), (dict(grad_clip=-1), 'grad_clip'),
])
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReinforceOptimizer(SoftmaxCategoricalPolicy([2]), **kwargs)


# ---------------------------------------------------------------------------- numerical safety (property tests)
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(ks=st.lists(st.integers(1, 6), min_size=1, max_size=6), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1e-12, 1.0, 1e12]), advantage=st.booleans(),
       nan_every=st.integers(2, 7))
def test_policy_stays_a_distribution_under_extreme_losses(ks, seed, scale, advantage, nan_every):
    rng = np.random.default_rng(seed)
    policy = SoftmaxCategoricalPolicy(ks)
    kwargs = dict(lr=0.5, weight_decay=0.0, grad_clip=None, seed=seed)
    opt = AdvantageOptimizer(policy, **kwargs) if advantage else ReinforceOptimizer(policy, **kwargs)
    for t in range(40):
        row = opt.ask()[0]
        loss = math.nan if t % nan_every == 0 else scale * rng.normal()
        if advantage:
            opt.tell(row, loss, scale * rng.normal(size=len(ks)))
        else:
            opt.tell(row, loss)
        p = policy.probabilities()
        assert np.all(np.isfinite(policy.logits.detach().numpy())) and np.all(p >= 0)
        np.testing.assert_allclose(np.add.reduceat(p, policy.offsets[:-1]), 1.0, atol=1e-9)
        assert (opt.ask(5) < np.asarray(ks)).all()


def test_saturated_policy_keeps_sampling_valid_rows():
    policy = SoftmaxCategoricalPolicy([3, 4])
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([800.0, -800.0, 0.0, -900.0, 900.0, 0.0, 0.0], dtype=torch.float64))
    p = policy.probabilities()
    assert np.all(np.isfinite(p))
    np.testing.assert_array_equal(policy.sample(50, np.random.default_rng(0)), [[0, 1]] * 50)

"""Softmax policy, REINFORCE and AdvantageNAS estimators (advantagenas §4, Appendix B/C), no NNI; their numpy Adam
and clipping against torch's (advantagenas Appendix D; torch is imported by those tests only, as the reference)."""
import math

import numpy as np
import pytest

from nni_asng.optimizers.policy_adam import PolicyAdam
from nni_asng.optimizers.policy_gradient import (AdvantageOptimizer, PolicyGradientOptimizer, ReinforceOptimizer,
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
    policy.logits[:] = [0.0, math.log(3.0), 0.0, 0.0, math.log(2.0)]
    np.testing.assert_allclose(policy.probabilities(), [0.25, 0.75, 0.25, 0.25, 0.5])
    np.testing.assert_allclose(policy.score([1, 2]), [-0.25, 0.25, -0.25, -0.25, 0.5])
    np.testing.assert_array_equal(policy.mode(), [1, 2])


def test_policy_sampling_matches_probabilities():
    policy = SoftmaxCategoricalPolicy([3])
    policy.logits[:] = np.log([0.2, 0.3, 0.5])
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
    before = opt.policy.logits.copy()
    assert not opt.tell(np.array([0]), math.nan, [1.0])
    np.testing.assert_array_equal(opt.policy.logits, before)
    assert opt.skipped_nonfinite == 1 and opt.adam.t == 0


def test_cosine_schedule_and_clipping():
    opt = ReinforceOptimizer(SoftmaxCategoricalPolicy([2]), lr=0.2, total_steps=4, grad_clip=1.0)
    steps = []
    adam_step = opt.adam.step
    opt.adam.step = lambda param, gradient, lr: (steps.append((np.array(gradient), lr)), adam_step(param, gradient, lr))
    for _ in range(5):
        opt._apply(np.array([100.0, -100.0]))
    np.testing.assert_allclose([lr for _, lr in steps], [0.2, 0.2 * (1 + math.cos(math.pi / 4)) / 2, 0.1,
                                                        0.2 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0])
    for gradient, _ in steps:                                                   # clipped from 141, sign kept
        assert np.linalg.norm(gradient) == pytest.approx(1.0) and gradient[0] < 0 < gradient[1]


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
    np.testing.assert_array_equal(a.policy.logits, b.policy.logits)
    np.testing.assert_array_equal(a.ema, b.ema)
    state = a.state_dict()
    assert isinstance(state['logits'], np.ndarray) and set(state['adam']) == {'m', 'v', 'step'}
    assert isinstance(state['adam']['m'], np.ndarray) and state['adam']['step'] == a.adam.t == 10


def _torch_reference(torch, policy: SoftmaxCategoricalPolicy, lr: float, betas, weight_decay: float, clip: float,
                     total_steps: int):
    """θ stepped as PolicyGradientOptimizer did with torch: torch.optim.Adam, clip_grad_norm_, cosine lr."""
    logits = torch.nn.Parameter(torch.from_numpy(policy.logits.copy()))
    adam = torch.optim.Adam([logits], lr=lr, betas=betas, weight_decay=weight_decay)

    def apply(ascent: np.ndarray, updates: int) -> None:
        adam.zero_grad()
        logits.grad = torch.from_numpy(-ascent)
        torch.nn.utils.clip_grad_norm_([logits], clip)
        for group in adam.param_groups:
            group['lr'] = 0.5 * lr * (1 + math.cos(math.pi * min(updates, total_steps) / total_steps))
        adam.step()
    return logits, adam, apply


def _assert_close(ours: np.ndarray, reference: np.ndarray) -> None:
    """Equal within 1e-12 of the vector's largest entry (max-norm relative)."""
    scale = np.max(np.abs(reference))
    assert np.max(np.abs(ours - reference)) <= 1e-12 * scale, np.max(np.abs(ours - reference)) / scale


@pytest.mark.parametrize('betas', [(0.5, 0.999), (0.9, 0.999)])
def test_numpy_adam_and_clipping_match_torch(betas):
    """200 random ascent steps of Adam with weight decay, clipping (active in about half the steps) and a cosine
    learning rate (advantagenas Appendix D) against torch.optim.Adam + clip_grad_norm_ on the same directions:
    θ and the moments agree within 1e-12 relative to their largest entry (max norm), not bit for bit: torch's CPU
    kernels fuse the multiply–adds (weight decay, addcmul, lerp) and its float64 square root is 1 ulp from the
    correctly rounded one for ~1 % of inputs, so the last bits of ~¾ of the entries differ; measured drift after
    200 steps ~1e-15."""
    torch = pytest.importorskip('torch')
    rng = np.random.default_rng(0)
    steps, lr, clip = 200, 0.1, 1.0
    opt = ReinforceOptimizer(SoftmaxCategoricalPolicy([5] * 6), lr=lr, betas=betas, weight_decay=3e-3,
                             grad_clip=clip, total_steps=steps)
    opt.policy.logits[:] = rng.normal(size=30)
    logits, adam, apply = _torch_reference(torch, opt.policy, lr, betas, 3e-3, clip, steps)
    clipped = 0
    for t in range(steps):
        ascent = rng.normal(size=30) * rng.choice([0.02, 3.0])
        clipped += np.linalg.norm(ascent) > clip
        apply(ascent, t)
        assert opt._apply(ascent)
        _assert_close(opt.policy.logits, logits.detach().numpy())
    assert 50 < clipped < 150
    state = adam.state_dict()['state'][0]
    assert opt.adam.t == int(state['step']) == steps
    _assert_close(opt.adam.m, state['exp_avg'].numpy())
    _assert_close(opt.adam.v, state['exp_avg_sq'].numpy())


def test_checkpoint_with_torch_adam_state_is_converted():
    """A checkpoint written while θ was a torch Parameter (``logits`` a tensor, ``adam`` torch's Adam state dict)
    loads into the numpy optimiser, which then continues as torch's Adam would."""
    torch = pytest.importorskip('torch')
    rng = np.random.default_rng(1)
    policy = SoftmaxCategoricalPolicy([3, 4])
    logits, adam, apply = _torch_reference(torch, policy, 0.05, (0.5, 0.999), 3e-3, 1.0, 40)
    for t in range(20):
        apply(rng.normal(size=7), t)
    fresh = AdvantageOptimizer(SoftmaxCategoricalPolicy([3, 4]), lr=0.05, total_steps=40, seed=0)
    old = fresh.state_dict()
    old.update(logits=logits.detach().clone(), adam=adam.state_dict(), updates=20)
    opt = AdvantageOptimizer(SoftmaxCategoricalPolicy([3, 4]), lr=0.05, total_steps=40, seed=0)
    opt.load_state_dict(old)
    assert opt.adam.t == 20 and isinstance(opt.adam.m, np.ndarray)
    np.testing.assert_array_equal(opt.policy.logits, logits.detach().numpy())
    for t in range(20, 40):
        ascent = rng.normal(size=7)
        apply(ascent, t)
        opt._apply(ascent)
    _assert_close(opt.policy.logits, logits.detach().numpy())
    empty = torch.optim.Adam([torch.nn.Parameter(torch.zeros(7, dtype=torch.float64))]).state_dict()
    opt.load_state_dict({**old, 'adam': empty})                 # saved before the first step: no moments yet
    assert opt.adam.t == 0 and not opt.adam.m.any() and not opt.adam.v.any()
    with pytest.raises(ValueError, match='entries'):
        opt.load_state_dict({**old, 'logits': np.zeros(5)})


def test_policy_adam_is_kingma_and_ba_with_l2_weight_decay():
    """Algorithm 1 of Kingma & Ba (2015) written plainly, the weight decay added to the gradient."""
    rng = np.random.default_rng(2)
    theta = rng.normal(size=4)
    reference = theta.copy()
    adam = PolicyAdam(4, betas=(0.8, 0.99), weight_decay=0.1, eps=1e-8)
    m = v = np.zeros(4)
    for t in range(1, 30):
        g = rng.normal(size=4)
        adam.step(theta, g, lr=0.01)
        g = g + 0.1 * reference
        m, v = 0.8 * m + 0.2 * g, 0.99 * v + 0.01 * g * g
        reference = reference - 0.01 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-8)
    np.testing.assert_allclose(theta, reference, rtol=1e-12)
    with pytest.raises(ValueError, match='betas'):
        PolicyAdam(2, betas=(1.0, 0.9))
    assert isinstance(PolicyGradientOptimizer(SoftmaxCategoricalPolicy([2])).adam, PolicyAdam)


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
        assert np.all(np.isfinite(policy.logits)) and np.all(p >= 0)
        np.testing.assert_allclose(np.add.reduceat(p, policy.offsets[:-1]), 1.0, atol=1e-9)
        assert (opt.ask(5) < np.asarray(ks)).all()


def test_saturated_policy_keeps_sampling_valid_rows():
    policy = SoftmaxCategoricalPolicy([3, 4])
    policy.logits[:] = [800.0, -800.0, 0.0, -900.0, 900.0, 0.0, 0.0]
    p = policy.probabilities()
    assert np.all(np.isfinite(p))
    np.testing.assert_array_equal(policy.sample(50, np.random.default_rng(0)), [[0, 1]] * 50)

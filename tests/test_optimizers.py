"""ASNG, SNG, PDAS and the Adam baseline against hand-computed steps and their invariants."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from nni_asng.distributions import CategoricalDistribution, GaussianDistribution, ProductDistribution
from nni_asng.optimizers import ASNG, PDAS, SNG, NaturalGradientAdam, ranking_utility


def fisher_norm_naive(theta_blocks, g_blocks):
    """sqrt(Σ_i ḡ_iᵀ (diag(θ̄_i)⁻¹ + θ_iK⁻¹ 11ᵀ) ḡ_i), built from pdas Eq. 6 directly."""
    total = 0.0
    for th, g in zip(theta_blocks, g_blocks):
        f = np.diag(1 / th[:-1]) + np.ones((len(th) - 1,) * 2) / th[-1]
        total += g[:-1] @ f @ g[:-1]
    return math.sqrt(total)


def project_naive(theta, theta_min):
    """pdas App. B Eq. 11–12 for one variable."""
    th = np.maximum(theta, theta_min)
    return th + (1 - th.sum()) / (th.sum() - theta_min * th.size) * (th - theta_min)


# ---------------------------------------------------------------------------- utility
def test_ranking_utility_cases():
    np.testing.assert_array_equal(ranking_utility([1.0, 2.0]), [1, -1])
    np.testing.assert_array_equal(ranking_utility([2.0, 1.0]), [-1, 1])
    np.testing.assert_array_equal(ranking_utility([1.0, 1.0]), [0, 0])          # tie → skip
    np.testing.assert_array_equal(ranking_utility([4.0, 1.0, 3.0, 2.0]), [-1, 1, 0, 0])   # ⌈4/4⌉ = 1
    np.testing.assert_array_equal(ranking_utility([1, 2, 3, 4, 5, 6, 7, 8.0]), [1, 1, 0, 0, 0, 0, -1, -1])
    np.testing.assert_allclose(ranking_utility([1.0, 1.0, 3.0, 4.0]), [0.5, 0.5, 0, -1])   # tie shares
    with pytest.raises(ValueError, match='at least 2'):
        ranking_utility([1.0])


# ---------------------------------------------------------------------------- hand-computed steps
def test_asng_first_step_hand_computed():
    dist = CategoricalDistribution([2, 3])
    opt = ASNG(dist, lam=2, seed=0)
    x = np.array([[0, 1], [1, 2]])
    assert opt.tell(x, [1.0, 2.0])
    # u = (1, −1); G = ½(T(c1) − T(c2))
    g1, g2 = np.array([0.5, -0.5]), np.array([0.0, 0.5, -0.5])
    norm = fisher_norm_naive([np.full(2, 1 / 2), np.full(3, 1 / 3)], [g1, g2])
    eps = 1.0 / norm                                   # δ = δ⁰/Δ = 1
    tmin1, tmin2 = 0.25, 1 / 6                          # 1/(2·1)=0.5 capped at 1/(2K); 1/(2·2) capped at 1/6
    expected = np.concatenate([project_naive(0.5 + eps * g1, tmin1), project_naive(1 / 3 + eps * g2, tmin2)])
    np.testing.assert_allclose(dist.theta, expected, rtol=1e-12)
    beta = 1.0 / math.sqrt(3)
    assert opt.gamma == pytest.approx(beta * (2 - beta))
    assert opt.s @ opt.s == pytest.approx(beta * (2 - beta))           # s = sqrt(β(2−β)) · unit vector
    assert opt.Delta == pytest.approx(math.exp(beta * (beta * (2 - beta)) * (1 - 1 / 1.5)))
    assert opt.delta == pytest.approx(1.0 / opt.Delta)
    assert opt.last_epsilon == pytest.approx(eps)
    # second step: γ ← (1 − β)²γ + β(2 − β), s ← (1 − β)s + sqrt(β(2 − β)) a/‖a‖ with β = δ/√n_θ, δ = 1/Δ
    gamma1, s1, delta2 = opt.gamma, opt.s.copy(), opt.delta
    g = dist.natural_gradient(x)[0] * 0.5 - dist.natural_gradient(x)[1] * 0.5
    a = dist.fisher_sqrt(g)
    assert opt.tell(x, [1.0, 2.0])
    beta2 = delta2 / math.sqrt(3)
    assert opt.gamma == pytest.approx((1 - beta2) ** 2 * gamma1 + beta2 * (2 - beta2))
    np.testing.assert_allclose(opt.s, (1 - beta2) * s1 + math.sqrt(beta2 * (2 - beta2)) * a / np.linalg.norm(a))


def test_asng_beta_is_capped_for_huge_steps():
    opt = ASNG(CategoricalDistribution([2]), delta_init=10.0, seed=0)   # δ/√n_θ = 10
    assert opt.tell(np.array([[0], [1]]), [0.0, 1.0])
    assert opt.gamma == pytest.approx(1.0) and np.linalg.norm(opt.s) == pytest.approx(1.0)
    assert np.all(np.isfinite(opt.theta)) and math.isfinite(opt.Delta)


def test_asng_delta_max_bounds_Delta():
    opt = ASNG(CategoricalDistribution([3] * 4), delta_max=1.05, seed=1)
    for _ in range(200):
        opt.tell(opt.ask(), opt.rng.random(2))          # pure noise drives Δ up
    assert opt.Delta == pytest.approx(1.05)
    assert opt.delta == pytest.approx(1 / 1.05)


def test_sng_step_is_constant_trust_region():
    dist = CategoricalDistribution([2, 3])
    opt = SNG(dist, delta=0.1)
    opt.tell(np.array([[0, 1], [1, 2]]), [1.0, 2.0])
    g1, g2 = np.array([0.5, -0.5]), np.array([0.0, 0.5, -0.5])
    eps = 0.1 / fisher_norm_naive([np.full(2, 1 / 2), np.full(3, 1 / 3)], [g1, g2])
    np.testing.assert_allclose(dist.theta, np.concatenate([0.5 + eps * g1, 1 / 3 + eps * g2]))  # inside the domain


def test_pdas_first_step_hand_computed():
    dist = CategoricalDistribution([2, 3])
    opt = PDAS(dist)
    eta = 1 / math.sqrt(3)                             # η_max = (Σ(K_i − 1))^(-1/2), η⁰ = η_max
    assert opt.eta == pytest.approx(eta)
    opt.tell(np.array([[0, 1], [1, 2]]), [1.0, 2.0])
    g1, g2 = np.array([0.5, -0.5]), np.array([0.0, 0.5, -0.5])
    expected = np.concatenate([project_naive(0.5 + eta * g1, 0.25), project_naive(1 / 3 + eta * g2, 1 / 6)])
    np.testing.assert_allclose(dist.theta, expected)
    norm = fisher_norm_naive([np.full(2, 1 / 2), np.full(3, 1 / 3)], [g1, g2])
    s2 = eta * (2 - eta) * norm ** 2 / (3 / 2)          # Tr(F Cov[G]) = n_θ/2 for λ = 2
    assert opt.s @ opt.s == pytest.approx(s2)
    gamma = eta * (2 - eta)
    assert opt.gamma == pytest.approx(gamma)
    assert opt.eta == pytest.approx(min(eta, eta * math.exp(eta * (s2 / 1.5 - gamma))))


def test_adam_uses_normalised_natural_gradient():
    dist = CategoricalDistribution([2, 3])
    opt = NaturalGradientAdam(dist, lr=0.01)
    opt.tell(np.array([[0, 1], [1, 2]]), [1.0, 2.0])
    g = np.array([0.5, -0.5, 0.0, 0.5, -0.5])
    g = g / fisher_norm_naive([np.full(2, 1 / 2), np.full(3, 1 / 3)], [g[:2], g[2:]])
    # first Adam step: m̂ = g, v̂ = g², so the move is lr·g/(|g| + eps) = lr·sign(g)
    np.testing.assert_allclose(dist.theta - np.array([0.5, 0.5, 1 / 3, 1 / 3, 1 / 3]),
                               0.01 * g / (np.abs(g) + 1e-8), atol=1e-12)


def test_mixed_categorical_and_integer_step():
    cat = CategoricalDistribution([3])
    gau = GaussianDistribution([0.0], [10.0], integer=True, mean=[5.0], std=[2.0])
    opt = ASNG(ProductDistribution([cat, gau]))
    x = np.array([[0, 7.0], [2, 3.0]])
    opt.tell(x, [0.0, 1.0])
    g_cat = 0.5 * (np.array([1, 0, 0]) - np.array([0, 0, 1.0]))
    g_gau = 0.5 * (np.array([7.0, 49.0]) - np.array([3.0, 9.0]))
    var, mu = 4.0, 5.0
    fisher = np.linalg.inv([[var, 2 * mu * var], [2 * mu * var, 4 * mu ** 2 * var + 2 * var ** 2]])
    norm = math.sqrt(fisher_norm_naive([np.full(3, 1 / 3)], [g_cat]) ** 2 + g_gau @ fisher @ g_gau)
    eps = 1.0 / norm
    np.testing.assert_allclose(cat.theta, project_naive(np.full(3, 1 / 3) + eps * g_cat, 1 / 6))
    new_mu = 5.0 + eps * g_gau[0]
    new_var = 25.0 + 4.0 + eps * g_gau[1] - new_mu ** 2
    assert 0.25 ** 2 < new_var < 5.0 ** 2                  # inside the σ bounds: no clipping
    assert gau.mean[0] == pytest.approx(new_mu)
    assert gau.std[0] ** 2 == pytest.approx(new_var)


# ---------------------------------------------------------------------------- invariants (property tests)
OPTIMIZERS = [
    lambda d, lam, seed: ASNG(d, lam=lam, seed=seed),
    lambda d, lam, seed: ASNG(d, lam=lam, delta_init=10.0, seed=seed),
    lambda d, lam, seed: SNG(d, lam=lam, delta=3.0, seed=seed),
    lambda d, lam, seed: PDAS(d, lam=lam, seed=seed),
    lambda d, lam, seed: NaturalGradientAdam(d, lam=lam, lr=0.5, seed=seed),
]


@settings(max_examples=40, deadline=None)
@given(ks=st.lists(st.integers(1, 7), min_size=1, max_size=8), n_int=st.integers(0, 2),
       lam=st.integers(2, 9), which=st.integers(0, len(OPTIMIZERS) - 1), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1e-12, 1.0, 1e12]))
def test_theta_stays_in_domain(ks, n_int, lam, which, seed, scale):
    assume(any(k > 1 for k in ks) or n_int > 0)          # else nothing to search (tested below)
    cat = CategoricalDistribution(ks)
    gau = GaussianDistribution([0.0] * n_int, [5.0] * n_int) if n_int else None
    opt = OPTIMIZERS[which](ProductDistribution([cat, gau]), lam, seed)
    rng = np.random.default_rng(seed)
    for _ in range(30):
        x = opt.ask()
        losses = scale * rng.integers(0, 3, size=lam).astype(float)     # many ties on purpose
        opt.tell(x, losses)
        sums = np.add.reduceat(cat.theta, cat.offsets[:-1])
        np.testing.assert_allclose(sums, 1.0, atol=1e-9)
        assert np.all(cat.theta >= cat.theta_min[np.repeat(np.arange(len(ks)), ks)] - 1e-12)
        assert np.all(np.isfinite(opt.theta))
        if gau is not None:
            assert np.all(gau.std >= gau.std_min - 1e-9) and np.all(gau.std <= gau.std_max + 1e-9)
            assert np.all((gau.mean >= 0) & (gau.mean <= 5))


@settings(max_examples=25, deadline=None)
@given(which=st.integers(0, len(OPTIMIZERS) - 1), seed=st.integers(0, 10_000), lam=st.integers(2, 8))
def test_update_invariant_to_increasing_transform_of_losses(which, seed, lam):
    a = OPTIMIZERS[which](CategoricalDistribution([3, 4, 2, 5]), lam, seed)
    b = OPTIMIZERS[which](CategoricalDistribution([3, 4, 2, 5]), lam, seed)
    rng = np.random.default_rng(seed)
    for _ in range(25):
        xa, xb = a.ask(), b.ask()
        np.testing.assert_array_equal(xa, xb)
        losses = rng.normal(size=lam)
        a.tell(xa, losses)
        b.tell(xb, 3.0 * np.exp(2 * losses) + 7.0)         # strictly increasing transform
        np.testing.assert_array_equal(a.theta, b.theta)


def test_determinism_under_seed():
    def run(seed):
        opt = ASNG(CategoricalDistribution([5] * 6), lam=4, seed=seed)
        for _ in range(50):
            x = opt.ask()
            opt.tell(x, (x == 0).sum(axis=1) * -1.0)
        return opt.theta.copy()
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_state_dict_resumes_identical_trajectory():
    def loss(x):
        return -(x[:, :4] == 1).sum(axis=1) + x[:, 4]
    dist = ProductDistribution([CategoricalDistribution([3] * 4), GaussianDistribution([0.0], [9.0])])
    full = ASNG(dist, seed=5)
    for _ in range(30):
        x = full.ask()
        full.tell(x, loss(x))
    snapshot = full.state_dict()
    for _ in range(30):
        x = full.ask()
        full.tell(x, loss(x))
    resumed = ASNG(ProductDistribution([CategoricalDistribution([3] * 4), GaussianDistribution([0.0], [9.0])]))
    resumed.load_state_dict(snapshot)
    for _ in range(30):
        x = resumed.ask()
        resumed.tell(x, loss(x))
    np.testing.assert_array_equal(resumed.theta, full.theta)
    assert resumed.Delta == full.Delta


def test_nonfinite_loss_skips_update_and_warns_once():
    opt = ASNG(CategoricalDistribution([3, 3]), seed=0)
    before = opt.theta.copy()
    with pytest.warns(RuntimeWarning, match='non-finite loss'):
        assert not opt.tell(opt.ask(), [np.nan, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert not opt.tell(opt.ask(), [np.inf, 1.0])       # no second warning
    np.testing.assert_array_equal(opt.theta, before)
    assert opt.skipped_nonfinite == 2


def test_ties_skip_the_update():
    opt = ASNG(CategoricalDistribution([3, 3]), seed=0)
    before = opt.theta.copy()
    assert not opt.tell(opt.ask(), [0.5, 0.5])
    np.testing.assert_array_equal(opt.theta, before)
    assert opt.Delta == 1.0


@pytest.mark.parametrize('make, message', [
    (lambda d: ASNG(d, lam=1), 'lam'),
    (lambda d: ASNG(d, lam=2.5), 'lam'),
    (lambda d: ASNG(d, alpha=0), 'alpha'),
    (lambda d: ASNG(d, delta_init=-1), 'delta_init'),
    (lambda d: ASNG(d, delta_max=0.5), 'delta_max'),
    (lambda d: SNG(d, delta=0), 'delta'),
    (lambda d: PDAS(d, eta_init=2.0), 'eta'),
    (lambda d: NaturalGradientAdam(d, lr=0), 'lr'),
])
def test_malformed_hyperparameters_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make(CategoricalDistribution([3, 3]))


@pytest.mark.parametrize('make', [lambda d: ASNG(d), lambda d: PDAS(d), lambda d: SNG(d)])
def test_nothing_to_search_is_refused(make):
    with pytest.raises(ValueError, match='nothing to search'):
        make(CategoricalDistribution([1, 1]))


def test_tell_checks_shapes():
    opt = ASNG(CategoricalDistribution([3, 3]))
    with pytest.raises(ValueError, match='shape'):
        opt.tell(np.zeros((2, 3)), [1.0, 2.0])
    with pytest.raises(ValueError, match='2 samples but 3 losses'):
        opt.tell(np.zeros((2, 2)), [1.0, 2.0, 3.0])


@pytest.mark.parametrize('make', [lambda d: ASNG(d, seed=0), lambda d: PDAS(d, seed=0)])
def test_converges_on_separable_objective(make):
    """Minimise the number of variables not at category 0: θ must concentrate on all-zeros."""
    dist = CategoricalDistribution([4] * 10)
    opt = make(dist)
    for _ in range(3000):
        x = opt.ask()
        opt.tell(x, (x != 0).sum(axis=1).astype(float))
    np.testing.assert_array_equal(opt.most_likely(), np.zeros(10))
    assert dist.theta.reshape(10, 4)[:, 0].mean() > 0.8      # the bound θ_min = 1/30 caps it at 0.9


# ---------------------------------------------------------------------------- the domain boundary
@pytest.mark.parametrize('make', [ASNG, SNG, PDAS, NaturalGradientAdam], ids=['ASNG', 'SNG', 'PDAS', 'Adam'])
def test_fisher_optimizers_require_theta_min_above_zero(make):
    """F(θ) = diag(θ)⁻¹ + … is undefined at θ = 0 (asng-nas §2.4 projects onto θ >= θ_min > 0).

    theta_min=0 used to let a probability reach exactly 0 within a few steps; from then on the
    Fisher norm was NaN, so ASNG/SNG skipped every update and PDAS's η fell to 0. Now refused.
    """
    with pytest.raises(ValueError, match=r"theta_min=0 .*Fisher.*theta_min='paper'"):
        make(CategoricalDistribution([3, 3], theta_min=0.0))
    with pytest.raises(ValueError, match='theta_min=0'):
        make(ProductDistribution([CategoricalDistribution([2, 3], theta_min=0.0), GaussianDistribution([0.0], [1.0])]))


@pytest.mark.parametrize('make', [ASNG, SNG, PDAS, NaturalGradientAdam], ids=['ASNG', 'SNG', 'PDAS', 'Adam'])
def test_a_positive_theta_min_keeps_updates_going_at_the_bound(make):
    dist = CategoricalDistribution([3], theta=[1 - 2e-9, 1e-9, 1e-9], theta_min=1e-9)
    opt = make(dist)
    assert opt.tell(np.array([[1], [2]]), [0.0, 1.0])             # F(θ) finite at θ = θ_min > 0
    assert np.all(np.isfinite(opt.theta)) and opt.theta[1] > 1e-9
    assert opt.step_size > 0 and math.isfinite(opt.step_size)

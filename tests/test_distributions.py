"""Categorical, Gaussian and product families against hand-computed cases (asng-nas §2.4, pdas App. A/B)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nni_asng.distributions import CategoricalDistribution, GaussianDistribution, ProductDistribution


def explicit_categorical_fisher(theta_i):
    """F_i = diag(θ̄)⁻¹ + θ_K⁻¹ 11ᵀ in the reduced coordinates (pdas Eq. 6), built naively."""
    head, last = theta_i[:-1], theta_i[-1]
    return np.diag(1.0 / head) + np.ones((head.size, head.size)) / last


# ---------------------------------------------------------------------------- categorical
def test_uniform_start_and_sizes():
    d = CategoricalDistribution([2, 3, 1])
    assert d.num_variables == 3
    assert d.num_parameters == 1 + 2 + 0
    np.testing.assert_allclose(d.theta, [0.5, 0.5, 1 / 3, 1 / 3, 1 / 3, 1.0])


def test_log_likelihood_mode_entropy_hand_case():
    d = CategoricalDistribution([2, 3], theta=[0.2, 0.8, 0.5, 0.25, 0.25])
    x = np.array([[1, 2], [0, 0]])
    np.testing.assert_allclose(d.log_likelihood(x), [math.log(0.8) + math.log(0.25), math.log(0.2) + math.log(0.5)])
    np.testing.assert_array_equal(d.mode(), [1, 0])
    expected_h = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8) + 0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert d.entropy() == pytest.approx(expected_h)


def test_sufficient_statistics_and_natural_gradient():
    d = CategoricalDistribution([2, 3], theta=[0.2, 0.8, 0.5, 0.25, 0.25])
    t = d.sufficient_statistics(np.array([[1, 2]]))
    np.testing.assert_array_equal(t, [[0, 1, 0, 0, 1]])
    np.testing.assert_allclose(d.natural_gradient(np.array([[1, 2]])), [[-0.2, 0.2, -0.5, -0.25, 0.75]])


def test_sampling_frequencies_match_theta():
    theta = [0.1, 0.6, 0.3, 0.7, 0.3]
    d = CategoricalDistribution([3, 2], theta=theta)
    x = d.sample(200_000, np.random.default_rng(0))
    assert x.shape == (200_000, 2) and x.min() >= 0
    freq = d.sufficient_statistics(x).mean(axis=0)
    np.testing.assert_allclose(freq, theta, atol=0.005)


def test_sampling_is_deterministic_given_generator():
    d = CategoricalDistribution([4, 5, 6])
    a = d.sample(10, np.random.default_rng(7))
    b = d.sample(10, np.random.default_rng(7))
    c = d.sample(10, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_inverse_fisher_is_covariance_of_statistics():
    """pdas Eq. 7: F⁻¹ = diag(θ̄) − θ̄θ̄ᵀ, the covariance of the reduced one-hot statistic."""
    theta = np.array([0.1, 0.2, 0.3, 0.4])
    d = CategoricalDistribution([4], theta=theta)
    t = d.sufficient_statistics(d.sample(400_000, np.random.default_rng(1)))[:, :-1]
    np.testing.assert_allclose(np.cov(t.T), np.diag(theta[:-1]) - np.outer(theta[:-1], theta[:-1]), atol=2e-3)
    inv = np.diag(theta[:-1]) - np.outer(theta[:-1], theta[:-1])
    np.testing.assert_allclose(explicit_categorical_fisher(theta) @ inv, np.eye(3), atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(2, 6), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_fisher_sqrt_gives_fisher_norm(ks, seed):
    rng = np.random.default_rng(seed)
    theta = np.concatenate([rng.dirichlet(np.ones(k)) * 0.9 + 0.1 / k for k in ks])
    d = CategoricalDistribution(ks, theta=theta)
    g = d.natural_gradient(d.sample(3, rng)).sum(axis=0)
    expected, start = 0.0, 0
    for k in ks:
        th, gi = theta[start:start + k], g[start:start + k]
        expected += gi[:-1] @ explicit_categorical_fisher(th) @ gi[:-1]
        start += k
    a = d.fisher_sqrt(g)
    assert a.shape == (sum(k - 1 for k in ks),)
    assert a @ a == pytest.approx(expected, rel=1e-9)
    # equivalently Σ g²/θ over all categories, since each block of g sums to zero
    assert d.fisher_norm(g) ** 2 == pytest.approx(float((g ** 2 / theta).sum()), rel=1e-9)


def test_projection_hand_case():
    """pdas Eq. 11–12 with θ_min = 0.1: [0.95, 0.05, 0] → max → [0.95, 0.1, 0.1] → [0.8, 0.1, 0.1]."""
    d = CategoricalDistribution([3], theta_min=0.1)
    d.step(np.array([0.95, 0.05, 0.0]) - d.theta)
    np.testing.assert_allclose(d.theta, [0.8, 0.1, 0.1])


def test_projection_after_a_step_far_beyond_the_simplex_keeps_theta_min_exactly():
    """Entries of ~1e19 make Eq. 12 round the largest one to 0 in floating point: it must come back to θ_min
    and the row's rounding residue go to another entry (this case left θ at 0 before)."""
    d = CategoricalDistribution([5], theta_min=0.125)
    d.step(np.array([2.0670314873756193e19, 1627309.6014017838, 0.125, 0.125, 0.125]) - d.theta)
    assert np.all(d.theta >= 0.125) and d.theta.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(d.theta, [0.5, 0.125, 0.125, 0.125, 0.125])      # exact: [0.5, 0.125 + 3e-14, ...]


def test_paper_theta_min_and_cap():
    enas = CategoricalDistribution([5] * 40)
    np.testing.assert_allclose(enas.theta_min, 1 / (40 * 4))   # pdas App. B: 1/(D(K−1))
    tiny = CategoricalDistribution([2, 2, 1])                    # n_c = 2: paper bound 1/2 would pin θ
    np.testing.assert_allclose(tiny.theta_min, [0.25, 0.25, 0.0])


@pytest.mark.parametrize('bad, message', [
    (dict(num_categories=[]), 'non-empty'),
    (dict(num_categories=[3, 0]), 'at least one category'),
    (dict(num_categories=[3], theta=[0.5, 0.5, 0.5]), 'sum to 1'),
    (dict(num_categories=[3], theta=[0.5, 0.5]), '3 entries'),
    (dict(num_categories=[3], theta_min=0.4), 'no domain'),
    (dict(num_categories=[3], theta_min='ENAS'), "'paper'"),
])
def test_categorical_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        CategoricalDistribution(**bad)


def test_out_of_range_sample_names_the_variable():
    d = CategoricalDistribution([2, 3])
    with pytest.raises(ValueError, match='variable 1'):
        d.log_likelihood(np.array([[0, 3]]))


# ---------------------------------------------------------------------------- gaussian
def test_gaussian_initialisation_and_bounds():
    d = GaussianDistribution([64, 1], [256, 3])
    np.testing.assert_allclose(d.mean, [160, 2])
    np.testing.assert_allclose(d.std, [96, 1])
    np.testing.assert_allclose(d.theta, [160, 160 ** 2 + 96 ** 2, 2, 4 + 1])
    assert d.num_parameters == 4


def test_gaussian_fisher_block_matches_paper_formula():
    """asng-nas §2.4: F_i = [σ², 2μσ²; 2μσ², 4μ²σ² + 2σ⁴]⁻¹."""
    d = GaussianDistribution([0.0], [10.0], integer=False, mean=[3.0], std=[1.5])
    mu, var = 3.0, 1.5 ** 2
    fisher = np.linalg.inv(np.array([[var, 2 * mu * var], [2 * mu * var, 4 * mu ** 2 * var + 2 * var ** 2]]))
    rng = np.random.default_rng(3)
    for _ in range(5):
        g = rng.normal(size=2)
        a = d.fisher_sqrt(g)
        assert a @ a == pytest.approx(g @ fisher @ g, rel=1e-10)


def test_gaussian_covariance_of_statistics_is_inverse_fisher():
    d = GaussianDistribution([0.0], [10.0], integer=False, mean=[2.0], std=[0.5])
    t = d.sufficient_statistics(d.sample(400_000, np.random.default_rng(2)))
    mu, var = 2.0, 0.25
    expected = np.array([[var, 2 * mu * var], [2 * mu * var, 4 * mu ** 2 * var + 2 * var ** 2]])
    np.testing.assert_allclose(np.cov(t.T), expected, rtol=0.02)
    np.testing.assert_allclose(t.mean(axis=0), d.theta, rtol=0.01)


def test_gaussian_decode_clips_and_rounds_only_for_evaluation():
    d = GaussianDistribution([64, 1], [256, 3])
    assert d.decode(np.array([300.4, 0.2])) == [256, 1]
    assert d.decode(np.array([100.5, 2.49])) == [100, 2]
    x = d.sample(1000, np.random.default_rng(0))
    assert (x[:, 0] > 256).any() and not np.allclose(x, np.rint(x))   # samples themselves stay real


def test_gaussian_projection_keeps_std_in_range():
    d = GaussianDistribution([0.0], [8.0])
    d.step(np.array([100.0, -1e4]))          # pushes μ out of range and m below μ²
    assert d.mean[0] == 8.0
    assert d.std[0] == pytest.approx(0.25)
    d.step(np.array([0.0, 1e6]))
    assert d.std[0] == pytest.approx(4.0)


def test_gaussian_rejects_bad_bounds():
    with pytest.raises(ValueError, match='low < high'):
        GaussianDistribution([3], [3])
    with pytest.raises(ValueError, match='finite bounds'):
        GaussianDistribution([0], [np.inf])


# ---------------------------------------------------------------------------- product
def test_product_concatenates_blocks():
    cat = CategoricalDistribution([2, 3], theta=[0.2, 0.8, 0.5, 0.25, 0.25])
    gau = GaussianDistribution([0.0], [4.0], integer=True, mean=[1.0], std=[1.0])
    d = ProductDistribution([cat, gau])
    assert d.num_variables == 3 and d.num_parameters == 3 + 2
    x = np.array([[1, 2, 1.7]])
    np.testing.assert_allclose(d.natural_gradient(x), np.concatenate(
        [cat.natural_gradient(x[:, :2]), gau.natural_gradient(x[:, 2:])], axis=1))
    assert d.log_likelihood(x)[0] == pytest.approx(cat.log_likelihood(x[:, :2])[0] + gau.log_likelihood(x[:, 2:])[0])
    g = d.natural_gradient(x)[0]
    assert d.fisher_norm(g) ** 2 == pytest.approx(cat.fisher_norm(g[:5]) ** 2 + gau.fisher_norm(g[5:]) ** 2)
    assert d.decode(x[0]) == [1, 2, 2]
    np.testing.assert_allclose(d.mode(), [1, 0, 1.0])
    assert d.entropy() == pytest.approx(cat.entropy() + gau.entropy())

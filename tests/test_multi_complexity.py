"""Multi-complexity search: complexity table, the optimizer of Eq. 7–10, and the strategy."""

import nni
import numpy as np
import pytest
import torch.nn as nn
from hypothesis import given, settings, strategies as st
from nni.nas.hub.pytorch import NasBench201
from nni.nas.nn.pytorch import ModelSpace, MutableLinear

import nni_asng
from nni_asng.oneshot.complexity import count_parameters, measure_complexity
from nni_asng.optimizers import quantile_utility
from nni_asng.optimizers.multi_complexity import MultiComplexityOptimizer
from oneshot_harness import random_loaders, run_experiment, run_strategy
from test_strategy_natural_gradient import MixedSpace


def tiny_nb201():
    return NasBench201(stem_out_channels=4, num_modules_per_stack=1, num_labels=10)


@pytest.fixture(scope='module')
def nb201_table():
    """The parameter table of :func:`tiny_nb201`, measured once (25 freezes of NNI's NasBench201: ~8 s of CPU)
    for the tests that read it or hand it to the strategy; ``test_strategy_exports_n_architectures_smallest_first``
    keeps the strategy's own measuring path."""
    return measure_complexity(tiny_nb201())


# ---------------------------------------------------------------------------- utility and weights
def test_quantile_utility_cases():
    np.testing.assert_array_equal(quantile_utility([1.0, 2.0, 3.0, 4.0]), [-2, 0, 0, 2])   # q = .25 .5 .75 1
    np.testing.assert_array_equal(quantile_utility([3.0, 1.0]), [2, 0])                     # q = 1, .5
    np.testing.assert_array_equal(quantile_utility([1.0, 2.0], weights=[0.2, 1.8]), [-2, 2])  # q = .1, 1


def test_quantile_utility_ties_share_the_mean_utility():
    """An architecture drawn twice (equal losses) gets the pair's usual total utility (0 + 2), as random tie-breaking
    would give it in expectation; Eq. 9 taken literally gave 2 + 2, an extra push away from likely architectures."""
    np.testing.assert_array_equal(quantile_utility([1.0, 1.0]), [1, 1])                     # w(.5), w(1) -> mean
    np.testing.assert_array_equal(quantile_utility([2.0, 1.0, 2.0, 1.0]), [1, -1, 1, -1])   # (-2+0)/2, (0+2)/2
    np.testing.assert_array_equal(quantile_utility([1.0, 1.0], weights=[0.2, 1.8]), [0, 0])  # w(.1), w(1) -> mean


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), lam=st.integers(2, 8), seed=st.integers(0, 1000))
def test_importance_weights_average_to_one_over_distributions(n, lam, seed):
    opt = MultiComplexityOptimizer([3, 4, 2], np.zeros(9), epsilons=[0.1] * n, lam=lam, seed=seed)
    rng = np.random.default_rng(seed)
    for d in opt.distributions:                       # make the distributions differ
        d.step(rng.normal(scale=0.2, size=9) * (d.theta > 0) - 0)
    rows = opt.ask()
    r = opt.importance_weights(rows)
    assert r.shape == (n, lam)
    np.testing.assert_allclose(r.mean(axis=0), 1.0, rtol=1e-12)     # P_mix = N⁻¹ Σ_n P_n
    if n == 1:
        np.testing.assert_allclose(r, 1.0)


def test_importance_weights_hand_case():
    opt = MultiComplexityOptimizer([2], np.zeros(2), epsilons=[0.0, 0.0], theta_min=0.0)
    opt.distributions[0].theta = [0.9, 0.1]
    opt.distributions[1].theta = [0.3, 0.7]
    r = opt.importance_weights(np.array([[0], [1]]))
    np.testing.assert_allclose(r, [[0.9 / 0.6, 0.1 / 0.4], [0.3 / 0.6, 0.7 / 0.4]])


# ---------------------------------------------------------------------------- Eq. 10
def test_update_matches_eq10_hand_computed():
    c = np.array([0.0, 1.0, 4.0, 0.0, 2.0])        # variables with K = 3 and K = 2
    opt = MultiComplexityOptimizer([3, 2], c, epsilons=[0.5, 0.0], lam=2, lr=0.1, theta_min=0.0)
    th = [np.array([0.5, 0.3, 0.2, 0.6, 0.4]), np.array([0.2, 0.2, 0.6, 0.5, 0.5])]
    for d, t in zip(opt.distributions, th):
        d.theta = t
    rows = np.array([[0, 1], [2, 0]])
    losses = np.array([0.3, 0.7])
    opt.tell(rows, losses)
    onehot = np.array([[1, 0, 0, 0, 1], [0, 0, 1, 1, 0.0]])
    p = np.array([[t[0] * t[4], t[2] * t[3]] for t in th])     # P_n(M_k)
    r = p / p.mean(axis=0)
    for n, (eps, t) in enumerate(zip([0.5, 0.0], th)):
        q = np.array([(r[n] * (losses <= losses[i])).sum() / 2 for i in range(2)])
        s = np.where(q <= 0.25, -2, np.where(q <= 0.75, 0, 2))
        q_d = np.array([c[:3] @ t[:3]] * 3 + [c[3:] @ t[3:]] * 2)
        expected = t - 0.1 * ((s * r[n]) @ (onehot - t) / 2 + eps * (c - q_d) * t)
        np.testing.assert_allclose(opt.distributions[n].theta, expected, rtol=1e-12)


def test_single_distribution_is_epsilon_regularised_sng_eq7():
    c = np.array([0.0, 1.0, 0.0, 3.0])
    opt = MultiComplexityOptimizer([2, 2], c, epsilons=[0.2], lam=2, lr=0.05, theta_min=0.0)
    rows, losses = np.array([[0, 1], [1, 0]]), np.array([2.0, 1.0])
    opt.tell(rows, losses)
    t = np.full(4, 0.5)
    s = quantile_utility(losses)                      # r = 1 for N = 1
    onehot = np.array([[1, 0, 0, 1], [0, 1, 1, 0.0]])
    q = np.array([0.5, 0.5, 1.5, 1.5])
    np.testing.assert_allclose(opt.distributions[0].theta, t - 0.05 * (s @ (onehot - t) / 2 + 0.2 * (c - q) * t))


def test_larger_epsilon_gives_smaller_expected_complexity():
    rng = np.random.default_rng(0)
    c = np.tile([0.0, 0.5, 1.0], 6)
    opt = MultiComplexityOptimizer([3] * 6, c, epsilons=[0.0, 0.5, 2.0], lam=4, lr=0.05, seed=0)
    for _ in range(600):
        rows = opt.ask()
        opt.tell(rows, rng.normal(size=4))              # the loss carries no information
    e = opt.expected_complexity()
    assert e[0] > e[1] > e[2]
    assert e[2] < 0.25 * c.reshape(6, 3).max(axis=1).sum()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), lam=st.integers(2, 6), eps=st.lists(st.floats(0, 10), min_size=1, max_size=3))
def test_theta_stays_in_domain(seed, lam, eps):
    rng = np.random.default_rng(seed)
    opt = MultiComplexityOptimizer([2, 5, 3], rng.uniform(0, 100, 10), epsilons=eps, lam=lam, lr=0.5, seed=seed)
    for _ in range(20):
        rows = opt.ask()
        opt.tell(rows, rng.integers(0, 2, lam).astype(float))
        for d in opt.distributions:
            np.testing.assert_allclose(np.add.reduceat(d.theta, d.offsets[:-1]), 1.0, atol=1e-9)
            assert np.all(d.theta >= d.theta_min[np.repeat(np.arange(3), [2, 5, 3])] - 1e-12)


@pytest.mark.parametrize('kwargs, message', [
    (dict(epsilons=[]), 'at least one'), (dict(epsilons=[0.1, -1]), '>= 0'),
    (dict(epsilons=[0.1], lam=1), 'lam'), (dict(epsilons=[0.1], lr=0), 'lr'),
])
def test_optimizer_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiComplexityOptimizer([2, 2], np.zeros(4), **kwargs)


# ---------------------------------------------------------------------------- complexity table
@pytest.mark.parametrize('make', [MixedSpace, tiny_nb201], ids=['mixed', 'nb201'])
def test_parameter_count_is_base_plus_choice_complexities(make, request):
    """Eq. 6 holds exactly: for random architectures, params(frozen) = R(b) + Σ c over the choices."""
    space = make()
    table = request.getfixturevalue('nb201_table') if make is tiny_nb201 else measure_complexity(space)
    encoding = table.encoding
    for row in encoding.distribution().sample(6, np.random.default_rng(1)):
        arch = encoding.to_architecture(row)
        assert count_parameters(make().freeze(arch)) == table.predict(arch)
    assert table.additivity_error(space, samples=3) == 0.0


def test_expected_complexity_is_theta_weighted_sum(nb201_table):
    table = nb201_table
    opt = MultiComplexityOptimizer(table.encoding.num_categories, table.per_category, epsilons=[0.0], seed=3)
    theta = opt.distributions[0].theta
    rows = opt.ask(4000)
    mean = np.mean([table.predict(table.encoding.to_architecture(r)) for r in rows])
    expected = table.base + opt.expected_complexity()[0]
    assert mean == pytest.approx(expected, rel=0.02)                  # E[R(M)] = Σ c θ (Eq. 6)
    assert opt.expected_complexity()[0] == pytest.approx(float(table.per_category @ theta))


def test_flops_metric():
    table = measure_complexity(tiny_nb201(), metric='flops', input_shape=(3, 16, 16))
    conv3 = [i for i, v in enumerate(v for var in table.encoding.categorical for v in var.values) if v == 'conv_3x3']
    conv1 = [i for i, v in enumerate(v for var in table.encoding.categorical for v in var.values) if v == 'conv_1x1']
    assert np.all(table.per_category[conv3] > table.per_category[conv1]) and table.base > 0


class BrokenChoice(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = MutableLinear(4, nni.choice('width', [8, -3]))
        self.out = nn.Linear(8, 10)

    def forward(self, x):
        return self.out(self.fc(x))


def test_unmeasurable_choice_names_label_and_value():
    with pytest.raises(nni_asng.ComplexityError, match=r"label 'width', value -3"):
        measure_complexity(BrokenChoice())


def test_normalisation(nb201_table):
    table = nb201_table
    c = table.normalised('max')
    offsets = table.encoding.category_offsets()[:-1]
    assert (np.maximum.reduceat(c, offsets) - np.minimum.reduceat(c, offsets)).max() == pytest.approx(1.0)
    np.testing.assert_allclose(table.normalised(1e3), table.per_category / 1e3)
    with pytest.raises(ValueError, match='scale'):
        table.normalised(0)


# ---------------------------------------------------------------------------- strategy
def test_strategy_exports_n_architectures_smallest_first(tmp_path):
    strategy = nni_asng.MultiComplexity(epsilons=[0.0, 1.0, 3.0], weight_epochs=1, theta_epochs=3, seed=0,
                                        learning_rate=0.2)
    run_strategy(tiny_nb201(), strategy, tmp_path, (3, 16, 16), n=32, batch_size=8, max_epochs=4)
    searcher = strategy.searcher
    assert searcher.optimizer.iteration == 3 * 4                       # θ only in the last 3 epochs
    results = strategy.results()
    assert [r['epsilon'] for r in results] == [0.0, 1.0, 3.0]
    archs = list(strategy.list_models(limit=None))
    params = [strategy.complexity_table.predict(m.sample) for m in archs]
    assert len(archs) == 3 and params == sorted(params)
    expected = searcher.optimizer.expected_complexity()
    assert expected[2] < expected[0]                                    # larger ε, smaller E[R(M)]


def test_separate_method_updates_one_distribution_per_stage(tmp_path, nb201_table):
    strategy = nni_asng.MultiComplexity(epsilons=[0.0, 2.0], weight_epochs=1, theta_epochs=1, method='separate', seed=0,
                                        complexity_table=nb201_table)
    run_strategy(tiny_nb201(), strategy, tmp_path, (3, 16, 16), n=32, batch_size=8, max_epochs=3)
    opt = strategy.searcher.optimizer
    assert opt.iteration == 2 * 4 and not opt.importance_sampling
    assert all(not np.allclose(d.theta, 0.2) for d in opt.distributions)     # both left the uniform start


def test_too_few_epochs_is_a_clear_error(tmp_path, nb201_table):
    strategy = nni_asng.MultiComplexity(epsilons=[0.0, 1.0], weight_epochs=2, theta_epochs=3,
                                        complexity_table=nb201_table)
    with pytest.raises(ValueError, match='needs 5 epochs.*max_epochs=5'):
        run_strategy(tiny_nb201(), strategy, tmp_path, (3, 16, 16), max_epochs=2)


def test_collapsed_distributions_warn(tmp_path, nb201_table):
    # identical ε and identical starts: every update is identical, so the exports coincide
    strategy = nni_asng.MultiComplexity(epsilons=[0.0, 0.0], weight_epochs=1, theta_epochs=1, seed=0,
                                        complexity_table=nb201_table)
    run_strategy(tiny_nb201(), strategy, tmp_path, (3, 16, 16), n=8, batch_size=8, max_epochs=2)
    with pytest.warns(RuntimeWarning, match='collapsed'):
        list(strategy.list_models(limit=None))


@pytest.mark.parametrize('kwargs, message', [
    (dict(epsilons=[]), 'at least one'), (dict(epsilons=[-0.1]), '>= 0'),
    (dict(method='both'), 'method must be one of'), (dict(method='simultaneous', epsilons=[0, 1]), 'single ε'),
    (dict(theta_epochs=0), 'theta_epochs'), (dict(weight_epochs=-1), 'weight_epochs'),
    (dict(complexity_scale=-1), 'complexity_scale'),
])
def test_strategy_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nni_asng.MultiComplexity(**kwargs)


# ---------------------------------------------------------------------------- the spaces we ship
def shipped_space(name):
    from search_spaces.enas_cell import ENASCellSpace
    from search_spaces.nas_bench_201 import NasBench201Space
    from search_spaces.proxyless import ProxylessSpace
    return {'nas_bench_201': lambda: NasBench201Space(channels=4, num_cells=1),
            'proxyless': lambda: ProxylessSpace(width_mult=0.25, stages=((8, 2, 1), (16, 2, 2))),
            'enas_cell': lambda: ENASCellSpace(channels=4, cells_per_stage=1)}[name]()


@pytest.mark.parametrize('name', ['nas_bench_201', 'proxyless'])
def test_shipped_additive_spaces_count_exactly(name):
    """Eq. 6 is exact on NB201 and ProxylessNAS: params(child) = R(b) + Σ c_{d, M_d}."""
    space = shipped_space(name)
    assert measure_complexity(space).additivity_error(space, samples=5, seed=1) == 0.0


def test_regression_fits_the_interacting_enas_cell_better():
    """The ENAS cell is not additive (loose-end concatenation makes nodes interact); the least-squares
    main effects are the closer additive model. README documents the measured errors."""
    space = shipped_space('enas_cell')
    marginal = measure_complexity(space).additivity_error(space, samples=8, seed=5)
    regression = measure_complexity(space, method='regression', samples=160).additivity_error(space, samples=8, seed=5)
    assert marginal > 0.05
    assert regression < marginal and regression < 0.12


def test_theta_only_search_from_given_weights_and_table(tmp_path, nb201_table):
    """weight_epochs=0 starts the θ stage at once (weights loaded elsewhere); a given table is reused."""
    table = nb201_table
    strategy = nni_asng.MultiComplexity(epsilons=[0.0, 1.0], weight_epochs=0, theta_epochs=1, seed=0,
                                        complexity_table=table)
    run_strategy(tiny_nb201(), strategy, tmp_path, (3, 16, 16), n=16, batch_size=8)
    assert strategy.complexity_table is table
    assert strategy.searcher.optimizer.iteration == 2


def test_weights_lr_schedule_spans_only_the_weight_stage(tmp_path, nb201_table):
    """The cosine schedule of the weights anneals over T_W epochs; θ-only epochs do not step it."""
    from nni_asng.evaluators.classification import classification_evaluator
    train, val = random_loaders((3, 16, 16), 10, n=32, batch_size=8)         # 4 steps per epoch
    evaluator = classification_evaluator(train, val, recipe=dict(optimizer='sgd', learning_rate=0.1,
                                                                 lr_schedule='cosine', min_lr=0.0),
                                         max_epochs=3, enable_progress_bar=False, logger=False,
                                         enable_checkpointing=False, enable_model_summary=False,
                                         default_root_dir=str(tmp_path))
    strategy = nni_asng.MultiComplexity(epsilons=[0.0], weight_epochs=1, theta_epochs=2, seed=0,
                                        complexity_table=nb201_table)
    run_experiment(tiny_nb201(), evaluator, strategy, tmp_path / 'nni')
    module = strategy.oneshot_module
    assert module.weight_training_steps == 4
    scheduler = module.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.T_max == 4 and scheduler.last_epoch == 4                 # stepped only in the weight stage
    assert module.trainer.optimizers[0].param_groups[0]['lr'] == pytest.approx(0.0, abs=1e-12)

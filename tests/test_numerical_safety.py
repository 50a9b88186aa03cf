"""Numerical safety: NaN/inf losses, all-equal losses, θ at its bounds, huge and tiny loss scales.

Complements the property tests of test_optimizers.py (finite losses with ties at three scales),
test_policy_gradient.py (NaN losses at three scales) and test_multi_complexity.py (finite losses):
here the loss vectors mix NaN, ±inf, ±1.7e308, subnormals and exact ties, the spaces are random NNI
mutables (categorical values of any type, bounded integers and reals), and the exported
architecture is checked by NNI itself (``Mutable.contains``). The end-to-end part runs a search
whose loss turns NaN through the CLI: it either finishes with a valid architecture or stops with a
clear error, and never writes a corrupted ``architecture.json``.
"""
from __future__ import annotations

import contextlib
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from nni.mutable import Categorical, MutableDict, Numerical

from cli_harness import assert_valid_architecture, needs_fashion_mnist, write_config
from nni_asng import SearchSpaceEncoding
from nni_asng.distributions import CategoricalDistribution, GaussianDistribution, ProductDistribution
from nni_asng.optimizers import ASNG, PDAS, SNG, NaturalGradientAdam
from nni_asng.optimizers.multi_complexity import MultiComplexityOptimizer
from nni_asng.optimizers.policy_gradient import AdvantageOptimizer, ReinforceOptimizer, SoftmaxCategoricalPolicy


HUGE = 1.7e308                 # ×2 overflows to inf
SPECIAL = [0.0, -0.0, 5e-324, -5e-324, 1e-300, -1e-300, 1e300, -1e300, HUGE, -HUGE, math.nan, math.inf, -math.inf]
LOSS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL))
FINITE = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(SPECIAL[:10]))

NATURAL_GRADIENT = {
    'ASNG': lambda d, lam, seed: ASNG(d, lam=lam, seed=seed),
    'ASNG-big-delta': lambda d, lam, seed: ASNG(d, lam=lam, delta_init=1e6, seed=seed),
    'SNG': lambda d, lam, seed: SNG(d, lam=lam, delta=50.0, seed=seed),
    'PDAS': lambda d, lam, seed: PDAS(d, lam=lam, seed=seed),
    'Adam': lambda d, lam, seed: NaturalGradientAdam(d, lam=lam, lr=1.0, seed=seed),
}


@st.composite
def spaces(draw):
    """A dict of NNI mutables: categorical choices over ints, floats or strings; bounded numbers."""
    values = st.one_of(st.integers(-9, 9), st.floats(-2.0, 2.0, allow_nan=False), st.text('abc', min_size=1,
                                                                                             max_size=3))
    mutables = {}
    for i in range(draw(st.integers(0, 4))):
        mutables[f'c{i}'] = Categorical(draw(st.lists(values, min_size=1, max_size=5, unique=True)), label=f'c{i}')
    for j in range(draw(st.integers(0, 2))):
        low = draw(st.integers(-10, 10))
        mutables[f'n{j}'] = Numerical(low, low + draw(st.integers(1, 20)), quantize=draw(st.sampled_from([None, 1])),
                                      label=f'n{j}')
    assume(any(isinstance(m, Numerical) or len(m.values) > 1 for m in mutables.values()))
    return mutables


def assert_valid(distribution: ProductDistribution) -> None:
    """θ lies in the domain of every block (categorical: rows sum to 1, θ >= θ_min; Gaussian: bounds)."""
    assert distribution.parts
    for part in distribution.parts:
        theta = part.theta
        assert np.all(np.isfinite(theta))
        if isinstance(part, CategoricalDistribution):
            np.testing.assert_allclose(np.add.reduceat(theta, part.offsets[:-1]), 1.0, atol=1e-9)
            lo = part.theta_min[np.repeat(np.arange(part.num_variables), part.num_categories)]
            assert np.all(theta >= lo)          # exactly, also after steps of 1e6 and more
        else:
            assert isinstance(part, GaussianDistribution)
            assert np.all((part.mean >= part.low) & (part.mean <= part.high))
            assert np.all((part.std >= part.std_min - 1e-9) & (part.std <= part.std_max + 1e-9))


def assert_exports_valid(encoding: SearchSpaceEncoding, mutables: dict, row: np.ndarray) -> None:
    arch = encoding.to_architecture(row)
    encoding.validate(arch)
    assert MutableDict(mutables).contains(arch), f'NNI rejects the exported architecture {arch}'


@settings(max_examples=60, deadline=None)
@given(mutables=spaces(), which=st.sampled_from(sorted(NATURAL_GRADIENT)), lam=st.integers(2, 6),
       seed=st.integers(0, 2 ** 16), data=st.data())
def test_natural_gradient_updates_stay_valid_under_any_losses(mutables, which, lam, seed, data):
    encoding = SearchSpaceEncoding(mutables)
    distribution = encoding.distribution()
    opt = NATURAL_GRADIENT[which](distribution, lam, seed)
    for _ in range(data.draw(st.integers(1, 10), label='steps')):
        rows = opt.ask()
        kind = data.draw(st.sampled_from(['any', 'finite', 'equal']), label='kind')
        if kind == 'equal':
            losses = [data.draw(LOSS, label='tie')] * lam
        else:
            losses = data.draw(st.lists(LOSS if kind == 'any' else FINITE, min_size=lam, max_size=lam), label='losses')
        before = opt.theta.copy()
        with np.errstate(all='raise'), _no_fail():
            moved = opt.tell(rows, losses)
        if not np.all(np.isfinite(losses)) or kind == 'equal':
            assert not moved, 'a NaN/inf or all-equal loss vector must not move θ'
            np.testing.assert_array_equal(opt.theta, before)
        assert_valid(distribution)
        assert_exports_valid(encoding, mutables, opt.most_likely())
        for row in opt.ask(3):
            assert_exports_valid(encoding, mutables, row)


@contextlib.contextmanager
def _no_fail():
    """The optimizers' RuntimeWarning about non-finite losses is expected here; exceptions are not."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        yield


@settings(max_examples=40, deadline=None)
@given(ks=st.lists(st.integers(2, 6), min_size=1, max_size=5), which=st.sampled_from(sorted(NATURAL_GRADIENT)),
       corner=st.integers(0, 5), seed=st.integers(0, 2 ** 16), towards=st.booleans(),
       scale=st.sampled_from([5e-324, 1e-300, 1.0, 1e300, HUGE]))
def test_theta_at_its_bounds_stays_in_the_domain(ks, which, corner, seed, towards, scale):
    """Every variable starts at a vertex of its domain (θ_min everywhere but one category), the integer
    at its upper bound with the smallest σ; losses push further out (or back), at extreme scales."""
    cat = CategoricalDistribution(ks)
    gauss = GaussianDistribution([0.0], [4.0], integer=True)
    theta = np.concatenate([np.full(k, cat.theta_min[i]) for i, k in enumerate(ks)])
    for i, k in enumerate(ks):
        theta[cat.offsets[i] + corner % k] = 1.0 - (k - 1) * cat.theta_min[i]
    cat.theta = theta
    gauss.theta = [4.0, 16.0 + float(gauss.std_min[0]) ** 2]
    product = ProductDistribution([cat, gauss])
    opt = NATURAL_GRADIENT[which](product, 4, seed)
    for _ in range(15):
        rows = opt.ask()
        at_corner = np.all(rows[:, :len(ks)] == np.array([corner % k for k in ks]), axis=1) & (rows[:, -1] >= 3.5)
        losses = scale * np.where(at_corner == towards, 0.0, 1.0)
        if np.all(losses == losses[0]):
            losses = scale * np.linspace(0.0, 1.0, 4)
        with _no_fail(), np.errstate(all='raise'):
            opt.tell(rows, losses)
        for part in (cat, gauss):
            assert np.all(np.isfinite(part.theta))
        np.testing.assert_allclose(np.add.reduceat(cat.theta, cat.offsets[:-1]), 1.0, atol=1e-9)
        assert cat.theta.min() >= cat.theta_min.min()
        assert 0.0 <= gauss.mean[0] <= 4.0 and gauss.std_min - 1e-9 <= gauss.std[0] <= gauss.std_max + 1e-9
        assert (opt.ask(5)[:, :len(ks)] < np.asarray(ks)).all()


@settings(max_examples=40, deadline=None)
@given(ks=st.lists(st.integers(1, 5), min_size=1, max_size=5), advantage=st.booleans(), seed=st.integers(0, 2 ** 16),
       saturate=st.sampled_from([0.0, 50.0, 700.0]), data=st.data())
def test_policy_gradient_stays_a_distribution_under_infinite_losses_and_advantages(ks, advantage, seed, saturate,
                                                                                   data):
    policy = SoftmaxCategoricalPolicy(ks)
    # optionally start saturated: one category per variable far ahead
    policy.logits[:] = np.concatenate([np.eye(k)[seed % k] * saturate for k in ks])
    kwargs = dict(lr=0.5, weight_decay=0.0, grad_clip=data.draw(st.sampled_from([None, 1.0])), seed=seed)
    opt = AdvantageOptimizer(policy, **kwargs) if advantage else ReinforceOptimizer(policy, **kwargs)
    for _ in range(data.draw(st.integers(1, 12))):
        row = opt.ask()[0]
        loss = data.draw(LOSS)
        before = policy.logits.copy()
        with _no_fail():
            if advantage:
                moved = opt.tell(row, loss, data.draw(st.lists(LOSS, min_size=len(ks), max_size=len(ks))))
            else:
                moved = opt.tell(row, loss)
        if not math.isfinite(loss):
            assert not moved
            np.testing.assert_array_equal(policy.logits, before)
        p = policy.probabilities()
        assert np.all(np.isfinite(policy.logits)) and np.all(np.isfinite(p)) and np.all(p >= 0)
        np.testing.assert_allclose(np.add.reduceat(p, policy.offsets[:-1]), 1.0, atol=1e-9)
        assert (opt.ask(4) < np.asarray(ks)).all() and (opt.most_likely() < np.asarray(ks)).all()


@settings(max_examples=40, deadline=None)
@given(ks=st.lists(st.integers(2, 5), min_size=1, max_size=4), n=st.integers(1, 3), lam=st.integers(2, 6),
       eps=st.sampled_from([0.0, 1e-3, 1.0, 1e3]), seed=st.integers(0, 2 ** 16), data=st.data())
def test_multi_complexity_distributions_stay_valid(ks, n, lam, eps, seed, data):
    """N distributions, complexities up to ±1e6 and ε up to 3e3 (steps |η ε c| up to ~1e9): every θ stays a
    distribution, and θ >= θ_min."""
    complexity = np.array(data.draw(st.lists(st.floats(-1e6, 1e6), min_size=sum(ks), max_size=sum(ks))))
    opt = MultiComplexityOptimizer(ks, complexity, [eps * (i + 1) for i in range(n)], lam=lam, seed=seed)
    for _ in range(data.draw(st.integers(1, 8))):
        rows = opt.ask()
        losses = data.draw(st.lists(LOSS, min_size=lam, max_size=lam))
        before = [d.theta.copy() for d in opt.distributions]
        with _no_fail():
            moved = opt.tell(rows, losses)
        if not np.all(np.isfinite(losses)):
            assert not moved
            for d, b in zip(opt.distributions, before):
                np.testing.assert_array_equal(d.theta, b)
        for d in opt.distributions:
            assert np.all(np.isfinite(d.theta))
            np.testing.assert_allclose(np.add.reduceat(d.theta, d.offsets[:-1]), 1.0, atol=1e-9)
            assert np.all(d.theta >= d.theta_min.min())
        assert all((m < np.asarray(ks)).all() for m in opt.most_likely())


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def isolated_nni(tmp_path_factory):
    """In-process CLI runs: NNI's experiment manifest goes to tmp."""
    from nni.tools.nnictl.config_utils import Experiments
    saved = Experiments.__init__.__defaults__
    Experiments.__init__.__defaults__ = (str(tmp_path_factory.mktemp('nni-home')),)
    yield
    Experiments.__init__.__defaults__ = saved


def _no_nan_in(obj, where: str) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _no_nan_in(v, f'{where}.{k}')
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_nan_in(v, f'{where}[{i}]')
    elif isinstance(obj, float):
        assert math.isfinite(obj), f'{where} = {obj}'


@needs_fashion_mnist
@pytest.mark.parametrize('limit, outcome', [(192, 'done'), (1280, 'failed')], ids=['transient', 'persistent'])
def test_nan_loss_search_never_writes_a_corrupted_architecture(limit, outcome, tmp_path, capsys, isolated_nni):
    """lr = 1e30 makes the weights, then the loss, NaN after the first step. With 6 steps the search
    skips those weight and θ updates and exports a valid architecture; with 40 it stops after 20 NaN
    steps in a row with a clear message and writes no architecture at all."""
    from nni_asng.app.cli import main
    config = write_config(tmp_path / 'nan.yaml', data__limit=limit)
    out = tmp_path / 'out'
    code = main(['search', str(config), '--output', str(out), '--set', 'search.optimizer.lr=1.0e+30'])
    err = capsys.readouterr().err
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['status'] == outcome and 'Traceback' not in err
    if (out / 'history.json').exists():         # the epochs recorded before a failure are kept, as valid JSON
        _no_nan_in(json.loads((out / 'history.json').read_text()), 'history')
    if outcome == 'done':
        assert code == 0
        assert_valid_architecture(out)
        probabilities = json.loads((out / 'probabilities.json').read_text())
        _no_nan_in(probabilities, 'probabilities')
        for p in probabilities.values():
            assert abs(sum(p.values()) - 1.0) < 1e-9
    else:
        assert code == 2
        assert 'NaN/inf for 20 steps in a row' in err and 'lower the learning rate' in err
        assert 'NonFiniteLossError' in summary['error']
        assert not (out / 'architecture.json').exists()

"""NNI mutables ↔ distribution variables."""
import numpy as np
import pytest
from nni.mutable import Categorical, CategoricalMultiple, Numerical

from nni_asng import ArchitectureError, SearchSpaceEncoding, UnsupportedSpaceError
from nni_asng.distributions import CategoricalDistribution, GaussianDistribution


def mixed():
    return {
        'op': Categorical(['conv', 'pool', 'skip'], label='op'),
        'in1': CategoricalMultiple([0, 1], n_chosen=1, label='in1'),
        'in2': CategoricalMultiple([0, 1, 2], n_chosen=2, label='in2'),
        'ch': Numerical(64, 256, quantize=1, label='ch'),
        'p': Numerical(0.0, 0.5, label='p'),
    }


def test_variables_and_distribution():
    enc = SearchSpaceEncoding(mixed())
    assert enc.labels == ['op', 'in1', 'in2', 'ch', 'p']              # categorical first, then numerical
    assert enc.num_categories == [3, 2, 3]                              # C(3, 2) = 3 subsets
    assert enc.categorical[2].values == [[0, 1], [0, 2], [1, 2]]
    dist = enc.distribution()
    cat, gau = dist.parts
    assert isinstance(cat, CategoricalDistribution) and isinstance(gau, GaussianDistribution)
    assert dist.num_parameters == (2 + 1 + 2) + 2 * 2
    np.testing.assert_allclose(gau.mean, [160, 0.25])


def test_rows_map_to_nni_architectures_and_back():
    enc = SearchSpaceEncoding(mixed())
    arch = enc.to_architecture(np.array([2, 1, 0, 130.6, 0.61]))
    assert arch == {'op': 'skip', 'in1': [1], 'in2': [0, 1], 'ch': 131, 'p': 0.5}
    assert isinstance(arch['ch'], int)
    np.testing.assert_allclose(enc.to_row(arch), [2, 1, 0, 131, 0.5])
    # values NNI or users may write differently: bare index, tuple, unsorted list
    np.testing.assert_allclose(enc.to_row({**arch, 'in1': 1, 'in2': (1, 0)}), [2, 1, 0, 131, 0.5])


def test_every_sample_is_accepted_by_nni():
    muts = mixed()
    enc = SearchSpaceEncoding(muts)
    dist = enc.distribution()
    for row in dist.sample(50, np.random.default_rng(0)):
        arch = enc.to_architecture(row)
        for label, mutable in muts.items():
            assert mutable.check_contains({label: arch[label]}) is None, (label, arch[label])


@pytest.mark.parametrize('arch, message', [
    ({'op': 'conv', 'in1': [0], 'in2': [0, 1], 'ch': 64}, r"missing label\(s\) \['p'\]"),
    ({'op': 'dense', 'in1': [0], 'in2': [0, 1], 'ch': 64, 'p': 0.1}, r"'op'.*'dense'.*\['conv', 'pool', 'skip'\]"),
    ({'op': 'conv', 'in1': [2], 'in2': [0, 1], 'ch': 64, 'p': 0.1}, r"'in1'.*\[\[0\], \[1\]\]"),
    ({'op': 'conv', 'in1': [0], 'in2': [0, 1], 'ch': 300, 'p': 0.1}, r"'ch'.*\[64.0, 256.0\]"),
    ({'op': 'conv', 'in1': [0], 'in2': [0, 1], 'ch': 'wide', 'p': 0.1}, r"'ch'"),
    ({'op': 'conv', 'in1': [0], 'in2': [0, 1], 'ch': 64, 'p': 0.1, 'extra': 1}, r"unknown label\(s\) \['extra'\]"),
    (['conv'], 'must be a dict'),
])
def test_invalid_architectures_name_label_and_allowed_values(arch, message):
    with pytest.raises(ArchitectureError, match=message):
        SearchSpaceEncoding(mixed()).to_row(arch)


@pytest.mark.parametrize('mutables, message', [
    ({}, 'nothing to search'),
    ({'one': Categorical(['only'], label='one')}, r"single value \(\['one'\]\).*nothing to search"),
    ({'any': CategoricalMultiple([0, 1, 2], n_chosen=None, label='any')}, r"'any'.*n_chosen=None"),
    ({'lr': Numerical(1e-4, 1e-1, log_distributed=True, label='lr')}, r"'lr'.*log_distributed=True"),
    ({'w': Numerical(mu=0, sigma=1, label='w')}, r"'w'.*finite low/high"),
])
def test_unsupported_mutables_are_named(mutables, message):
    with pytest.raises(UnsupportedSpaceError, match=message):
        SearchSpaceEncoding(mutables)


def test_describe_lists_every_variable():
    text = SearchSpaceEncoding(mixed()).describe()
    for label in ['op', 'in1', 'in2', 'ch', 'p']:
        assert f'  {label}:' in text


def test_sigma_min_scales_with_each_numerical_variable():
    """σ_min is a quarter of the quantum (asng-nas §3.3 "Int") or a fraction of a continuous range."""
    muts = {**mixed(), 'w': Numerical(0, 64, quantize=16, label='w')}
    gau = SearchSpaceEncoding(muts).distribution().parts[1]
    np.testing.assert_allclose(gau.std_min, [0.25, 0.5 / 100, 4.0])         # ch: step 1, p: 1% of 0.5, w: step 16
    gau = SearchSpaceEncoding(muts).distribution(sigma_min_fraction=0.1).parts[1]
    np.testing.assert_allclose(gau.std_min, [0.25, 0.05, 4.0])


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('name', ['ASNG', 'SNG', 'PDAS'])
def test_small_range_uniform_concentrates_near_the_optimum(name, seed):
    """nni.uniform('p', 0, 0.5) with loss (p − 0.1)²: a fixed σ_min of 0.25 pinned σ at (high − low)/2."""
    from nni_asng import optimizers
    enc = SearchSpaceEncoding({'p': Numerical(0.0, 0.5, label='p')})
    opt = getattr(optimizers, name)(enc.distribution(), seed=seed)
    for _ in range(300):
        rows = opt.ask()
        opt.tell(rows, [(enc.to_architecture(row)['p'] - 0.1) ** 2 for row in rows])
    gau = opt.distribution.parts[0]
    assert abs(enc.to_architecture(opt.most_likely())['p'] - 0.1) < 0.02 and gau.std[0] < 0.02, \
        (gau.mean[0], gau.std[0])

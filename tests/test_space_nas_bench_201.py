"""The NAS-Bench-201 cell space (advantagenas Appendix D): labels, fixed networks, strings, NNI strategies."""
from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from nni.nas.nn.pytorch import LayerChoice
from nni.nas.space import model_context
from nni.nas.strategy import DARTS, GumbelDARTS, Proxyless, RandomOneShot

from oneshot_harness import random_arch, run_strategy
from search_spaces.arch_value_checks import InvalidArchitectureError
from search_spaces.nas_bench_201 import (LABELS, NasBench201Space, arch_to_nb201_string,
                                         build_nas_bench_201_network, nb201_string_to_arch)

warnings.filterwarnings('ignore', message='.*not a nn.Module.*')


SMALL = dict(channels=4, num_cells=1)
ALL_OPS = ['none', 'skip_connect', 'conv_1x1', 'conv_3x3', 'avg_pool_3x3']


def expected_parameters(arch: dict, channels: int, num_cells: int, num_classes: int, in_channels: int) -> int:
    """Independent count of the NAS-Bench-201 network (convs without bias, BN weight + bias)."""
    def cell(c):
        per_op = {'conv_1x1': c * c + 2 * c, 'conv_3x3': 9 * c * c + 2 * c}
        return sum(per_op.get(arch[label], 0) for label in LABELS)

    def reduction(c_in, c_out):
        return 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out

    c = channels
    total = 9 * in_channels * c + 2 * c                                    # stem conv + BN
    total += num_cells * (cell(c) + cell(2 * c) + cell(4 * c))
    total += reduction(c, 2 * c) + reduction(2 * c, 4 * c)
    return total + 2 * 4 * c + 4 * c * num_classes + num_classes          # last BN, classifier


# ------------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize('include_zero, ops', [(True, ALL_OPS), (False, ALL_OPS[1:])])
def test_six_shared_edge_labels(include_zero, ops):
    space = NasBench201Space(num_cells=2, channels=4, include_zero=include_zero)
    mutables = space.simplify()
    assert list(mutables) == ['cell/0_1', 'cell/0_2', 'cell/1_2', 'cell/0_3', 'cell/1_3', 'cell/2_3']
    assert all(m.values == ops for m in mutables.values())
    choices = [m for m in space.modules() if isinstance(m, LayerChoice)]
    assert len(choices) == 6 * 3 * 2                                        # 6 edges x 3 stages x N cells
    assert {c.label for c in choices} == set(LABELS)


def test_default_macro_skeleton():
    space = NasBench201Space()
    cells = [m for m in space.cells if type(m).__name__ == 'NasBench201Cell']
    assert len(cells) == 15 and len(space.cells) == 17                      # 3 x 5 cells + 2 residual blocks
    assert space.classifier.in_features == 64 and space.stem[0].out_channels == 16


# ------------------------------------------------------------------------------------------------ fixed networks
@pytest.mark.parametrize('shape, classes', [((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 30, 30), 7)])
def test_random_fixed_networks_forward_with_exact_parameter_counts(shape, classes):
    space = NasBench201Space(in_channels=shape[0], num_classes=classes, **SMALL)
    for seed in range(5):
        arch = random_arch(space, seed)
        for net in (space.freeze(arch), build_nas_bench_201_network(arch, in_channels=shape[0],
                                                                    num_classes=classes, **SMALL)):
            assert not any(isinstance(m, LayerChoice) for m in net.modules())
            assert sum(p.numel() for p in net.parameters()) == \
                expected_parameters(arch, SMALL['channels'], SMALL['num_cells'], classes, shape[0])
            assert net(torch.rand(2, *shape)).shape == (2, classes)


def test_model_context_gives_the_fixed_network():
    arch = dict(zip(LABELS, ['conv_3x3', 'skip_connect', 'conv_1x1', 'none', 'avg_pool_3x3', 'conv_3x3']))
    with model_context(arch):
        net = NasBench201Space(**SMALL)
    assert net.simplify() == {}
    assert sum(p.numel() for p in net.parameters()) == expected_parameters(arch, 4, 1, 10, 3)


@pytest.mark.parametrize('strategy', [RandomOneShot, DARTS])
def test_supernet_output_equals_the_frozen_child(strategy):
    space = NasBench201Space(in_channels=1, **SMALL)
    strategy().mutate_model(space)
    space.eval()
    x = torch.rand(3, 1, 16, 16)
    arch = random_arch(space, 2)
    for module in space.modules():
        if hasattr(module, 'resample') and module is not space:
            module.resample(memo=dict(arch))
    child = space.freeze(arch).eval()
    if strategy is RandomOneShot:
        torch.testing.assert_close(space(x), child(x))
    else:   # DARTS mixes all candidates; the child inherits the chosen candidates' weights
        for key, edge in child.cells[0].edges.items():
            source = space.cells[0].edges[key][arch[f'cell/{key}']]
            for a, b in zip(edge.state_dict().values(), source.state_dict().values()):
                assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------ strings
def test_known_string_parses():
    s = '|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|'
    assert nb201_string_to_arch(s) == {'cell/0_1': 'conv_3x3', 'cell/0_2': 'conv_3x3', 'cell/1_2': 'avg_pool_3x3',
                                       'cell/0_3': 'skip_connect', 'cell/1_3': 'conv_1x1', 'cell/2_3': 'none'}
    assert arch_to_nb201_string(nb201_string_to_arch(s)) == s
    assert nb201_string_to_arch(s.replace('nor_conv', 'conv')) == nb201_string_to_arch(s)   # our op names too


def test_round_trip_over_many_architectures():
    for ops in itertools.islice(itertools.product(ALL_OPS, repeat=6), 0, 15625, 97):
        arch = dict(zip(LABELS, ops))
        string = arch_to_nb201_string(arch)
        assert string.count('~') == 6 and nb201_string_to_arch(string) == arch


@pytest.mark.parametrize('string, message', [
    ('|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|', 'expected 3 nodes'),
    ('nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|', "starting and ending with '|'"),
    ('|none~0|+|none~0|+|none~0|none~1|none~2|', 'must have 2 input'),
    ('|none~0|+|none~0|none~2|+|none~0|none~1|none~2|', "must be 'op~i' with i in 0..1"),
    ('|none~0|+|none~0|none~0|+|none~0|none~1|none~2|', 'lists input 0 twice'),
    ('|none0|+|none~0|none~1|+|none~0|none~1|none~2|', "must be 'op~i'"),
    ('|max_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|', "unknown operation 'max_pool_3x3' for label "
                                                                 "'cell/0_1'"),
])
def test_malformed_strings_raise(string, message):
    with pytest.raises(InvalidArchitectureError, match=message.replace('|', r'\|').replace('(', r'\(')):
        nb201_string_to_arch(string)


def test_zero_op_refused_without_include_zero():
    s = '|none~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|'
    assert nb201_string_to_arch(s)['cell/0_1'] == 'none'
    with pytest.raises(InvalidArchitectureError, match=r"'none'.*'cell/0_1'.*allowed values.*nor_conv_3x3"):
        nb201_string_to_arch(s, include_zero=False)
    with pytest.raises(InvalidArchitectureError, match='must be a str'):
        nb201_string_to_arch(None)


# ------------------------------------------------------------------------------------------------ invalid dicts
@pytest.mark.parametrize('change, words', [
    ({'cell/1_2': 'max_pool_3x3'}, ["'cell/1_2'", "'avg_pool_3x3'"]),
    ({'cell/0_3': 3}, ["'cell/0_3'", "'conv_3x3'"]),
    ({'cell/2_3': 'none'}, ["'cell/2_3'", "['skip_connect', 'conv_1x1', 'conv_3x3', 'avg_pool_3x3']"]),
])
def test_invalid_architectures_name_label_and_allowed_values(change, words):
    space = NasBench201Space(include_zero=False, **SMALL)
    arch = {**dict.fromkeys(LABELS, 'conv_1x1'), **change}
    for build in (space.freeze, lambda a: build_nas_bench_201_network(a, include_zero=False, **SMALL)):
        with pytest.raises(InvalidArchitectureError) as error:
            build(arch)
        assert all(word in str(error.value) for word in words), str(error.value)


def test_missing_label_is_reported():
    arch = dict.fromkeys(LABELS, 'conv_1x1')
    del arch['cell/1_3']
    with pytest.raises(InvalidArchitectureError, match=r"missing label 'cell/1_3'.*'skip_connect'"):
        NasBench201Space(**SMALL).freeze(arch)
    with pytest.raises(InvalidArchitectureError, match='missing label'):
        arch_to_nb201_string(arch)
    with pytest.raises(ValueError, match='num_cells'):
        NasBench201Space(num_cells=0)


# ------------------------------------------------------------------------------------------------ NNI strategies
@pytest.mark.parametrize('strategy', [RandomOneShot, DARTS, GumbelDARTS, Proxyless])
def test_nni_strategies_run(strategy, tmp_path):
    space = NasBench201Space(in_channels=1, include_zero=strategy is not Proxyless, **SMALL)
    arch = run_strategy(space, strategy(), tmp_path, (1, 16, 16), num_classes=10)
    assert set(arch) == set(LABELS) and set(arch.values()) <= set(ALL_OPS)
    assert space.freeze(arch)(torch.rand(2, 1, 16, 16)).shape == (2, 10)

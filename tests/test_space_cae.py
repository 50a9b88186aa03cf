"""The CAE inpainting space (asng-nas §3.3, pdas §4.2 / App. D): labels, fixed children, supernet, NNI runs."""
from __future__ import annotations

import warnings

from nni.common.serializer import is_traceable
import pytest
import torch
from nni.mutable import Categorical, Numerical
from nni.nas.space import model_context
from nni.nas.strategy import DARTS, GumbelDARTS, Proxyless, RandomOneShot

from oneshot_harness import random_arch, run_strategy
from search_spaces.arch_value_checks import InvalidArchitectureError
from search_spaces.cae import CAENetwork, CAESpace, PathSamplingCAE, build_cae_network

warnings.filterwarnings('ignore', message='.*not a nn.Module.*')


TINY = dict(num_layers=4, level_back=3, width=1 / 16)    # channels 4 / 8 / 16 (Cat), 4..16 (Int)


def kernel_and_skip(arch: dict, i: int, variant: str) -> tuple[int, bool]:
    if variant == 'cat':
        name = arch[f'layer_{i}/type']
        return int(name[0]), name.endswith('_skip')
    return (1, 3, 5)[int(round(arch[f'layer_{i}/kernel'])) - 1], bool(arch[f'layer_{i}/skip'])


def expected_path(arch: dict, num_layers: int) -> list[int]:
    """Active layers, following the connections back from the output (layer 1 always reads the input)."""
    node, path = arch.get('output/input', num_layers), []
    while node != 0:
        path.append(node)
        node = arch.get(f'layer_{node}/input', 0 if node == 1 else node - 1)
    return path[::-1]


def expected_parameters(arch: dict, in_channels: int, num_layers: int, width: float, variant: str) -> int:
    """Independent count: conv + mirrored deconv of each active layer, plus the 3x3 output deconvolution."""
    path = expected_path(arch, num_layers)
    channels = [max(1, round(int(round(arch[f'layer_{i}/channels'])) * width)) for i in path]
    kernels = [kernel_and_skip(arch, i, variant)[0] for i in path]
    total, previous = 0, in_channels
    for j, (c, k) in enumerate(zip(channels, kernels)):
        total += previous * c * k * k                                             # encoder conv
        total += (channels[j + 1] if j + 1 < len(channels) else c) * c * k * k    # decoder deconv
        previous = c
    return total + (channels[0] if path else in_channels) * in_channels * 9


# ------------------------------------------------------------------------------------------------ labels
def test_cat_labels_match_the_paper_encoding():
    space = CAESpace(num_layers=20, level_back=5, width=1 / 64)
    mutables = space.simplify()
    assert all(isinstance(m, Categorical) for m in mutables.values())
    for i in range(1, 21):
        assert mutables[f'layer_{i}/type'].values == ['1x1', '3x3', '5x5', '1x1_skip', '3x3_skip', '5x5_skip']
        assert mutables[f'layer_{i}/channels'].values == [64, 128, 256]
        if i == 1:
            assert 'layer_1/input' not in mutables          # always the input: no variable (pdas §4.2)
        else:
            assert mutables[f'layer_{i}/input'].values == list(range(max(0, i - 5), i))
    assert mutables['output/input'].values == [16, 17, 18, 19, 20]
    assert len(mutables) == 60                                # D = 60 (pdas §4.2)
    sizes = [len(m.values) for m in mutables.values()]
    assert sum(sizes) == 274                                  # dim(theta) of pdas §4.2
    assert sum(k - 1 for k in sizes) == 214                   # n_theta of ASNG-NAS (Cat), asng-nas §3.3


def test_int_labels_use_numerical_kernel_and_channels():
    space = CAESpace(num_layers=20, level_back=5, width=1 / 64, variant='int')
    mutables = space.simplify()
    numerical = {k: m for k, m in mutables.items() if isinstance(m, Numerical)}
    categorical = {k: m for k, m in mutables.items() if isinstance(m, Categorical)}
    assert len(numerical) == 40 and len(categorical) == 40
    for i in range(1, 21):
        kernel, channels = numerical[f'layer_{i}/kernel'], numerical[f'layer_{i}/channels']
        assert (kernel.low, kernel.high, kernel.quantize) == (1, 3, 1)
        assert (channels.low, channels.high, channels.quantize) == (64, 256, 1)
        assert categorical[f'layer_{i}/skip'].values == [False, True]
    # one Gaussian (2 parameters) per integer + sum(K - 1) of the categoricals (asng-nas §3.3: 174)
    assert 2 * len(numerical) + sum(len(m.values) - 1 for m in categorical.values()) == 174


def test_small_level_back_and_short_networks_have_consistent_labels():
    chain = CAESpace(num_layers=3, level_back=1, width=1 / 64).simplify()
    assert not any(label.endswith('/input') for label in chain)        # b = 1: a fixed chain
    short = CAESpace(num_layers=2, level_back=5, width=1 / 64).simplify()
    assert short['output/input'].values == [0, 1, 2]                    # N_c < b: the output may read the image


# ------------------------------------------------------------------------------------------------ fixed networks
@pytest.mark.parametrize('variant', ['cat', 'int'])
@pytest.mark.parametrize('shape', [(1, 28, 28), (3, 32, 32), (3, 17, 23)])
def test_random_children_forward_with_exact_parameter_counts(variant, shape):
    space = CAESpace(in_channels=shape[0], variant=variant, **TINY)
    for seed in range(6):
        arch = random_arch(space, seed)
        for net in (space.freeze(arch), build_cae_network(arch, in_channels=shape[0], variant=variant, **TINY)):
            assert isinstance(net, CAENetwork)
            assert [g.index for g in net.genes] == expected_path(arch, TINY['num_layers'])
            assert sum(p.numel() for p in net.parameters()) == \
                expected_parameters(arch, shape[0], TINY['num_layers'], TINY['width'], variant)
            out = net(torch.rand(2, *shape))
            assert out.shape == (2, *shape)


def test_child_layers_follow_the_genotype():
    arch = {'layer_1/type': '5x5_skip', 'layer_1/channels': 256,
            'layer_2/type': '1x1', 'layer_2/channels': 64, 'layer_2/input': 0,
            'layer_3/type': '3x3', 'layer_3/channels': 128, 'layer_3/input': 1,
            'layer_4/type': '3x3_skip', 'layer_4/channels': 64, 'layer_4/input': 3,
            'output/input': 4}
    net = build_cae_network(arch, in_channels=3, **TINY)
    assert [g.index for g in net.genes] == [1, 3, 4]                    # layer 2 is inactive
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in net.encoder] == \
        [(3, 16, 5, 1), (16, 8, 3, 2), (8, 4, 3, 1)]
    assert [(d.in_channels, d.out_channels, d.stride[0]) for d in net.decoder] == [(8, 16, 1), (4, 8, 2), (4, 4, 1)]
    assert (net.output.in_channels, net.output.out_channels) == (16, 3)


def test_output_reading_the_input_gives_a_single_deconvolution():
    space = CAESpace(in_channels=3, num_layers=2, level_back=5, width=1 / 16)
    arch = {**random_arch(space, 0), 'output/input': 0}
    net = space.freeze(arch)
    assert net.genes == () and sum(p.numel() for p in net.parameters()) == 3 * 3 * 9
    assert net(torch.rand(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_width_multiplier_scales_channels():
    arch = random_arch(CAESpace(**TINY), 3)
    for width in (1 / 16, 1 / 8):
        net = build_cae_network(arch, **{**TINY, 'width': width})
        assert [conv.out_channels for conv in net.encoder] == \
            [round(arch[f'layer_{i}/channels'] * width) for i in expected_path(arch, 4)]


def test_model_context_builds_the_fixed_network():
    space = CAESpace(in_channels=1, variant='int', **TINY)
    arch = random_arch(space, 5)
    with model_context(arch):
        net = CAESpace(in_channels=1, variant='int', **TINY)
    assert isinstance(net, CAENetwork)
    assert net.genes == space.freeze(arch).genes


# ------------------------------------------------------------------------------------------------ supernet
def supernet(variant: str, in_channels: int = 1) -> CAESpace:
    space = CAESpace(in_channels=in_channels, variant=variant, **TINY)
    RandomOneShot().mutate_model(space)
    assert isinstance(space.body, PathSamplingCAE)
    return space


@pytest.mark.parametrize('variant', ['cat', 'int'])
def test_supernet_output_equals_the_child_with_inherited_weights(variant):
    space = supernet(variant, in_channels=3)
    x = torch.rand(2, 3, 20, 20)
    for seed in range(6):
        arch = random_arch(space, seed)
        sample = space.body.resample(memo=dict(arch))
        assert set(sample) == set(arch)
        child = space.freeze(arch)
        torch.testing.assert_close(space(x), child(x), rtol=1e-5, atol=1e-6)


def test_supernet_keeps_the_weights_of_the_space():
    space = CAESpace(in_channels=1, **TINY)
    weights = space.body.weights
    RandomOneShot().mutate_model(space)
    assert space.body.weights is weights


def test_resample_fills_missing_labels_and_rounds_integers():
    space = supernet('int')
    sample = space.body.resample(memo={'layer_1/channels': 300.7, 'layer_1/kernel': 0.2, 'layer_2/kernel': 2.4,
                                       'layer_2/channels': 64.4, 'layer_1/skip': True, 'output/input': 4,
                                       'layer_4/input': 3, 'layer_3/input': 2, 'layer_2/input': 1})
    assert set(sample) == set(space.simplify())
    assert (sample['layer_1/channels'], sample['layer_1/kernel']) == (256, 1)          # clipped
    assert (sample['layer_2/channels'], sample['layer_2/kernel']) == (64, 2)           # rounded
    first = space.active_layers[0]
    assert (first.index, first.channels, first.kernel, first.skip) == (1, 16, 1, True)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_inactive_layers_get_no_gradient_and_do_not_change_the_output(seed):
    torch.manual_seed(seed)                  # weights and input: independent of the tests run before
    space = supernet('cat')
    arch = {**random_arch(space, 1), 'output/input': 4, 'layer_4/input': 2, 'layer_2/input': 0}
    space.body.resample(memo=arch)
    assert [g.index for g in space.active_layers] == [2, 4]
    x = torch.rand(2, 1, 16, 16)
    out = space(x)
    out.sum().backward()
    for i, layer in enumerate(space.body.weights.layers, start=1):
        for name, weight in layer.conv.items():
            used = i in (2, 4) and name == arch[f'layer_{i}/type']
            assert (weight.grad is not None and weight.grad.abs().sum() > 0) == used, (i, name)
    changed = {**arch, 'layer_1/type': '5x5', 'layer_3/channels': 64 if arch['layer_3/channels'] != 64 else 128}
    space.body.resample(memo=changed)
    torch.testing.assert_close(space(x), out)


def test_darts_family_is_refused_with_the_reason():
    for strategy in (DARTS(), GumbelDARTS(), Proxyless()):
        with pytest.raises(TypeError, match='connections select which layers are active'):
            strategy.mutate_model(CAESpace(in_channels=1, **TINY))


# ------------------------------------------------------------------------------------------------ invalid dicts
@pytest.mark.parametrize('variant, change, words', [
    ('cat', {'layer_2/type': '7x7'}, ["'layer_2/type'", "'5x5_skip'"]),
    ('cat', {'layer_3/channels': '128'}, ["'layer_3/channels'", '[64, 128, 256]']),
    ('cat', {'layer_3/channels': 100}, ["'layer_3/channels'", '[64, 128, 256]']),
    ('cat', {'layer_4/input': 0}, ["'layer_4/input'", '[1, 2, 3]']),
    ('cat', {'output/input': True}, ["'output/input'", '[2, 3, 4]']),
    ('int', {'layer_1/channels': 300}, ["'layer_1/channels'", '[64, 256]']),
    ('int', {'layer_1/kernel': 0}, ["'layer_1/kernel'", '[1, 3]']),
    ('int', {'layer_2/kernel': '3'}, ["'layer_2/kernel'", '[1, 3]']),
    ('int', {'layer_2/skip': 1}, ["'layer_2/skip'", '[False, True]']),
])
def test_invalid_values_name_the_label_and_allowed_values(variant, change, words):
    space = CAESpace(in_channels=1, variant=variant, **TINY)
    arch = {**random_arch(space, 0), **change}
    for build in (space.freeze, lambda a: build_cae_network(a, in_channels=1, variant=variant, **TINY)):
        with pytest.raises(InvalidArchitectureError) as error:
            build(arch)
        for word in words:
            assert word in str(error.value)


def test_missing_label_and_non_dict_are_reported():
    space = CAESpace(in_channels=1, **TINY)
    arch = random_arch(space, 0)
    del arch['layer_3/type']
    with pytest.raises(InvalidArchitectureError, match=r"missing label 'layer_3/type'.*'1x1'"):
        space.freeze(arch)
    with pytest.raises(InvalidArchitectureError, match='must be a dict'):
        space.freeze([1, 2, 3])
    with pytest.raises(ValueError, match='variant'):
        CAESpace(variant='gaussian')


# ------------------------------------------------------------------------------------------------ NNI strategies
@pytest.mark.parametrize('variant', ['cat', 'int'])
def test_random_one_shot_trains_the_supernet(variant, tmp_path):
    space = CAESpace(in_channels=1, variant=variant, **TINY)
    before = [p.detach().clone() for p in space.parameters()]
    arch = run_strategy(space, RandomOneShot(), tmp_path, (1, 16, 16), num_classes=None, target_shape=(1, 16, 16))
    assert set(arch) == set(space.simplify())
    assert isinstance(space.body, PathSamplingCAE)
    assert any(not torch.equal(b, p) for b, p in zip(before, space.parameters()))      # weights were trained
    assert space.freeze(arch)(torch.rand(1, 1, 16, 16)).shape == (1, 1, 16, 16)


def test_traced_space_arguments_survive():
    space = CAESpace(in_channels=1, variant='int', **TINY)
    assert space.trace_kwargs["variant"] == "int" and is_traceable(space)

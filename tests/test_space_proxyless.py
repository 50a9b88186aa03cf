"""The ProxylessNAS mobile space (multi-complexity §4.2): labels, fixed networks, resolutions, NNI strategies."""
from __future__ import annotations

import warnings

import pytest
import torch
from nni.nas.nn.pytorch import LayerChoice
from nni.nas.space import model_context
from nni.nas.strategy import DARTS, GumbelDARTS, Proxyless, RandomOneShot

from nni_asng.oneshot.complexity import count_parameters as n_params
from oneshot_harness import random_arch, run_strategy
from search_spaces.proxyless import (IMAGENET_STAGES, SMALL_IMAGE_STAGES, ProxylessSpace, build_proxyless_network,
                                     proxyless_mutables)
from search_spaces.validation import InvalidArchitectureError

warnings.filterwarnings('ignore', message='.*not a nn.Module.*')

MBCONVS = ['k3e3', 'k5e3', 'k7e3', 'k3e6', 'k5e6', 'k7e6']
STAGES = ((16, 2, 1), (24, 3, 2))
TINY = dict(width_mult=0.25, stages=STAGES, head_channels=32)


def expected_parameters(arch, widths, in_channels, num_classes, head, stem=8, first=8) -> int:
    """Independent count: convs without bias, BN weight + bias; ``widths`` = [(channels, layers)] per stage."""
    def mbconv(c_in, c_out, k, e):
        h = c_in * e
        return (c_in * h + 2 * h if e != 1 else 0) + k * k * h + 2 * h + h * c_out + 2 * c_out

    total = in_channels * 9 * stem + 2 * stem + mbconv(stem, first, 3, 1)
    c_in = first
    for s, (c, layers) in enumerate(widths, start=1):
        for i in range(layers):
            name = arch[f'stage{s}/layer{i}']
            if name != 'zero':
                total += mbconv(c_in if i == 0 else c, c, int(name[1]), int(name[3]))
        c_in = c
    return total + c_in * head + 2 * head + head * num_classes + num_classes


def test_default_space_has_21_variables_and_141_categories():
    mutables = proxyless_mutables()
    assert len(mutables) == 21
    first_layers = [label for label in mutables if label.endswith('/layer0')]
    assert len(first_layers) == 6
    for label, m in mutables.items():
        assert m.values == (MBCONVS if label in first_layers else MBCONVS + ['zero'])
    assert sum(len(m.values) for m in mutables.values()) == 141          # multi-complexity §4.2: 1/141
    without_zero = proxyless_mutables(include_zero=False)
    assert all(m.values == MBCONVS for m in without_zero.values())


def test_space_labels_match_and_layer_choices():
    space = ProxylessSpace(**TINY)
    assert list(space.simplify()) == ['stage1/layer0', 'stage1/layer1', 'stage2/layer0', 'stage2/layer1',
                                      'stage2/layer2']
    assert list(space.simplify()) == list(proxyless_mutables(STAGES))
    assert sum(isinstance(m, LayerChoice) for m in space.modules()) == 5


@pytest.mark.parametrize('shape, classes', [((1, 28, 28), 10), ((3, 32, 32), 7)])
def test_random_children_forward_with_exact_parameter_counts(shape, classes):
    space = ProxylessSpace(in_channels=shape[0], num_classes=classes, **TINY)
    assert space(torch.rand(2, *shape)).shape == (2, classes)
    for seed in range(5):
        arch = random_arch(space, seed)
        for net in (space.freeze(arch), build_proxyless_network(arch, in_channels=shape[0], num_classes=classes,
                                                                **TINY)):
            assert net.simplify() == {} and not any(isinstance(m, LayerChoice) for m in net.modules())
            assert n_params(net) == expected_parameters(arch, [(8, 2), (8, 3)], shape[0], classes, head=32)
            assert net(torch.rand(2, *shape)).shape == (2, classes)


def test_zero_layer_is_skipped():
    arch = {'stage1/layer0': 'k3e3', 'stage1/layer1': 'zero', 'stage2/layer0': 'k5e6', 'stage2/layer1': 'zero',
            'stage2/layer2': 'zero'}
    net = build_proxyless_network(arch, **TINY).eval()
    x = torch.rand(2, 8, 8, 8)
    for i in (1, 3, 4):
        assert torch.equal(net.layers[i](x), x)


@pytest.mark.parametrize('mode', [True, False])
def test_path_sampling_supernet_equals_frozen_child(mode):
    space = ProxylessSpace(in_channels=1, **TINY)
    RandomOneShot().mutate_model(space)
    arch = random_arch(space, 3)
    for module in space.modules():
        if hasattr(module, 'resample') and module is not space:
            module.resample(memo=dict(arch))
    child = space.freeze(arch)
    space.train(mode)
    child.train(mode)
    x = torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(space(x), child(x))


def test_default_width_and_resolutions():
    space = ProxylessSpace(width_mult=0.25)
    widths = [layer.op['k3e3'][-1][0].out_channels for layer in space.layers if layer.op.label.endswith('layer0')]
    assert widths == [8, 16, 24, 24, 48, 80]                              # ProxylessNAS widths x 0.25, multiples of 8
    assert space.classifier.in_features == 1280
    seen = {}
    for name, stages, stride, size in (('small', SMALL_IMAGE_STAGES, 1, 32), ('small28', SMALL_IMAGE_STAGES, 1, 28),
                                       ('imagenet', IMAGENET_STAGES, 2, 64)):
        net = build_proxyless_network(random_arch(space, 0), width_mult=0.25, stages=stages, stem_stride=stride,
                                      head_channels=16)
        net.feature_mix.register_forward_hook(lambda m, inp, out, name=name: seen.__setitem__(name, inp[0].shape[-1]))
        net.eval()(torch.rand(1, 3, size, size))
    assert seen == {'small': 4, 'small28': 4, 'imagenet': 2}             # /8 for small images, /32 for ImageNet


@pytest.mark.parametrize('change, words', [
    ({'stage1/layer0': 'zero'}, ["'stage1/layer0'", str(MBCONVS)]),       # a stage's first layer has no zero
    ({'stage2/layer2': 'k9e6'}, ["'stage2/layer2'", str(MBCONVS + ['zero'])]),
    ({'stage2/layer1': 3}, ["'stage2/layer1'", 'int']),
])
def test_invalid_architectures_name_label_and_allowed_values(change, words):
    space = ProxylessSpace(**TINY)
    arch = {**random_arch(space, 0), **change}

    def in_context(a):
        with model_context(a):
            ProxylessSpace(**TINY)

    for build in (space.freeze, lambda a: build_proxyless_network(a, **TINY), in_context):
        with pytest.raises(InvalidArchitectureError) as error:
            build(arch)
        assert all(word in str(error.value) for word in words), str(error.value)


def test_missing_label_and_bad_arguments():
    arch = random_arch(ProxylessSpace(**TINY), 1)
    del arch['stage2/layer1']
    with pytest.raises(InvalidArchitectureError, match=r"missing label 'stage2/layer1'.*'zero'"):
        ProxylessSpace(**TINY).freeze(arch)
    with pytest.raises(ValueError, match='stages'):
        ProxylessSpace(stages=((16, 2, 3),))
    with pytest.raises(ValueError, match='width_mult'):
        ProxylessSpace(width_mult=0)


@pytest.mark.parametrize('strategy', [RandomOneShot, DARTS, GumbelDARTS, Proxyless])
def test_nni_strategies_run(strategy, tmp_path):
    space = ProxylessSpace(in_channels=1, **TINY)
    arch = run_strategy(space, strategy(), tmp_path, (1, 16, 16), num_classes=10, n=8, batch_size=8)
    assert set(arch) == set(proxyless_mutables(STAGES))
    child = space.freeze(arch)
    assert n_params(child) == expected_parameters(arch, [(8, 2), (8, 3)], 1, 10, head=32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_default_space_runs_proxyless_on_cuda(tmp_path):
    space = ProxylessSpace(in_channels=1)
    arch = run_strategy(space, Proxyless(), tmp_path, (1, 28, 28), num_classes=10, n=32, batch_size=16,
                        accelerator='gpu', devices=1)
    assert space.freeze(arch).cuda()(torch.rand(2, 1, 28, 28, device='cuda')).shape == (2, 10)

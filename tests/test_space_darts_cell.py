"""The DARTS cell space (wrapper over NNI's hub DARTS): labels, 1-channel input, fixed networks, NNI strategies."""
from __future__ import annotations

import warnings

import pytest
import torch
from nni.mutable import CategoricalMultiple
from nni.nas.hub.pytorch import DARTS as HubDARTS
from nni.nas.nn.pytorch import InputChoice, LayerChoice
from nni.nas.space import model_context
from nni.nas.strategy import DARTS, GumbelDARTS, Proxyless, RandomOneShot

from nni_asng.oneshot.complexity import count_parameters as n_params
from oneshot_harness import random_arch, run_strategy
from search_spaces.darts_cell import DARTS_OPERATIONS, DARTSCellSpace, build_darts_network, darts_mutables
from search_spaces.validation import InvalidArchitectureError

warnings.filterwarnings('ignore', message='.*not a nn.Module.*')

TINY = dict(channels=4, num_cells=4)          # stages of 1, 1, 2 cells: normal | reduce | reduce, normal
OPS = list(DARTS_OPERATIONS)


def operation_parameters(arch: dict, cells: list[tuple[str, int]]) -> int:
    """Independent count of the chosen operations' weights (affine BN) over ``cells`` = [(kind, C), ...]."""
    def op(name, c, stride):
        if name == 'skip_connect':
            return 0 if stride == 1 else c * c + 2 * c          # factorized reduce
        if name.startswith('sep_conv'):
            k = int(name[-1])
            return 2 * (k * k * c + c * c + 2 * c)
        if name.startswith('dil_conv'):
            k = int(name[-1])
            return k * k * c + c * c + 2 * c
        return 0                                                # pools

    total = 0
    for kind, c in cells:
        for i in range(2, 6):
            for k in range(2):
                stride = 2 if kind == 'reduce' and arch[f'{kind}/input_{i}_{k}'][0] < 2 else 1
                total += op(arch[f'{kind}/op_{i}_{k}'], c, stride)
    return total


def test_labels_and_hub_class():
    space = DARTSCellSpace(**TINY)
    assert isinstance(space, HubDARTS)
    mutables = space.simplify()
    assert set(mutables) == set(darts_mutables()) and len(mutables) == 32
    for kind in ('normal', 'reduce'):
        for i in range(2, 6):
            for k in range(2):
                assert mutables[f'{kind}/op_{i}_{k}'].values == OPS
                inp = mutables[f'{kind}/input_{i}_{k}']
                assert isinstance(inp, CategoricalMultiple) and inp.n_chosen == 1 and inp.values == list(range(i))
    assert sum(len(m.values) for m in mutables.values()) == 16 * 7 + 4 * (2 + 3 + 4 + 5)


@pytest.mark.parametrize('shape, classes', [((1, 28, 28), 10), ((3, 32, 32), 7)])
def test_space_and_random_children_forward(shape, classes):
    space = DARTSCellSpace(in_channels=shape[0], num_classes=classes, **TINY)
    assert space.stem[0].in_channels == shape[0]
    assert space(torch.rand(2, *shape)).shape == (2, classes)
    cells = [('normal', 4), ('reduce', 8), ('reduce', 16), ('normal', 16)]
    for seed in range(3):
        arch = random_arch(space, seed)
        child = space.freeze(arch)
        assert isinstance(child, DARTSCellSpace) and child.simplify() == {}
        assert not any(isinstance(m, (LayerChoice, InputChoice)) for m in child.modules())
        assert child(torch.rand(2, *shape)).shape == (2, classes)
        # Parameters beyond the skeleton are exactly the chosen operations: compare with all-pool operations.
        pools = {k: ('max_pool_3x3' if '/op_' in k else v) for k, v in arch.items()}
        skeleton = n_params(space.freeze(pools))
        assert n_params(child) - skeleton == operation_parameters(arch, cells)
        with model_context(arch):
            assert n_params(DARTSCellSpace(in_channels=shape[0], num_classes=classes, **TINY)) == n_params(child)


def test_search_size_network():
    space = DARTSCellSpace()                                   # DARTS search: C=16, 8 cells, 2 reductions
    kinds = ['reduce' if cell.label == 'reduce' else 'normal' for stage in space.stages for cell in stage]
    assert kinds == ['normal'] * 2 + ['reduce'] + ['normal'] * 2 + ['reduce'] + ['normal'] * 2
    child = space.freeze(random_arch(space, 0))
    assert 0 < n_params(child) < n_params(space)


def test_retraining_network_with_auxiliary_head_on_28_and_32_pixels():
    arch = random_arch(DARTSCellSpace(**TINY), 1)
    net = build_darts_network(arch, channels=4, num_cells=5, in_channels=1, num_classes=7)
    net.train()
    for size in (28, 32):
        logits, aux = net(torch.rand(2, 1, size, size))
        assert logits.shape == aux.shape == (2, 7)
    net.eval()
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 7)
    with pytest.raises(ValueError, match='auxiliary'):
        DARTSCellSpace(auxiliary=True, **TINY)


@pytest.mark.parametrize('change, words', [
    ({'normal/op_3_1': 'none'}, ["'normal/op_3_1'", "'none'", str(OPS)]),
    ({'reduce/op_2_0': 0}, ["'reduce/op_2_0'", 'int', str(OPS)]),
    ({'normal/input_3_0': [3]}, ["'normal/input_3_0'", '[[0], [1], [2]]']),
    ({'reduce/input_5_1': 'x'}, ["'reduce/input_5_1'", '[[0], [1], [2], [3], [4]]']),
])
def test_invalid_architectures_name_label_and_allowed_values(change, words):
    space = DARTSCellSpace(**TINY)
    arch = {**random_arch(space, 0), **change}

    def in_context(a):
        with model_context(a):
            DARTSCellSpace(**TINY)

    for build in (space.freeze, lambda a: build_darts_network(a, **TINY), in_context):
        with pytest.raises(InvalidArchitectureError) as error:
            build(arch)
        assert all(word in str(error.value) for word in words), str(error.value)


def test_missing_label_is_reported():
    space = DARTSCellSpace(**TINY)
    arch = random_arch(space, 2)
    del arch['normal/input_4_1']
    with pytest.raises(InvalidArchitectureError, match=r"missing label 'normal/input_4_1'.*\[\[0\], \[1\], \[2\], \[3\]\]"):
        space.freeze(arch)


@pytest.mark.parametrize('strategy', [RandomOneShot, DARTS, GumbelDARTS])
def test_nni_strategies_run(strategy, tmp_path):
    space = DARTSCellSpace(in_channels=1, **TINY)
    arch = run_strategy(space, strategy(), tmp_path, (1, 16, 16), num_classes=10, n=8, batch_size=8)
    assert set(arch) == set(darts_mutables())
    assert space.freeze(arch)(torch.rand(2, 1, 16, 16)).shape == (2, 10)


@pytest.mark.xfail(raises=RuntimeError, strict=True,
                   reason="NNI's Proxyless cell mixes candidate inputs of different resolutions (docs/design.md §2)")
def test_nni_proxyless_is_not_supported(tmp_path):
    run_strategy(DARTSCellSpace(in_channels=1, **TINY), Proxyless(), tmp_path, (1, 16, 16), num_classes=10,
                 n=8, batch_size=8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_search_size_space_runs_random_one_shot_steps_on_cuda(tmp_path):
    space = DARTSCellSpace(in_channels=1)
    arch = run_strategy(space, RandomOneShot(), tmp_path, (1, 28, 28), num_classes=10, n=32, batch_size=16,
                        accelerator='gpu', devices=1)
    assert space.freeze(arch).cuda()(torch.rand(2, 1, 28, 28, device='cuda')).shape == (2, 10)

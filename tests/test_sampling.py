"""CachedPathSamplingCell: NNI's PathSamplingCell semantics without walking the module tree per resample."""
import random

import pytest
import torch
import torch.nn as nn
from nni.nas.nn.pytorch import Cell, ModelSpace
from nni.nas.oneshot.pytorch.supermodule.sampling import PathSamplingCell

from nni_asng.oneshot.sampling import CachedPathSamplingCell


class CellSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.cell = Cell({'conv': lambda *_: nn.Conv2d(4, 4, 3, padding=1), 'pool': lambda *_: nn.AvgPool2d(3, 1, 1),
                          'skip': lambda *_: nn.Identity()}, num_nodes=3, num_ops_per_node=2, num_predecessors=2,
                         label='cell')


def make_cell(cls):
    torch.manual_seed(0)
    return cls.mutate(CellSpace().cell, 'cell', {}, {})


def full_arch(cell, seed):
    rng = random.Random(seed)
    arch = {}
    for label, mutable in cell.simplify().items():
        values = list(mutable.values)
        arch[label] = [rng.choice(values)] if 'input' in label else rng.choice(values)
    return arch


@pytest.mark.parametrize('seed', range(4))
def test_same_path_and_output_as_nni(seed):
    ours, nni_cell = make_cell(CachedPathSamplingCell), make_cell(PathSamplingCell)
    nni_cell.load_state_dict(ours.state_dict())
    arch = full_arch(nni_cell, seed)
    assert ours.resample(arch) == nni_cell.resample(arch) == {}
    assert ours._sampled == nni_cell._sampled and set(ours._sampled) == set(nni_cell.simplify())
    x = [torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)]
    assert torch.equal(ours(*x), nni_cell(*x))


def test_missing_labels_are_drawn_like_nni():
    ours = make_cell(CachedPathSamplingCell)
    arch = full_arch(ours, 0)
    missing = sorted(arch)[:3]
    partial = {k: v for k, v in arch.items() if k not in missing}
    drawn = ours.resample(partial)
    assert set(drawn) == set(missing) and set(ours._sampled) == set(arch)


def test_several_inputs_for_one_operation_are_refused():
    ours = make_cell(CachedPathSamplingCell)
    arch = full_arch(ours, 0)
    label = next(k for k in arch if 'input' in k)
    arch[label] = [0, 1]
    with pytest.raises(ValueError, match='exactly one input'):
        ours.resample(arch)

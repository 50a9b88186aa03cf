"""The canonical form of NAS-Bench-201 cells: hand-made equivalent and different pairs, and an independent
numeric check that equivalent cells compute the same function."""
import itertools

import numpy as np
import pytest

from search_spaces.nas_bench_201_canonical import CONSTANT, canonical_cell, equivalence_classes

EDGES = ('0_1', '0_2', '0_3', '1_2', '1_3', '2_3')


def cell(**ops):
    """A cell with the given edges (``e0_3='conv_3x3'``); every other edge ``none``."""
    return {f'cell/{e}': ops.get(f'e{e}', 'none') for e in EDGES}


def same(a, b):
    return canonical_cell(a) == canonical_cell(b)


# ---------------------------------------------------------------------------------------------- equivalent pairs
def test_an_edge_into_a_node_nothing_reads_drops_out():
    assert same(cell(e0_3='conv_3x3'), cell(e0_3='conv_3x3', e0_1='conv_3x3'))
    assert same(cell(e0_3='skip_connect'), cell(e0_3='skip_connect', e0_1='conv_3x3', e1_2='conv_3x3', e0_2='skip_connect'))


def test_skip_chains_are_the_input():
    assert same(cell(e0_3='skip_connect'), cell(e0_1='skip_connect', e1_3='skip_connect'))
    assert same(cell(e0_3='conv_3x3'), cell(e0_1='skip_connect', e1_2='skip_connect', e2_3='conv_3x3'))


def test_the_two_middle_nodes_swap_when_not_connected():
    a = cell(e0_1='conv_3x3', e1_3='skip_connect', e0_2='skip_connect', e2_3='conv_1x1')
    b = cell(e0_2='conv_3x3', e2_3='skip_connect', e0_1='skip_connect', e1_3='conv_1x1')
    assert same(a, b)


def test_skip_distributes_a_sum_into_the_output():
    # node2 = conv(x) + conv(node1), passed on by a skip == the same two terms summed in node 3 directly
    a = cell(e0_1='conv_3x3', e0_2='conv_3x3', e1_2='conv_3x3', e2_3='skip_connect')
    b = cell(e0_1='conv_3x3', e0_3='conv_3x3', e1_3='conv_3x3')
    assert same(a, b)


def test_pooling_is_linear_and_parameter_free():
    # pool(x + conv(x)) == pool(x) + pool(conv(x))
    a = cell(e0_1='skip_connect', e0_2='conv_3x3', e1_2='skip_connect', e2_3='avg_pool_3x3')
    b = cell(e0_3='avg_pool_3x3', e0_1='conv_3x3', e1_3='avg_pool_3x3')
    assert same(a, b)


def test_a_convolution_of_zero_is_a_learnable_constant_whatever_its_kernel():
    a = cell(e0_3='skip_connect', e1_3='conv_3x3')                 # node 1 is zero: conv(0) = BN shift
    b = cell(e0_3='skip_connect', e1_3='conv_1x1')
    assert same(a, b)


def test_cells_whose_output_ignores_the_input_are_one_class():
    assert canonical_cell(cell()) == CONSTANT
    assert canonical_cell(cell(e1_2='conv_3x3', e1_3='conv_3x3', e2_3='conv_3x3')) == CONSTANT
    assert canonical_cell(cell(e0_1='conv_3x3', e0_2='skip_connect')) == CONSTANT   # nothing reaches node 3


# ---------------------------------------------------------------------------------------------- different pairs
@pytest.mark.parametrize('a, b', [
    (cell(e0_3='conv_3x3'), cell(e0_3='skip_connect')),
    (cell(e0_3='conv_3x3'), cell(e0_3='conv_1x1')),
    (cell(e0_3='skip_connect'), cell(e0_3='skip_connect', e0_1='skip_connect', e1_3='skip_connect')),   # x vs 2x
    (cell(e0_3='skip_connect'), cell(e0_3='skip_connect', e1_3='conv_3x3')),           # x vs x + constant
    (cell(e0_1='conv_3x3', e1_3='conv_3x3'), cell(e0_3='conv_3x3', e0_1='conv_3x3', e1_3='skip_connect')),
    (cell(e0_3='avg_pool_3x3'), cell(e0_1='avg_pool_3x3', e1_3='avg_pool_3x3')),      # pool vs pool(pool)
    # one convolution read twice (shared weights) vs two convolutions of the same input
    (cell(e0_1='conv_3x3', e1_3='conv_3x3', e1_2='skip_connect', e2_3='skip_connect'),
     cell(e0_1='conv_3x3', e1_3='conv_3x3', e0_2='conv_3x3', e2_3='skip_connect')),
])
def test_different_functions_differ(a, b):
    assert not same(a, b)


def test_unknown_operation_is_named():
    with pytest.raises(ValueError, match="'sep_conv'.*cell/0_3"):
        canonical_cell(cell(e0_3='sep_conv'))


# ---------------------------------------------------------------------------------------------- whole spaces
def _space(ops):
    return [dict(zip((f'cell/{e}' for e in EDGES), values)) for values in itertools.product(ops, repeat=6)]


def _swap_middle_nodes(arch):
    """The relabelling node 1 <-> node 2 (valid when there is no edge 1 -> 2)."""
    m = {'0_1': '0_2', '0_2': '0_1', '1_3': '2_3', '2_3': '1_3', '0_3': '0_3', '1_2': '1_2'}
    return {f'cell/{m[e]}': arch[f'cell/{e}'] for e in EDGES}


def test_classes_are_closed_under_relabelling_of_the_middle_nodes():
    for arch in _space(['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3']):
        if arch['cell/1_2'] == 'none':
            assert canonical_cell(arch) == canonical_cell(_swap_middle_nodes(arch)), arch


def _numeric_output(arch, x, tied):
    """The cell evaluated with every convolution of one kernel sharing one random function (written here,
    independently of the canonical form): equivalent cells must agree exactly under such weight tying."""
    nodes = [x]
    for j in range(1, 4):
        total = np.zeros_like(x)
        for i in range(j):
            op = arch[f'cell/{i}_{j}']
            if op == 'skip_connect':
                total = total + nodes[i]
            elif op == 'avg_pool_3x3':
                total = total + tied['pool'] @ nodes[i]
            elif op in ('conv_1x1', 'conv_3x3'):
                a, beta = tied[op]
                total = total + np.tanh(a @ np.maximum(nodes[i], 0)) + beta      # ReLU-Conv-BN; of 0: beta
        nodes.append(total)
    return nodes[-1]


def test_equivalent_cells_compute_the_same_function_numerically():
    rng = np.random.default_rng(0)
    d = 5
    beta = rng.normal(size=d)                       # one shift: of a zero input, every convolution gives it
    tied = {'pool': rng.normal(size=(d, d)) / d, 'conv_1x1': (rng.normal(size=(d, d)), beta),
            'conv_3x3': (rng.normal(size=(d, d)), beta)}
    archs = _space(['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3'])
    xs = [rng.normal(size=d) for _ in range(2)]
    classes = equivalence_classes(archs)
    assert 1 < len(classes) < len(archs)
    for key, members in classes.items():
        outputs = [np.stack([_numeric_output(archs[m], x, tied) for x in xs]) for m in members]
        if key == CONSTANT:         # constants (of different values): the network computes no function of x
            for out in outputs:
                np.testing.assert_allclose(out[0], out[1], rtol=1e-12, atol=1e-12)
            continue
        for out in outputs[1:]:
            np.testing.assert_allclose(out, outputs[0], rtol=1e-12, atol=1e-12, err_msg=key)
        assert not np.allclose(outputs[0][0], outputs[0][1]), key

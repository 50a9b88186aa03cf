"""AdvantageNAS and Reinforce as NNI one-shot strategies."""
import nni
import numpy as np
import pytest
import torch
import torch.nn as nn
from nni.nas.hub.pytorch import DARTS, NasBench201
from nni.nas.nn.pytorch import LayerChoice, ModelSpace

import nni_asng
from nni_asng.oneshot.gated import GatedPathSamplingCell, GatedPathSamplingInput, GatedPathSamplingLayer
from nni_asng.oneshot.lightning import _SupernetEvaluator
from nni_asng.oneshot.policy_gradient import zero_operations
from oneshot_harness import random_loaders, run_strategy
from test_strategy_natural_gradient import MixedSpace


def tiny_nb201():
    return NasBench201(stem_out_channels=4, num_modules_per_stack=1, num_labels=10)


@pytest.mark.parametrize('make', [lambda: nni_asng.AdvantageNAS(seed=0, warmup=0), lambda: nni_asng.Reinforce(seed=0, warmup=0)],
                         ids=['AdvantageNAS', 'Reinforce'])
def test_search_runs_and_moves_the_policy(make, tmp_path):
    strategy = make()
    arch = run_strategy(MixedSpace(), strategy, tmp_path, (1, 8, 8), max_epochs=3)
    strategy.encoding.validate(arch)
    optimizer = strategy.searcher.optimizer
    assert optimizer.updates == 6
    assert not np.allclose(optimizer.policy.logits, 1.0)
    metrics = strategy.oneshot_module.trainer.callback_metrics
    assert {'arch/convergence', 'arch/entropy', 'arch/lr', 'arch/arch_loss'} <= set(metrics)


def test_gated_supermodules_replace_nni_ones(tmp_path):
    strategy = nni_asng.AdvantageNAS(seed=0, warmup=0)
    run_strategy(MixedSpace(), strategy, tmp_path, (1, 8, 8))
    kinds = {type(m) for m in strategy.supernet.modules()}
    assert {GatedPathSamplingLayer, GatedPathSamplingInput} <= kinds
    assert strategy.oneshot_module.gates.labels == {'layer', 'pick', 'pair'}     # kernel, depth: REINFORCE credit


def test_labels_without_gates_are_named(tmp_path):
    with pytest.warns(RuntimeWarning, match=r"label\(s\) \['kernel', 'depth'\].*REINFORCE credit"):
        run_strategy(MixedSpace(), nni_asng.AdvantageNAS(seed=0, warmup=0), tmp_path, (1, 8, 8))


def test_all_cell_labels_are_gated_on_hub_darts(tmp_path):
    space = DARTS(width=4, num_cells=3, dataset='cifar')
    labels = set(space.simplify())
    strategy = nni_asng.AdvantageNAS(seed=0, warmup=0)
    run_strategy(space, strategy, tmp_path, (3, 16, 16), n=8, batch_size=4)
    assert any(isinstance(m, GatedPathSamplingCell) for m in strategy.supernet.modules())
    assert strategy.oneshot_module.gates.labels == labels
    assert strategy.searcher.optimizer.baseline is None                    # no fallback was needed


class TwoLinear(ModelSpace):
    def __init__(self):
        super().__init__()
        self.op = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4)], label='op')
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.op(x)))


def test_credit_is_first_order_advantage_from_one_backward(tmp_path):
    """Eq. 7: A = ∂r/∂a = −⟨∂L/∂O, O⟩ for the chosen candidate's output O."""
    torch.manual_seed(0)
    strategy = nni_asng.AdvantageNAS(seed=0, warmup=0)
    run_strategy(TwoLinear(), strategy, tmp_path, (4,), num_classes=3)
    module = strategy.oneshot_module
    train, _ = random_loaders((4,), 3, n=8, batch_size=8, seed=5)
    batch = next(iter(train))
    grads_before = [None if p.grad is None else p.grad.clone() for p in strategy.supernet.parameters()]
    loss, credits = _SupernetEvaluator(module, batch, 0).credits(np.array([1.0]))
    grads_after = [None if p.grad is None else p.grad.clone() for p in strategy.supernet.parameters()]
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(grads_before, grads_after))

    module.activate({'op': 1})
    chosen = strategy.supernet.op[1]
    captured = {}
    handle = chosen.register_forward_hook(lambda m, i, o: captured.setdefault('out', o))
    with module.quiet():
        manual_loss = module.training_module.training_step(batch, 0)
    handle.remove()
    grad, = torch.autograd.grad(manual_loss, captured['out'])
    assert loss == pytest.approx(manual_loss.item())
    assert credits['op'] == pytest.approx(-(grad * captured['out']).sum().item(), rel=1e-6)
    assert credits['op'] != 0


def test_zero_operations_are_detected_on_hub_nb201():
    space = tiny_nb201()
    encoding = nni_asng.SearchSpaceEncoding(space)
    mask = zero_operations(encoding, space)
    values = [v for var in encoding.categorical for v in var.values]
    assert [v for v, z in zip(values, mask) if z] == ['none'] * 6


def test_exclude_zero_never_samples_the_zero_op(tmp_path):
    strategy = nni_asng.AdvantageNAS(seed=0, exclude_zero=True)
    arch = run_strategy(tiny_nb201(), strategy, tmp_path, (3, 16, 16), n=16, batch_size=4, max_epochs=2)
    assert 'none' not in arch.values()
    probabilities = strategy.oneshot_module.export_probs()
    assert all(p['none'] == 0.0 for p in probabilities.values())
    rows = strategy.searcher.optimizer.ask(200)
    none = [var.values.index('none') for var in strategy.encoding.categorical]
    assert not (rows == np.array(none)).any()


def test_both_exports_are_available(tmp_path):
    strategy = nni_asng.AdvantageNAS(seed=0, export='process_best')
    exported = run_strategy(tiny_nb201(), strategy, tmp_path, (3, 16, 16), n=16, batch_size=4)
    searcher = strategy.searcher
    assert exported == strategy.export_architectures('process_best')
    assert strategy.export_architectures('process_best') == strategy.encoding.to_architecture(searcher.best_row)
    assert strategy.export_architectures('argmax') == strategy.encoding.to_architecture(searcher.argmax_row())
    with pytest.raises(ValueError, match='mode must be one of'):
        strategy.export_architectures('best')


def test_warmup_epochs_keep_theta_fixed(tmp_path):
    strategy = nni_asng.Reinforce(seed=0, warmup_epochs=1)
    run_strategy(MixedSpace(), strategy, tmp_path, (1, 8, 8), max_epochs=2)
    assert strategy.searcher.optimizer.updates == 2                         # only the second epoch's 2 steps


class NumericalSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.width = self.add_mutable(nni.quniform('width', 2, 8, 1))
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(x)


def test_numerical_variables_are_rejected_with_advice(tmp_path):
    with pytest.raises(nni_asng.UnsupportedSpaceError, match="'width'.*use ASNG or PDAS"):
        run_strategy(NumericalSpace(), nni_asng.AdvantageNAS(), tmp_path, (4,))


@pytest.mark.parametrize('make, message', [
    (lambda: nni_asng.AdvantageNAS(export='best'), 'export must be one of'),
    (lambda: nni_asng.AdvantageNAS(learning_rate=0), 'lr'),
    (lambda: nni_asng.Reinforce(gamma=2), 'gamma'),
    (lambda: nni_asng.Reinforce(warmup_epochs=1.5), 'warmup_epochs'),
])
def test_bad_hyperparameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()

"""ASNG / PDAS / SNG as NNI one-shot strategies, run the way a user runs them (NasExperiment)."""
import math

import nni
import numpy as np
import pytest
import torch
import torch.nn as nn
from nni.nas.hub.pytorch import DARTS, NasBench201, ProxylessNAS
from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace, MutableConv2d, Repeat

import nni_asng
from nni_asng.oneshot.natural_gradient import _NaturalGradientStrategy
from nni_asng.oneshot.searcher import NaturalGradientSearcher
from oneshot_harness import run_strategy


class MixedSpace(ModelSpace):
    """nni.choice (kernel), LayerChoice, InputChoice with n_chosen 1 and 2, Repeat depth."""

    def __init__(self):
        super().__init__()
        self.conv = MutableConv2d(1, 8, nni.choice('kernel', [3, 5]), padding=2)
        self.layer = LayerChoice([nn.Conv2d(8, 8, 3, padding=1), nn.Identity()], label='layer')
        self.pick = InputChoice(2, 1, label='pick')
        self.pair = InputChoice(3, 2, label='pair')
        self.repeat = Repeat(lambda i: nn.Conv2d(8, 8, 1), (1, 3), label='depth')
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        a = torch.relu(self.conv(x))[:, :, :8, :8]
        b = self.layer(a)
        c = self.pick([a, b])
        d = self.pair([a, b, c])
        return self.fc(self.repeat(d).mean((2, 3)))


@pytest.mark.parametrize('strategy', [nni_asng.ASNG(seed=0, warmup=0), nni_asng.PDAS(seed=0, warmup=0), nni_asng.SNG(seed=0, warmup=0)],
                         ids=['ASNG', 'PDAS', 'SNG'])
def test_search_exports_a_valid_architecture(strategy, tmp_path):
    space = MixedSpace()
    arch = run_strategy(space, strategy, tmp_path, (1, 8, 8), max_epochs=3)
    encoding = strategy.encoding
    encoding.validate(arch)
    assert set(arch) == {'kernel', 'layer', 'pick', 'pair', 'depth'}
    optimizer = strategy.searcher.optimizer
    assert optimizer.iteration == 6 and optimizer.updates >= 1          # 3 epochs x 2 steps
    assert not np.allclose(optimizer.theta, encoding.distribution().theta)   # θ moved
    assert arch == encoding.to_architecture(optimizer.most_likely())
    metrics = strategy.oneshot_module.trainer.callback_metrics
    for key in ['arch/convergence', 'arch/entropy', f'arch/{optimizer.step_size_name}', 'arch/argmax/layer',
                'arch/arch_loss', 'train_loss']:
        assert key in metrics, key
    assert [h['epoch'] for h in strategy.history] == [0, 1, 2]
    assert strategy.history[-1]['architectures'] == [arch]


def test_exported_architecture_freezes_into_a_fixed_network(tmp_path):
    strategy = nni_asng.ASNG(seed=1, warmup=0)
    arch = run_strategy(MixedSpace(), strategy, tmp_path, (1, 8, 8))
    fixed = MixedSpace().freeze(arch)
    out = fixed(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)
    n_conv = sum(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in fixed.modules())
    assert n_conv == arch['depth']                                     # unused Repeat blocks are gone


class CountingCandidate(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


class CountingSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.choice = LayerChoice([CountingCandidate() for _ in range(4)], label='choice')
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.choice(x))


def test_only_sampled_paths_run(tmp_path):
    """Sparse propagation: 2 weight-step passes + 2 θ-step passes per step, one candidate each."""
    space = CountingSpace()
    candidates = list(space.choice)
    run_strategy(space, nni_asng.ASNG(seed=0, warmup=0), tmp_path, (4,), n=32, batch_size=8)   # 4 steps
    assert sum(c.calls for c in candidates) == 4 * (2 + 2)


class _FixedRows(_NaturalGradientStrategy):
    """A strategy whose weight step always trains the given architecture rows (θ never moves)."""

    def __init__(self, rows, **kwargs):
        self.rows = np.asarray(rows, dtype=float)
        super().__init__(**kwargs)

    def make_optimizer(self, distribution):
        return nni_asng.optimizers.SNG(distribution, lam=max(2, len(self.rows)), delta=1e-9)

    def build_searcher(self, encoding, model=None):
        searcher = NaturalGradientSearcher(encoding, self.make_optimizer, warmup_epochs=10**6)
        searcher.weight_architectures = lambda epoch: self.rows
        return searcher


def _weights_after_one_step(rows, tmp_path):
    torch.manual_seed(0)
    space = CountingSpace()
    before = [p.detach().clone() for p in space.parameters()]
    run_strategy(space, _FixedRows(rows), tmp_path, (4,), n=8, batch_size=8, learning_rate=0.1,
                 optimizer=torch.optim.SGD)                            # one step; SGD sees the gradient's scale
    return before, [p.detach().clone() for p in space.parameters()]


def test_weight_step_uses_mean_gradient_over_samples(tmp_path):
    torch.manual_seed(0)
    _, same_twice = _weights_after_one_step([[1], [1]], tmp_path / 'a')
    _, once = _weights_after_one_step([[1]], tmp_path / 'b')
    for p, q in zip(same_twice, once):
        torch.testing.assert_close(p, q)                                # mean over identical samples = one
    before, mixed = _weights_after_one_step([[1], [2]], tmp_path / 'c')
    changed = [not torch.equal(b, m) for b, m in zip(before, mixed)]
    names = [n for n, _ in CountingSpace().named_parameters()]
    touched = {n.split('.')[1] for n, c in zip(names, changed) if c and n.startswith('choice')}
    assert touched == {'1', '2'}                                        # only the two sampled candidates


class NaNCandidate(nn.Module):
    def forward(self, x):
        return x * float('nan')


class SometimesNaN(ModelSpace):
    def __init__(self):
        super().__init__()
        self.choice = LayerChoice([nn.Identity(), NaNCandidate(), nn.Linear(4, 4)], label='choice')
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.choice(x))


def test_nan_losses_skip_updates_and_keep_theta_valid(tmp_path):
    strategy = nni_asng.ASNG(seed=0, warmup=0)
    with pytest.warns(RuntimeWarning) as record:
        run_strategy(SometimesNaN(), strategy, tmp_path, (4,), n=160, batch_size=8)
    messages = ' '.join(str(r.message) for r in record)
    assert 'non-finite loss' in messages and 'weight step is skipped' in messages
    optimizer = strategy.searcher.optimizer
    assert optimizer.skipped_nonfinite > 0 and optimizer.updates > 0
    theta = optimizer.theta
    assert np.all(np.isfinite(theta)) and theta.sum() == pytest.approx(1.0)
    assert all(math.isfinite(p.detach().abs().sum().item()) for p in strategy.supernet.parameters())


class AlwaysNaN(ModelSpace):
    def __init__(self):
        super().__init__()
        self.choice = LayerChoice([NaNCandidate(), NaNCandidate()], label='choice')
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.choice(x))


def test_persistent_nan_stops_with_clear_error(tmp_path):
    with pytest.raises(nni_asng.NonFiniteLossError, match='NaN/inf for 3 steps in a row.*learning rate'):
        run_strategy(AlwaysNaN(), nni_asng.ASNG(max_nonfinite_steps=3), tmp_path, (4,), n=64, batch_size=8)


def test_evaluator_gradient_clip_is_adopted_by_the_strategy(tmp_path):
    strategy = nni_asng.ASNG(seed=0, warmup=0)
    run_strategy(MixedSpace(), strategy, tmp_path, (1, 8, 8), gradient_clip_val=5.0)   # Lightning would refuse it
    assert strategy.gradient_clip_val == 5.0
    assert strategy.oneshot_module.gradient_clip_val == 5.0


@pytest.mark.parametrize('make, message', [
    (lambda: nni_asng.ASNG(lam=1), 'lam'),
    (lambda: nni_asng.ASNG(delta_init=0), 'delta_init'),
    (lambda: nni_asng.ASNG(alpha=-1), 'alpha'),
    (lambda: nni_asng.ASNG(theta_min=0.9), 'no domain'),
    (lambda: nni_asng.ASNG(theta_min=0), "theta_min=0 .*'paper'"),
    (lambda: nni_asng.PDAS(theta_min=0.0), 'theta_min=0'),
    (lambda: nni_asng.SNG(sigma_min_fraction=0), 'sigma_min_fraction'),
    (lambda: nni_asng.ASNG(sigma_min_fraction=0.5), 'sigma_min_fraction'),
    (lambda: nni_asng.ASNG(warmup_epochs=-1), 'warmup_epochs'),
    (lambda: nni_asng.ASNG(gradient_clip_val=0), 'gradient_clip_val'),
    (lambda: nni_asng.ASNG(seed='x'), 'seed'),
    (lambda: nni_asng.PDAS(alpha=0), 'alpha'),
    (lambda: nni_asng.SNG(delta=float('nan')), 'delta'),
])
def test_malformed_hyperparameters_fail_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class Unsupported(ModelSpace):
    def __init__(self):
        super().__init__()
        self.pick = InputChoice(3, n_chosen=None, label='anything')
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.pick([x, x, x]))


def test_unsupported_mutable_is_named(tmp_path):
    with pytest.raises(nni_asng.UnsupportedSpaceError, match="'anything'.*n_chosen=None"):
        run_strategy(Unsupported(), nni_asng.ASNG(), tmp_path, (4,))


@pytest.mark.parametrize('name, make, shape', [
    ('NasBench201', lambda: NasBench201(stem_out_channels=4, num_modules_per_stack=1, num_labels=10), (3, 16, 16)),
    ('DARTS', lambda: DARTS(width=4, num_cells=3, dataset='cifar'), (3, 16, 16)),
    ('ProxylessNAS', lambda: ProxylessNAS(num_labels=10, width_mult=0.25, base_widths=(8,) * 9), (3, 32, 32)),
])
def test_runs_unchanged_on_nni_hub_spaces(name, make, shape, tmp_path):
    space = make()
    labels = set(space.simplify())
    strategy = nni_asng.ASNG(seed=0, warmup=0)
    arch = run_strategy(space, strategy, tmp_path, shape, n=8, batch_size=4, max_epochs=2)
    assert set(arch) == labels
    assert strategy.searcher.optimizer.iteration == 4


def test_activation_skips_only_supermodules_without_mutables(tmp_path):
    """Hub DARTS wraps every convolution in a mixed operation over fixed arguments; activating just
    the supermodules with mutables must leave the supernet computing exactly what activating all does."""
    strategy = nni_asng.ASNG(seed=0, warmup=0)
    run_strategy(DARTS(width=4, num_cells=3, dataset='cifar'), strategy, tmp_path, (3, 16, 16), n=8, batch_size=4)
    module = strategy.oneshot_module
    every = list(module.supernet_modules())
    assert 0 < len(module._supernet) < len(every)
    assert all(m.simplify() for m in module._supernet)
    x = torch.randn(2, 3, 16, 16)
    module.eval()
    for _ in range(3):
        arch = strategy.encoding.to_architecture(strategy.searcher.optimizer.ask(1)[0])
        module.activate(arch)
        cached = module.model(x)
        for m in every:
            m.resample(memo=arch)
        assert torch.equal(cached, module.model(x))


@pytest.mark.parametrize('make', [nni_asng.ASNG, nni_asng.SNG, nni_asng.PDAS])
def test_sigma_min_fraction_reaches_the_gaussian_variables(make):
    encoding = nni_asng.SearchSpaceEncoding({'p': nni.uniform('p', 0.0, 0.5)})
    searcher = make(sigma_min_fraction=0.1).build_searcher(encoding)
    np.testing.assert_allclose(searcher.optimizer.distribution.parts[0].std_min, [0.05])

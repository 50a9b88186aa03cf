"""The strategy's seed reproduces a search run through NNI's own API (``NasExperiment``), whatever else drew
from the global random generators between building the space and running the search."""
import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import Classification, DataLoader
from nni.nas.nn.pytorch import LayerChoice, ModelSpace

import nni_asng
from oneshot_harness import RandomDataset, run_experiment


class _Space(ModelSpace):
    def __init__(self):
        super().__init__()
        self.a = LayerChoice([nn.Linear(8, 8), nn.Identity(), nn.Linear(8, 8)], label='a')
        self.b = LayerChoice([nn.Linear(8, 8), nn.Identity()], label='b')
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def _search(strategy_class, tmp_path, other_draws: int):
    torch.manual_seed(0)                                  # the same initial weights in both runs
    space = _Space()
    data = RandomDataset(n=64, input_shape=(8,), num_classes=4, seed=0)
    evaluator = Classification(num_classes=4, train_dataloaders=DataLoader(data, batch_size=8, shuffle=True),
                               val_dataloaders=DataLoader(data, batch_size=8, shuffle=True), max_epochs=2,
                               enable_progress_bar=False, logger=False, enable_checkpointing=False,
                               enable_model_summary=False, default_root_dir=str(tmp_path))
    torch.rand(other_draws), np.random.rand(other_draws), [random.random() for _ in range(other_draws)]
    strategy = strategy_class(seed=3, warmup=0.25)
    arch = run_experiment(space, evaluator, strategy, tmp_path / 'nni')
    weights = torch.cat([p.detach().flatten() for p in strategy.supernet.parameters()])
    return arch, strategy.searcher.state_dict(), weights


def _same_state(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b or (a != a and b != b)


@pytest.mark.parametrize('strategy_class', [nni_asng.ASNG, nni_asng.AdvantageNAS])
def test_the_same_seed_gives_the_same_search_through_nas_experiment(strategy_class, tmp_path):
    arch1, state1, weights1 = _search(strategy_class, tmp_path / 'one', other_draws=1)
    arch2, state2, weights2 = _search(strategy_class, tmp_path / 'two', other_draws=5)
    assert arch1 == arch2
    assert torch.equal(weights1, weights2)                # same data order, same sampled paths
    assert _same_state(state1, state2)                    # same θ, same sampler state

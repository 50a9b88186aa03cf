"""A user's own search space and data, defined OUTSIDE nni_asng (written into a temporary folder that is
put on PYTHONPATH), and tiny configs of the search-and-retrain pipeline for the tests."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

MODULE = 'userspace_nni_asng_test'

#: A small NNI model space (two choices) and a learnable 4-class image task (stripes vs checkerboard vs
#: noise), the way a user would write them.
USER_MODULE = '''
"""The user's own model space and data."""
import torch
import torch.nn as nn
from torch.utils.data import Dataset, TensorDataset
from nni.nas.nn.pytorch import LayerChoice, ModelSpace


class TinySpace(ModelSpace):
    def __init__(self, in_channels: int = 1, num_classes: int = 4, width: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.op = LayerChoice({'conv3': nn.Conv2d(width, width, 3, padding=1),
                               'conv5': nn.Conv2d(width, width, 5, padding=2),
                               'pool': nn.MaxPool2d(3, 1, 1)}, label='op')
        self.act = LayerChoice({'relu': nn.ReLU(), 'tanh': nn.Tanh()}, label='act')
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.act(self.op(self.stem(x))).mean((2, 3)))


def make_data(n: int = 256, seed: int = 0, fail_for_seed=None):
    """(train, val, test) TensorDatasets of 12x12 images; fails on purpose for seed `fail_for_seed`."""
    if fail_for_seed is not None and seed == fail_for_seed:
        raise RuntimeError(f'deliberate failure of the data factory for seed {seed}')
    g = torch.Generator().manual_seed(1234)
    i = torch.arange(12)
    patterns = torch.stack([(i % 2).view(12, 1).expand(12, 12), (i % 2).view(1, 12).expand(12, 12),
                            (i.view(12, 1) + i.view(1, 12)) % 2, torch.zeros(12, 12, dtype=torch.long)]).float()

    def part(size):
        y = torch.randint(0, 4, (size,), generator=g)
        return TensorDataset(patterns[y].unsqueeze(1) * 1.5 + torch.randn(size, 1, 12, 12, generator=g) * 0.5, y)
    return part(n), part(n // 2), part(n // 2)


def as_dict(n: int = 64):
    train, val, test = make_data(n)
    return {'train': torch.utils.data.DataLoader(train, batch_size=16), 'val': val, 'num_classes': 4}


def returns_int():
    return 3


def returns_one():
    return (make_data(32)[0],)


def returns_strings():
    return ['a', 'b']


class Flat(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(144), 0


def returns_flat():
    return Flat(), Flat()


NOT_A_SPACE = 3
'''


def write_user_module(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{MODULE}.py'
    path.write_text(USER_MODULE)
    return path


#: The pipeline on the user's space and data: two search seeds, one retraining seed, all on the CPU.
USER_CONFIG: dict[str, Any] = {
    'name': 'user_space_pipeline',
    'seed': 0,
    'space': {'name': f'{MODULE}:TinySpace', 'args': {'width': 4}},
    'strategy': {'name': 'asng', 'args': {'lam': 2}},
    'data': {'factory': f'{MODULE}:make_data', 'factory_args': {'n': 256}, 'batch_size': 32},
    'search': {'epochs': 2, 'device': 'cpu', 'progress_bar': False, 'threads': 1, 'checkpoint_every_n_steps': 4,
               'optimizer': {'lr': 0.05}},
    'retrain': {'epochs': 2, 'batch_size': 32, 'device': 'cpu', 'progress_bar': False, 'threads': 1, 'seeds': [0],
                'optimizer': {'lr': 0.05}},
    'launch': {'poll_interval': 1, 'trial_concurrency': 2},
}


def write_config(path: Path, base: dict[str, Any] | None = None, **changes: Any) -> Path:
    """``base`` (default :data:`USER_CONFIG`) with ``changes`` (``section__key=value``) as a YAML file."""
    config = copy.deepcopy(USER_CONFIG if base is None else base)
    for dotted, value in changes.items():
        *parents, key = dotted.split('__')
        target = config
        for part in parents:
            target = target.setdefault(part, {})
        target[key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class FakeTrialChannel:
    """Stands in for NNI's trial command channel: hands out ``parameters`` and records the metrics."""

    def __init__(self, parameters: dict, parameter_id: int = 7):
        self.parameters, self.parameter_id = parameters, parameter_id
        self.sent: list[tuple[str, int, int, dict]] = []

    def receive_parameter(self):
        return {'parameter_id': self.parameter_id, 'parameter_source': 'algorithm', 'parameters': self.parameters,
                'parameter_index': 0}

    def send_metric(self, type, parameter_id, trial_job_id, sequence, value):  # noqa: A002 - NNI's names
        self.sent.append((type, parameter_id, sequence, value))

    def intermediate(self) -> list[dict]:
        return [m[3] for m in self.sent if m[0] == 'PERIODICAL']

    def final(self) -> list[dict]:
        return [m[3] for m in self.sent if m[0] == 'FINAL']

"""Run any NNI one-shot strategy for a few steps on random data (CPU, seconds).

Used by space and strategy tests alike, so every space is exercised by NNI's own
strategies and by ours through the same path a user takes (``NasExperiment.run``).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import nni
import torch
from torch.utils.data import Dataset
from nni.nas.evaluator.pytorch import Classification, DataLoader, Regression
from nni.nas.experiment import NasExperiment


@nni.trace
class RandomDataset(Dataset):
    """``n`` random inputs with class labels (``num_classes``) or regression targets (``target_shape``)."""

    def __init__(self, n: int, input_shape: tuple, num_classes: int | None = None,
                 target_shape: tuple | None = None, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, *input_shape, generator=g)
        if num_classes is not None:
            self.y = torch.randint(0, num_classes, (n,), generator=g)
        else:
            self.y = torch.randn(n, *(target_shape or input_shape), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def random_loaders(input_shape: tuple[int, ...], num_classes: int | None, n: int = 16, batch_size: int = 8,
                   target_shape: tuple[int, ...] | None = None, seed: int = 0, shuffle: bool = False):
    """Train/val loaders over ``n`` random examples; classification when ``num_classes`` is set."""
    ds = RandomDataset(n=n, input_shape=tuple(input_shape), num_classes=num_classes,
                       target_shape=None if target_shape is None else tuple(target_shape), seed=seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle), DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


def run_strategy(space, strategy, tmp_path: Path, input_shape: tuple[int, ...], num_classes: int | None = 10,
                 n: int = 16, batch_size: int = 8, max_epochs: int = 1, target_shape=None,
                 **trainer_kwargs: Any) -> dict:
    """Search ``space`` with ``strategy`` for ``max_epochs`` over ``n`` random examples; return the exported arch."""
    train, val = random_loaders(input_shape, num_classes, n, batch_size, target_shape)
    common = dict(train_dataloaders=train, val_dataloaders=val, max_epochs=max_epochs,
                  enable_progress_bar=False, logger=False, enable_checkpointing=False,
                  enable_model_summary=False, default_root_dir=str(tmp_path), **trainer_kwargs)
    if num_classes is not None:
        evaluator = Classification(num_classes=num_classes, **common)
    else:
        evaluator = Regression(**common)
    return run_experiment(space, evaluator, strategy, tmp_path / 'nni-experiments')


def run_experiment(space, evaluator, strategy, workdir: Path) -> dict:
    """``NasExperiment(space, evaluator, strategy).run()`` with NNI's files under ``workdir``, always stopped
    (otherwise NNI stops it at exit, logging into pytest's closed streams); returns the top architecture."""
    exp = NasExperiment(space, evaluator, strategy)
    exp.config.experiment_working_directory = str(workdir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)          # Lightning's loader/logging advice
            warnings.filterwarnings('ignore', message='.*not a nn.Module.*')
            exp.run()
        return exp.export_top_models(formatter='dict')[0]
    finally:
        exp.stop()


def random_arch(space, seed: int) -> dict:
    """A random architecture of ``space``, drawn with NNI's own ``Mutable.random``."""
    import numpy as np
    rs = np.random.RandomState(seed)
    return {label: mutable.random(random_state=rs) for label, mutable in space.simplify().items()}

"""Run one search on ``devices`` CPU processes (Lightning DDP, gloo) and write each rank's final θ.

Used by tests/test_distributed.py. The space's loss depends only on the architecture (constant
per-candidate logits, constant labels), so the single-process run sees the same losses for the
same samples and the θ trajectories must coincide.

    python tests/scripts/ddp_search.py OUT_DIR {asng,advantage} DEVICES
"""
import json
import os
import sys
import warnings
from pathlib import Path

import nni
import pytorch_lightning as pl
import torch
import torch.nn as nn
from nni.nas.evaluator.pytorch import Classification, DataLoader
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch.utils.data import Dataset

import nni_asng


class ConstantLogits(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.register_buffer('logits', torch.linspace(0.0, value, 3))

    def forward(self, x):
        return self.logits.expand(x.shape[0], 3)


class ArchitectureOnlyLoss(ModelSpace):
    def __init__(self):
        super().__init__()
        self.first = LayerChoice([ConstantLogits(v) for v in (0.5, 1.0, 2.0, 3.0)], label='first')
        self.second = LayerChoice([ConstantLogits(v) for v in (0.1, 1.5, -1.0)], label='second')
        self.dummy = nn.Linear(2, 3)        # something for the weight optimiser; contributes 0

    def forward(self, x):
        return self.first(x) + self.second(x) + 0.0 * self.dummy(x)


@nni.trace
class Zeros(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((2,), float(i)), torch.tensor(0)


def main(out: Path, which: str, devices: int) -> None:
    warnings.filterwarnings('ignore')
    pl.seed_everything(0, verbose=False)
    loader = DataLoader(Zeros(n=16 * devices), batch_size=4)      # the same number of steps per rank
    ddp = dict(strategy='ddp_find_unused_parameters_true', devices=devices) if devices > 1 else dict(devices=1)
    evaluator = Classification(num_classes=3, train_dataloaders=loader, val_dataloaders=loader, max_epochs=2,
                               accelerator='cpu', enable_progress_bar=False, logger=False, enable_model_summary=False,
                               enable_checkpointing=False, default_root_dir=str(out), **ddp)
    # warmup=0: θ moves from the first step, so that every step's update is compared across ranks
    strategy = nni_asng.ASNG(seed=3, warmup=0) if which == 'asng' else nni_asng.AdvantageNAS(seed=3, learning_rate=0.1,
                                                                                          warmup=0)
    exp = NasExperiment(ArchitectureOnlyLoss(), evaluator, strategy)
    exp.config.experiment_working_directory = str(out / 'nni')
    try:
        exp.run()
    finally:
        exp.stop()
    optimizer = strategy.searcher.optimizer
    theta = optimizer.policy.logits.tolist() if which == 'advantage' else optimizer.theta.tolist()
    rank = int(os.environ.get('LOCAL_RANK', 0))
    (out / f'theta_rank{rank}_of{devices}.json').write_text(json.dumps({'theta': theta, 'updates': optimizer.updates}))


if __name__ == '__main__':
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))

"""A search that crashes and resumes from its last checkpoint repeats the uninterrupted θ trajectory."""
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from nni.nas.evaluator.pytorch import Classification
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

import nni_asng
from oneshot_harness import random_loaders, run_experiment
from test_strategy_natural_gradient import MixedSpace


class CrashAt(Callback):
    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError('simulated crash')


def search(folder, make_strategy, crash=None, ckpt_path=None, epochs=3):
    pl.seed_everything(0, verbose=False)
    train, val = random_loaders((1, 8, 8), 10, n=32, batch_size=8, shuffle=True)   # data order uses torch's RNG
    callbacks = [ModelCheckpoint(dirpath=str(folder), save_last=True, every_n_epochs=1)] + ([crash] if crash else [])
    evaluator = Classification(num_classes=10, train_dataloaders=train, val_dataloaders=val, max_epochs=epochs,
                               enable_progress_bar=False, logger=False, enable_model_summary=False,
                               callbacks=callbacks, default_root_dir=str(folder))
    if ckpt_path:
        evaluator.fit_kwargs['ckpt_path'] = str(ckpt_path)       # default weights_only loading must work
    strategy = make_strategy()
    run_experiment(MixedSpace(), evaluator, strategy, folder / 'nni')
    return strategy


def state_of(strategy):
    optimizer = strategy.searcher.optimizer
    if hasattr(optimizer, 'policy'):
        return optimizer.policy.logits.copy()
    if hasattr(optimizer, 'distributions'):
        return np.concatenate([d.theta for d in optimizer.distributions])
    return optimizer.theta.copy()


@pytest.mark.parametrize('make', [
    lambda: nni_asng.ASNG(seed=0),
    lambda: nni_asng.AdvantageNAS(seed=0, learning_rate=0.05),
    lambda: nni_asng.MultiComplexity(epsilons=[0.0, 1.0], weight_epochs=1, theta_epochs=2, learning_rate=0.2, seed=0),
], ids=['ASNG', 'AdvantageNAS', 'MultiComplexity'])
def test_crash_and_resume_gives_identical_theta_trajectory(make, tmp_path):
    uninterrupted = search(tmp_path / 'a', make)
    with pytest.raises(RuntimeError, match='simulated crash'):
        search(tmp_path / 'b', make, crash=CrashAt(epoch=2, batch=3))          # last.ckpt = end of epoch 1
    resumed = search(tmp_path / 'b', make, ckpt_path=tmp_path / 'b' / 'last.ckpt')
    np.testing.assert_array_equal(state_of(resumed), state_of(uninterrupted))  # bit for bit
    assert [h['epoch'] for h in resumed.history] == [0, 1, 2]
    assert [h['entropy'] for h in resumed.history] == [h['entropy'] for h in uninterrupted.history]
    for p, q in zip(resumed.supernet.parameters(), uninterrupted.supernet.parameters()):
        assert torch.equal(p, q)


def test_checkpoint_restores_torch_numpy_and_python_rngs(tmp_path):
    strategy = search(tmp_path, lambda: nni_asng.ASNG(seed=0), epochs=1)
    module, checkpoint = strategy.oneshot_module, {}
    module.on_save_checkpoint(checkpoint)
    draw = lambda: (torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)])
    first = draw()
    module.on_load_checkpoint(checkpoint)
    assert draw() == first


def test_checkpoint_holds_search_state_and_rng(tmp_path):
    search(tmp_path, lambda: nni_asng.ASNG(seed=0), epochs=1)
    checkpoint = torch.load(tmp_path / 'last.ckpt', weights_only=True)        # safe loading must work
    state = checkpoint['nni_asng']
    assert {'searcher', 'history', 'rng'} <= set(state)
    assert {'Delta', 'gamma', 's'} <= set(state['searcher']['optimizer'])

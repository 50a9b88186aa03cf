"""The GPU-oriented options of the configs: mixed precision, channels_last, pinned/persistent data loaders."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from nni_asng.app import ConfigError, dump_config, parse_config
from nni_asng.app.runners import assembly, tasks

BASE = """name: gpu_options
space: {name: enas_cell, args: {channels: 2, cells_per_stage: 1}}
strategy: {name: asng}
"""


def config(extra: str = ''):
    return parse_config(BASE + extra)


def test_precision_and_channels_last_keys():
    cfg = config()
    assert (cfg.search.precision, cfg.retrain.precision) == ('32', '32')
    assert (cfg.search.channels_last, cfg.retrain.channels_last) == (False, False)
    cfg = config('search: {precision: bf16-mixed, channels_last: true}\nretrain: {precision: 16}\n')
    assert (cfg.search.precision, cfg.search.channels_last, cfg.retrain.precision) == ('bf16-mixed', True, '16-mixed')
    assert config('search: {precision: 32}\n').search.precision == '32'
    assert config('retrain: {precision: bf16}\n').retrain.precision == 'bf16-mixed'
    again = parse_config(dump_config(cfg))
    assert (again.search.precision, again.retrain.precision) == ('bf16-mixed', '16-mixed')
    with pytest.raises(ConfigError, match=r"search\.precision: expected '32', 'bf16-mixed' or '16-mixed', got 'fp8'"):
        config('search: {precision: fp8}\n')
    with pytest.raises(ConfigError, match=r'retrain\.channels_last'):
        config('retrain: {channels_last: sometimes}\n')


def test_precision_reaches_the_trainers_and_fp16_needs_cuda():
    cfg = config('search: {precision: bf16-mixed}\nretrain: {precision: bf16-mixed, channels_last: true}\n')
    trainer = assembly.retrain_trainer(cfg.retrain, device='cpu', callbacks=[], logger=False, default_root_dir=None)
    assert trainer.precision == 'bf16-mixed'
    assert any(isinstance(c, tasks.ChannelsLast) for c in trainer.callbacks)
    with pytest.raises(ConfigError, match='search.precision: 16-mixed .* needs a CUDA device'):
        tasks.trainer_precision('16-mixed', 'cpu', 'search')
    assert tasks.trainer_precision('16-mixed', 'cuda', 'search') == '16-mixed'


class _Recorder(pl.LightningModule):
    """A conv net that records the memory format of the inputs it is given."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.conv(x).mean((1, 2, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _fit(module, callbacks):
    data = DataLoader(TensorDataset(torch.randn(8, 3, 6, 6), torch.randn(8)), batch_size=4)
    pl.Trainer(accelerator='cpu', max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, callbacks=callbacks).fit(module, data)
    return module


def test_channels_last_converts_weights_and_every_input():
    module = _fit(_Recorder(), [tasks.ChannelsLast(force=True)])     # forced: this test runs on a CPU
    assert module.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert module.seen == [True, True]
    assert _fit(_Recorder(), []).seen == [False, False]


def test_channels_last_is_left_off_on_cpus():
    with pytest.warns(RuntimeWarning, match='channels_last is a GPU option'):
        module = _fit(_Recorder(), [tasks.ChannelsLast()])
    assert module.seen == [False, False]
    assert not module.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_loaders_pin_memory_for_cuda_and_keep_workers():
    dataset = TensorDataset(torch.zeros(8, 1), torch.zeros(8))
    loader = tasks._loader(dataset, 4, 1, True, pin_memory=True)
    assert loader.pin_memory and loader.persistent_workers and loader.drop_last
    assert not tasks._loader(dataset, 4, 0, False).persistent_workers
    assert tasks._pin_memory('cpu') is False
    assert tasks._pin_memory('cuda') == torch.cuda.is_available() == tasks._pin_memory('auto')


def test_accelerator_info_names_the_device():
    info = tasks.accelerator_info('cpu')
    assert info['device'] == 'cpu' and info['torch'] == torch.__version__
    assert 'cuda_device_name' not in info

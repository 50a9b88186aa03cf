"""Inpainting masks and dataset view, and the inpainting evaluator (asng-nas §3.3, pdas §4.2)."""
from __future__ import annotations

import math
import warnings

import nni
import pytest
import torch
import torch.nn as nn
from nni.common.serializer import is_traceable
from nni.nas.evaluator.pytorch import DataLoader
from nni.nas.strategy import RandomOneShot
from torch.utils.data import Dataset

from nni_asng.data.inpainting import InpaintingDataset, make_mask
from nni_asng.evaluators import Inpainting, InpaintingModule
from oneshot_harness import run_experiment
from search_spaces.cae import CAENetwork, CAESpace

warnings.filterwarnings('ignore', message='.*not a nn.Module.*')

QUIET = dict(enable_progress_bar=False, logger=False, enable_checkpointing=False, enable_model_summary=False)


@nni.trace
class RandomImages(Dataset):
    """``n`` images in [low, high] with dummy labels, like a torchvision dataset with ``ToTensor``."""

    def __init__(self, n: int, shape: tuple, low: float = 0., high: float = 1., seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = low + (high - low) * torch.rand(n, *shape, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 10


@nni.trace
class Pairs(Dataset):
    """(input, target) pairs given directly."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        self.inputs, self.targets = inputs, targets

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        return self.inputs[i], self.targets[i]


# ------------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize('height, width, top, left, side', [(16, 16, 4, 4, 8), (28, 28, 7, 7, 14), (20, 32, 5, 11, 10)])
def test_center_mask_is_the_central_square(height, width, top, left, side):
    mask = make_mask('center', height, width)
    expected = torch.zeros(height, width, dtype=torch.bool)
    expected[top:top + side, left:left + side] = True
    assert torch.equal(mask, expected)


def test_pixel_mask_hides_80_percent():
    g = torch.Generator().manual_seed(0)
    for height, width in ((16, 16), (28, 28), (64, 64)):
        mask = make_mask('pixel', height, width, g)
        assert int(mask.sum()) == round(0.8 * height * width)


def test_half_mask_is_one_of_four_halves():
    g = torch.Generator().manual_seed(1)
    seen = set()
    for _ in range(60):
        mask = make_mask('half', 16, 16, g)
        assert int(mask.sum()) == 128
        halves = {'top': mask[:8].all() and not mask[8:].any(), 'bottom': mask[8:].all() and not mask[:8].any(),
                  'left': mask[:, :8].all() and not mask[:, 8:].any(),
                  'right': mask[:, 8:].all() and not mask[:, :8].any()}
        found = [name for name, ok in halves.items() if ok]
        assert len(found) == 1
        seen.add(found[0])
    assert seen == {'top', 'bottom', 'left', 'right'}


def test_unknown_mask_is_refused():
    with pytest.raises(ValueError, match=r"unknown mask 'box'.*'center', 'pixel', 'half'"):
        InpaintingDataset(RandomImages(2, (1, 8, 8)), mask='box')


# ------------------------------------------------------------------------------------------------ dataset view
@pytest.mark.parametrize('kind', ['center', 'pixel', 'half'])
def test_view_masks_all_channels_and_keeps_the_clean_image(kind):
    base = RandomImages(4, (3, 16, 16), low=0.1)
    view = InpaintingDataset(base, mask=kind, train=False)
    for i in range(len(view)):
        masked, clean = view[i]
        assert torch.equal(clean, base[i][0])
        missing = masked == 0
        assert torch.equal(missing[0], missing[1]) and torch.equal(missing[0], missing[2])
        assert torch.equal(missing[0], view.mask_for(i, 16, 16))
        assert torch.equal(masked[~missing], clean[~missing])


def test_test_masks_are_deterministic_per_index():
    base = RandomImages(6, (1, 16, 16))
    first = InpaintingDataset(base, mask='pixel', train=False, seed=3)
    second = InpaintingDataset(base, mask='pixel', train=False, seed=3)
    masks = [first[i][0] for i in range(6)]
    torch.manual_seed(123)                                     # the global generator does not matter
    assert all(torch.equal(masks[i], second[i][0]) and torch.equal(masks[i], first[i][0]) for i in range(6))
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 6        # different indices, different masks
    other_seed = InpaintingDataset(base, mask='pixel', train=False, seed=4)
    assert not torch.equal(other_seed[0][0], masks[0])


@pytest.mark.parametrize('kind', ['pixel', 'half'])
def test_training_masks_are_new_at_every_read(kind):
    torch.manual_seed(0)
    view = InpaintingDataset(RandomImages(2, (1, 16, 16)), mask=kind, train=True)
    draws = {tuple(view[0][0].flatten().tolist()) for _ in range(12)}
    assert len(draws) > 1
    loader = torch.utils.data.DataLoader(view, batch_size=2)
    first, second = next(iter(loader))[0], next(iter(loader))[0]
    assert not torch.equal(first, second)                     # a new mask per mini-batch too


def test_view_refuses_non_tensor_images():
    view = InpaintingDataset([(torch.zeros(16, 16, dtype=torch.uint8), 0)], mask='center')
    with pytest.raises(TypeError, match='float tensors C x H x W'):
        view[0]


# ------------------------------------------------------------------------------------------------ evaluator
class AddConstant(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.dummy = nn.Parameter(torch.zeros(()))            # the trainer needs a parameter

    def forward(self, x):
        return x + self.value + 0 * self.dummy


def validate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, tmp_path) -> dict:
    evaluator = Inpainting(val_dataloaders=DataLoader(Pairs(inputs, targets), batch_size=4),
                           default_root_dir=str(tmp_path), **QUIET)
    evaluator.evaluate(model)
    return {k: float(v) for k, v in evaluator.trainer.callback_metrics.items()}


def test_identical_images_give_ssim_one_and_infinite_psnr(tmp_path):
    images = RandomImages(8, (3, 16, 16)).x
    metrics = validate(AddConstant(0.0), images, images, tmp_path)
    assert metrics['val_ssim'] == pytest.approx(1.0, abs=1e-5)
    assert metrics['val_psnr'] == math.inf or metrics['val_psnr'] > 100
    assert metrics['val_loss'] == 0


def test_known_mse_gives_the_psnr_formula(tmp_path):
    images = RandomImages(8, (1, 16, 16), low=0.2, high=0.8).x     # +0.1 stays in [0, 1]: no clamping
    metrics = validate(AddConstant(0.1), images, images, tmp_path)
    assert metrics['val_loss'] == pytest.approx(0.01, rel=1e-4)
    assert metrics['val_psnr'] == pytest.approx(10 * math.log10(1 / 0.01), abs=1e-3)  # 20 dB
    assert 0 < metrics['val_ssim'] < 1


def test_psnr_is_the_mean_over_images(tmp_path):
    clean = torch.full((2, 1, 16, 16), 0.5)
    noisy = clean.clone()
    noisy[0] += 0.1                                               # MSE 0.01 -> 20 dB
    noisy[1] += 0.01                                              # MSE 1e-4 -> 40 dB
    metrics = validate(AddConstant(0.0), noisy, clean, tmp_path)
    assert metrics['val_psnr'] == pytest.approx(30.0, abs=1e-3)


def test_training_step_returns_the_mse_and_test_metrics_are_logged(tmp_path):
    module = InpaintingModule()
    module.set_model(AddConstant(0.1))
    images = RandomImages(4, (1, 16, 16), low=0.2, high=0.8).x
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)             # logging outside a trainer
        loss = module.training_step((images, images), 0)
    assert torch.is_tensor(loss) and loss.requires_grad and float(loss.detach()) == pytest.approx(0.01, rel=1e-4)
    evaluator = Inpainting(default_root_dir=str(tmp_path), **QUIET)
    evaluator.module.set_model(AddConstant(0.1))
    evaluator.trainer.test(evaluator.module, DataLoader(Pairs(images, images), batch_size=2))
    metrics = evaluator.trainer.callback_metrics
    assert float(metrics['test_psnr']) == pytest.approx(20.0, abs=1e-3) and 'test_ssim' in metrics


def test_evaluator_is_traced_like_nni_evaluators():
    evaluator = Inpainting(learning_rate=0.01, max_epochs=2, **QUIET)
    assert is_traceable(evaluator) and is_traceable(evaluator.module)
    assert evaluator.module.hparams.learning_rate == 0.01


def test_one_shot_search_with_the_inpainting_evaluator(tmp_path):
    base = RandomImages(8, (1, 16, 16))
    train = DataLoader(InpaintingDataset(base, mask='center', train=True), batch_size=4)
    val = DataLoader(InpaintingDataset(base, mask='pixel', train=False), batch_size=4)
    evaluator = Inpainting(train_dataloaders=train, val_dataloaders=val, max_epochs=1, gradient_clip_val=5.,
                           default_root_dir=str(tmp_path), **QUIET)
    space = CAESpace(in_channels=1, num_layers=3, level_back=2, width=1 / 16)
    arch = run_experiment(space, evaluator, RandomOneShot(), tmp_path / 'nni-experiments')
    child = space.freeze(arch)
    assert isinstance(child, CAENetwork) and child(torch.rand(2, 1, 16, 16)).shape == (2, 1, 16, 16)
    metrics = validate(child, *next(iter(val)), tmp_path)
    assert math.isfinite(metrics['val_psnr']) and -1 <= metrics['val_ssim'] <= 1


def test_restore_gives_the_clamped_output_the_metrics_see():
    module = InpaintingModule()
    module.set_model(AddConstant(0.5))
    images = torch.tensor([0.0, 0.25, 0.75, 1.0]).view(1, 1, 2, 2)
    restored = module.restore(images)
    assert not restored.requires_grad and torch.equal(restored, torch.tensor([0.5, 0.75, 1.0, 1.0]).view(1, 1, 2, 2))


@pytest.mark.parametrize('channels', [1, 3])
def test_inpainting_picture_shows_masked_output_original_side_by_side(tmp_path, channels):
    """``inpainting.png`` (written by inpainting searches and retrainings): one test image per row, the masked input,
    the output and the original left to right, rows aligned -- found in the PNG itself by their shades."""
    import matplotlib.image
    import numpy as np

    from nni_asng.app.runners.plots import plot_inpainting
    n, shades = 4, (0.2, 0.5, 0.8)                                   # masked input, output, original
    masked, output, original = (torch.full((n, channels, 12, 12), v) for v in shades)
    path = plot_inpainting(masked, output, original, tmp_path / 'inpainting.png', title='run\nretrained')
    image = matplotlib.image.imread(str(path))[..., :3]
    spans, rows = [], []
    for shade in shades:
        hits = np.abs(image - shade).max(-1) < 0.01                  # pixels of that shade (text has few)
        columns = np.flatnonzero(hits.sum(0) > 0.5 * hits.sum(0).max())
        assert columns.size > 3 * 12 and columns.size == columns[-1] - columns[0] + 1, 'one column of panels'
        spans.append((columns[0], columns[-1]))
        lines = (hits.sum(1) > 0.5 * hits.sum(1).max()).astype(int)
        rows.append(np.flatnonzero(np.diff(np.concatenate([[0], lines, [0]]))))   # starts and ends of the panels
    assert spans[0][1] < spans[1][0] and spans[1][1] < spans[2][0], f'columns out of order: {spans}'
    assert len(rows[0]) == 2 * n and all(np.array_equal(r, rows[0]) for r in rows), f'rows differ: {rows}'

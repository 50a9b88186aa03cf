"""Input validation sweep: malformed input to the public API and the CLI gets one clear error.

Every case asserts the exit status (CLI) or exception type (API), a message naming what is wrong
(a key path, label, file or value) and, on the CLI, no traceback. The last part checks that a
failed run leaves earlier results byte-for-byte intact. Cases already covered by test_config.py,
test_cli.py, test_data.py, test_encoding.py and the strategy tests are not repeated here.

The CLI runs in process (``nni_asng.app.cli.main``) on real Fashion-MNIST at tiny scale; one case runs
the real ``python -m nni_asng`` to check what a shell sees.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import nni
import pytest
import torch
import torch.nn as nn
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableDropout, MutableLinear

import nni_asng
from cli_harness import needs_fashion_mnist, run_cli, write_config
from nni_asng.app.cli import main
from nni_asng.data.fashion_mnist import DEFAULT_ROOT, FILES
from oneshot_harness import run_strategy


@pytest.fixture(scope='module', autouse=True)
def isolated_nni(tmp_path_factory):
    """NNI's experiment manifest (~/nni-experiments/.experiment) goes to tmp."""
    from nni.tools.nnictl.config_utils import Experiments
    saved = Experiments.__init__.__defaults__
    Experiments.__init__.__defaults__ = (str(tmp_path_factory.mktemp('nni-home')),)
    yield
    Experiments.__init__.__defaults__ = saved


@pytest.fixture(scope='module')
def config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp('config') / 'tiny.yaml')


def fails(capsys, *args, code: int = 2) -> str:
    """Run the CLI; it must exit with ``code`` and print no traceback. Returns stderr."""
    capsys.readouterr()
    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:                   # argparse's own usage errors
        status = exit_.code
    err = capsys.readouterr().err
    assert status == code, f'exit {status}, expected {code}: {err[-2000:]}'
    assert 'Traceback' not in err, err[-3000:]
    return err


def assert_mentions(text: str, *parts: str) -> None:
    for part in parts:
        assert part in text, f'{part!r} not in: {text[-1500:]}'


# ---------------------------------------------------------------------------------------------- configs
BASE = """\
name: sweep
space: {name: nas_bench_201, args: {channels: 2, num_cells: 1}}
strategy: {name: asng}
"""

CONFIG_CASES = {
    'top-level-list': ('- name: sweep\n- space: x\n', ['must be a mapping of sections', 'got a list']),
    'tab-indentation': ('name: sweep\nspace:\n\tname: nas_bench_201\n', ['malformed YAML', 'cfg.yaml:3']),
    'unknown-section': (BASE + 'optimizer: {lr: 0.1}\n', ['cfg.yaml:4: optimizer: unknown key']),
    'unknown-optimizer-key': (BASE + 'search: {optimizer: {learning_rate: 0.1}}\n',
                              ['search.optimizer.learning_rate: unknown key', 'lr']),
    'quoted-integer': (BASE + 'data: {batch_size: "64"}\n', ["data.batch_size: expected an integer, got '64'"]),
    'yaml-1.1-exponent': (BASE + 'search: {optimizer: {lr: 1e-3}}\n',
                          ["search.optimizer.lr: expected a number, got '1e-3'", 'YAML reads 1e-3 as text']),
    'not-a-boolean': (BASE + 'search: {progress_bar: maybe}\n', ["search.progress_bar: expected true or false"]),
    'unknown-device': (BASE + 'search: {device: gpu}\n', ["search.device: expected 'auto', 'cpu' or 'cuda'"]),
    'zero-devices': (BASE + 'search: {devices: 0}\n', ['search.devices: must be >= 1, got 0']),
    'negative-nodes': (BASE + 'search: {num_nodes: -1}\n', ['search.num_nodes: must be >= 1, got -1']),
    'negative-lr': (BASE + 'search: {optimizer: {lr: -0.1}}\n', ['search.optimizer.lr: must be > 0.0, got -0.1']),
    'unknown-optimizer': (BASE + 'retrain: {optimizer: {name: rmsprop}}\n',
                          ["retrain.optimizer.name: expected 'sgd', 'adam' or 'adamw', got 'rmsprop'"]),
    'zero-limit': (BASE + 'data: {limit: 0}\n', ['data.limit: a count must be >= 1, got 0']),
    'limit-word': (BASE + 'search: {limit_train_batches: all}\n', ['search.limit_train_batches: expected a count']),
    'duplicate-seeds': (BASE + 'retrain: {seeds: [1, 1]}\n', ['retrain.seeds: seeds must be distinct']),
    'no-seeds': (BASE + 'retrain: {seeds: []}\n', ['retrain.seeds:', 'at least 1']),
    'port-range': (BASE + 'launch: {port: 70000}\n', ['launch.port: must be <= 65535, got 70000']),
    'duration': (BASE + 'launch: {max_trial_duration: ten minutes}\n',
                 ["launch.max_trial_duration: expected a duration like '30m'"]),
    'training-service-platform': (BASE + 'launch: {training_service: {host: x}}\n',
                                  ['launch.training_service: needs a "platform" key']),
    'name-with-space': (BASE.replace('name: sweep', 'name: my run'), ["name: may only hold letters, digits"]),
    'negative-seed': (BASE + 'seed: -1\n', ['seed: must be >= 0, got -1']),
    'args-not-a-mapping': (BASE.replace('{channels: 2, num_cells: 1}', '[2, 1]'),
                           ['space.args: expected a mapping (key: value)']),
    'strategy-not-a-mapping': (BASE.replace('{name: asng}', 'asng'), ['strategy: expected a mapping']),
}


@pytest.mark.parametrize('case', sorted(CONFIG_CASES))
def test_malformed_config(case, tmp_path, capsys):
    text, expected = CONFIG_CASES[case]
    path = tmp_path / 'cfg.yaml'
    path.write_text(text)
    err = fails(capsys, 'check', path)
    assert_mentions(err, *expected)


@pytest.mark.parametrize('override, expected', [
    ('name.x=1', ["--set 'name.x=1': name is not a section"]),
    ('search.epochs', ["--set 'search.epochs': expected key.path=value"]),
], ids=['through-a-scalar', 'no-value'])
def test_malformed_override(override, expected, config, capsys):
    assert_mentions(fails(capsys, 'check', config, '--set', override), *expected)


# ---------------------------------------------------------------------------------------------- hyperparameters
@needs_fashion_mnist
@pytest.mark.parametrize('overrides, expected', [
    (['strategy.args.lam=1'], ['strategy.args', 'lam (λ, samples per iteration) must be an integer >= 2, got 1']),
    (['strategy.args.alpha=-1'], ['strategy.args', 'alpha must be > 0, got -1']),
    (['strategy.name=pdas', 'strategy.args={eta_init: 2.0}'], ['strategy.args', 'eta_init=2.0']),
    (['strategy.name=sng', 'strategy.args={delta: -1}'], ['strategy.args', 'delta must be a finite number > 0']),
    (['strategy.name=advantage_nas', 'strategy.args={learning_rate: -1}'], ['strategy.args', 'lr must be']),
    (['strategy.name=reinforce', 'strategy.args={gamma: 2}'], ['gamma (EMA decay) must be in (0, 1], got 2']),
    (['strategy.name=multi_complexity', 'strategy.args={epsilons: [-1.0]}', 'search.epochs=2'],
     ['every ε must be a finite number >= 0, got [-1.0]']),
    (['space.args.channels=0'], ["space 'nas_bench_201' rejects space.args", 'channels must be a positive integer']),
], ids=['asng-lambda-1', 'asng-alpha', 'pdas-eta', 'sng-delta', 'advantage-lr', 'reinforce-gamma',
        'multi-complexity-epsilon', 'space-channels'])
def test_bad_hyperparameters_are_named(overrides, expected, config, tmp_path, capsys):
    args = [a for o in overrides for a in ('--set', o)]
    out = tmp_path / 'out'
    err = fails(capsys, 'search', config, '--output', out, *args)
    assert_mentions(err, *expected)
    assert not out.exists(), 'nothing is written for a run that cannot start'


@needs_fashion_mnist
def test_cuda_without_a_gpu(config, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip('a GPU is visible')
    err = fails(capsys, 'search', config, '--output', tmp_path / 'out', '--set', 'search.device=cuda')
    assert_mentions(err, 'device is "cuda" but no CUDA device is visible')


# ---------------------------------------------------------------------------------------------- spaces
class EmptySpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(x)


class FloatChoiceDropout(ModelSpace):
    """An nni.choice of floats as a constructor argument of a module NNI cannot turn into a supernet."""

    def __init__(self):
        super().__init__()
        self.fc = MutableLinear(4, 10)
        self.drop = MutableDropout(nni.choice('drop_p', [0.1, 0.5]))

    def forward(self, x):
        return self.drop(self.fc(x))


class LogUniformSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = LayerChoice([nn.Linear(4, 10), nn.Linear(4, 10)], label='fc')
        self.lr = nni.loguniform('lr', 1e-4, 1e-1)
        self.add_mutable(self.lr)

    def forward(self, x):
        return self.fc(x)


class SingleChoiceSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = LayerChoice([nn.Linear(4, 10)], label='only')

    def forward(self, x):
        return self.fc(x)


class NumericalSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.fc = LayerChoice([nn.Linear(4, 10), nn.Linear(4, 10)], label='fc')
        self.scale = nni.uniform('scale', 0.0, 1.0)
        self.add_mutable(self.scale)

    def forward(self, x):
        return self.fc(x)


@pytest.mark.parametrize('space, make, error, expected', [
    (EmptySpace, lambda: nni_asng.ASNG(), nni_asng.UnsupportedSpaceError, ['no architecture choices',
                                                                          'nothing to search']),
    (FloatChoiceDropout, lambda: nni_asng.ASNG(), nni_asng.UnsupportedSpaceError, ["'drop'", 'MutableDropout',
                                                                                   "['drop_p']", 'LayerChoice']),
    (FloatChoiceDropout, lambda: nni_asng.AdvantageNAS(), nni_asng.UnsupportedSpaceError, ["['drop_p']"]),
    (LogUniformSpace, lambda: nni_asng.PDAS(), nni_asng.UnsupportedSpaceError, ["'lr'", 'log_distributed=True']),
    (SingleChoiceSpace, lambda: nni_asng.SNG(), nni_asng.UnsupportedSpaceError, ["['only']", 'single value']),
    (NumericalSpace, lambda: nni_asng.MultiComplexity(epsilons=[0.0], weight_epochs=0, theta_epochs=1),
     nni_asng.ComplexityError, ["['scale']", 'numerical']),
], ids=['empty-asng', 'float-choice-asng', 'float-choice-advantage', 'loguniform-pdas', 'single-value-sng',
        'numerical-multi-complexity'])
def test_unsupported_space(space, make, error, expected, tmp_path):
    with pytest.raises(error) as info:
        run_strategy(space(), make(), tmp_path, (4,))
    assert_mentions(str(info.value), *expected)


# ---------------------------------------------------------------------------------------------- architectures
@pytest.fixture(scope='module')
def searched(config, tmp_path_factory) -> Path:
    """A tiny real search: its results are what later failures must not touch."""
    if not (DEFAULT_ROOT / FILES['train_images']).is_file():
        pytest.skip('needs Fashion-MNIST')
    out = tmp_path_factory.mktemp('searched') / 'run'
    assert main(['search', str(config), '--output', str(out)]) == 0
    return out


def arch_file(tmp_path: Path, searched: Path, change) -> Path:
    doc = json.loads((searched / 'architecture.json').read_text())
    doc = change(doc)
    path = tmp_path / 'arch.json'
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _extra_label(doc):
    doc['architecture']['cell/9_9'] = 'conv_3x3'
    return doc


def _wrong_type(doc):
    doc['architecture']['cell/0_1'] = 3
    return doc


@pytest.mark.parametrize('change, extra, expected', [
    (_extra_label, [], ["unknown label(s) ['cell/9_9']", "the space has labels"]),
    (_wrong_type, [], ["label 'cell/0_1': value 3 is not one of the allowed values", 'conv_3x3']),
    (lambda doc: [doc['architecture']], [], ['expected a JSON object, got list']),
    (lambda doc: {'architecture': {}}, [], ['architecture 0 is not a {label: value} object']),
    (lambda doc: '', [], ['not valid JSON']),
    (lambda doc: {**doc, 'architecture': None, 'architectures': [{'architecture': doc['architecture']}]},
     ['--index', '3'], ['--index 3:', 'holds 1 architecture(s)']),
], ids=['extra-label', 'wrong-value-type', 'json-list', 'empty-architecture', 'empty-file', 'index-out-of-range'])
def test_bad_architecture_for_retrain(change, extra, expected, searched, config, tmp_path, capsys):
    path = arch_file(tmp_path, searched, change)
    out = tmp_path / 'retrain'
    err = fails(capsys, 'retrain', config, '--arch', path, '--output', out, *extra)
    assert_mentions(err, *expected)
    assert not (out / 'retrain.json').exists()


def test_retrain_needs_an_existing_architecture_file(config, tmp_path, capsys):
    assert_mentions(fails(capsys, 'retrain', config, '--output', tmp_path / 'r'), 'retrain needs --arch')
    assert_mentions(fails(capsys, 'retrain', config, '--arch', tmp_path / 'none.json', '--output', tmp_path / 'r'),
                    f'architecture file {tmp_path / "none.json"} does not exist')


# ---------------------------------------------------------------------------------------------- dataset folders
def _idx(header: bytes, body: bytes = b'') -> bytes:
    return gzip.compress(header + body)


def _folder(tmp_path: Path, broken: dict[str, bytes | None]) -> Path:
    """A Fashion-MNIST folder: links to the real files, except ``broken`` ones (None: left out)."""
    folder = tmp_path / 'fmnist'
    folder.mkdir()
    for key, name in FILES.items():
        if key in broken:
            if broken[key] is not None:
                (folder / name).write_bytes(broken[key])
        else:
            (folder / name).symlink_to(DEFAULT_ROOT / name)
    return folder


@needs_fashion_mnist
@pytest.mark.parametrize('broken, expected', [
    ({k: None for k in FILES}, ['Fashion-MNIST not found', 'lacks train-images-idx3-ubyte.gz', 'data.root']),
    ({'test_labels': None}, ['lacks t10k-labels-idx1-ubyte.gz']),
    ({'train_images': _idx(b'\x08\x08\x03\x00')}, ['train-images-idx3-ubyte.gz: bad IDX magic number']),
    ({'train_labels': gzip.compress(b'\x00\x00\x08\x01' + (60000).to_bytes(4, 'big') + bytes(100))[:-20]},
     ['train-labels-idx1-ubyte.gz: corrupt or truncated gzip stream']),
    ({'train_labels': _idx(b'\x00\x00\x08\x01' + (5).to_bytes(4, 'big'), bytes(5))},
     ['5 labels for 60000 images']),
], ids=['empty-folder', 'missing-file', 'bad-magic', 'truncated-gzip', 'label-count'])
def test_broken_dataset_folder(broken, expected, config, tmp_path, capsys):
    root = _folder(tmp_path, broken)
    err = fails(capsys, 'search', config, '--output', tmp_path / 'out', '--set', f'data.root={root}')
    assert_mentions(err, *expected)
    assert not (tmp_path / 'out').exists()


def test_dataset_root_that_is_a_file(config, tmp_path, capsys):
    a_file = tmp_path / 'images.gz'
    a_file.write_bytes(b'x')
    err = fails(capsys, 'search', config, '--output', tmp_path / 'out', '--set', f'data.root={a_file}')
    assert_mentions(err, 'Fashion-MNIST not found', f'{a_file} is a file, not a folder')


# ---------------------------------------------------------------------------------------------- resume
@pytest.fixture
def copy_of(searched, tmp_path):
    out = tmp_path / 'copy'
    shutil.copytree(searched, out)
    return out


@pytest.mark.parametrize('overrides, expected', [
    (['strategy.args.lam=4'], ['--resume: the config differs', 'strategy.args.lam: 2 -> 4']),
    (['seed=3'], ['seed: 0 -> 3']),
    (['data.batch_size=32'], ['data.batch_size: 16 -> 32']),
    (['search.devices=2'], ['written by a search on 1 process(es)', 'this one runs 2', '--set search.devices=1']),
], ids=['strategy-args', 'seed', 'data', 'devices'])
def test_resume_mismatch(overrides, expected, copy_of, config, capsys):
    args = [a for o in overrides for a in ('--set', o)]
    assert_mentions(fails(capsys, 'search', config, '--output', copy_of, '--resume', *args), *expected)


def test_resume_from_a_foreign_checkpoint(copy_of, config, capsys):
    torch.save({'state_dict': {}}, copy_of / 'checkpoints' / 'last.ckpt')
    assert_mentions(fails(capsys, 'search', config, '--output', copy_of, '--resume'), 'holds no nni-asng search state')


def test_resume_and_overwrite_together(copy_of, config, capsys):
    err = fails(capsys, 'search', config, '--output', copy_of, '--resume', '--overwrite')
    assert_mentions(err, 'argument --overwrite: not allowed with argument --resume')


@needs_fashion_mnist
def test_resume_from_a_truncated_checkpoint_in_a_shell(copy_of, config, tmp_path):
    """The real process: exit status 2, one message, no traceback and no NNI error noise."""
    ckpt = copy_of / 'checkpoints' / 'last.ckpt'
    ckpt.write_bytes(ckpt.read_bytes()[:1000])              # cut off while being written
    result = run_cli('search', config, '--output', copy_of, '--resume', home=tmp_path / 'home')
    assert result.returncode == 2, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr and 'ERROR' not in result.stdout + result.stderr
    assert_mentions(result.stderr, f'--resume: {ckpt} is not a readable checkpoint', '--overwrite')


# ---------------------------------------------------------------------------------------------- earlier results
def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file()}


@needs_fashion_mnist
@pytest.mark.parametrize('command', [
    ['search', '{config}', '--output', '{out}'],
    ['search', '{config}', '--output', '{out}', '--overwrite', '--set', 'data.root={tmp}/nowhere'],
    ['search', '{config}', '--output', '{out}', '--overwrite', '--set', 'strategy.args.lam=1'],
    ['search', '{config}', '--output', '{out}', '--resume', '--set', 'strategy.name=pdas'],
    ['retrain', '{config}', '--output', '{out}', '--arch', '{tmp}/bad.json'],
    ['retrain', '{config}', '--output', '{out}', '--overwrite', '--arch', '{tmp}/bad.json'],
    ['run', '{config}', '--output', '{out}', '--overwrite', '--set', 'space.args.channels=0'],
], ids=['search-again', 'overwrite-without-data', 'overwrite-bad-lambda', 'resume-other-strategy',
        'retrain-into-it', 'retrain-overwrite-bad-arch', 'run-overwrite-bad-space'])
def test_failed_run_leaves_earlier_results_intact(command, copy_of, config, tmp_path, capsys):
    doc = json.loads((copy_of / 'architecture.json').read_text())
    doc['architecture']['cell/0_1'] = 'conv_9x9'
    (tmp_path / 'bad.json').write_text(json.dumps(doc))
    before = snapshot(copy_of)
    assert {'architecture.json', 'summary.json', 'history.json', 'checkpoints/last.ckpt'} <= set(before)
    fails(capsys, *[part.format(config=config, out=copy_of, tmp=tmp_path) for part in command])
    assert snapshot(copy_of) == before, 'a failed run changed earlier results'

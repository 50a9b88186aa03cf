"""The ``nni-asng`` CLI end to end on REAL Fashion-MNIST, at tiny scale (seconds per command on a CPU).

Runs the shipped configs with ``--set`` overrides (a few hundred images, one epoch, tiny widths), in
process through ``nni_asng.app.cli.main``; NNI's experiment manifest and working directories go to tmp.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
import torch

from nni_asng.app.cli import main
from nni_asng.data.fashion_mnist import DEFAULT_ROOT

CONFIGS = Path(__file__).resolve().parents[1] / 'nni_asng' / 'app' / 'configs'
MAIN_JOB = CONFIGS / 'asng_enas_fashion_mnist.yaml'

pytestmark = pytest.mark.skipif(not (DEFAULT_ROOT / 'train-images-idx3-ubyte.gz').is_file(),
                                reason='needs Fashion-MNIST (apt-get install dataset-fashion-mnist)')

TINY_DATA = ['data.limit=192', 'data.batch_size=32', 'search.progress_bar=false', 'retrain.progress_bar=false']
TINY_ENAS = TINY_DATA + ['space.args.channels=2', 'search.epochs=1', 'search.checkpoint_every_n_steps=2',
                         'retrain.space_args.channels=2', 'retrain.epochs=1', 'retrain.limit=192',
                         'retrain.test_limit=200', 'retrain.batch_size=64', 'retrain.eval_every_n_epochs=1']


def sets(items):
    return [arg for item in items for arg in ('--set', item)]


@pytest.fixture(scope='module', autouse=True)
def isolated_nni(tmp_path_factory):
    """NNI's experiment manifest (~/nni-experiments/.experiment) goes to tmp; one torch thread."""
    from nni.tools.nnictl.config_utils import Experiments
    home = tmp_path_factory.mktemp('nni-home')
    saved_defaults, saved_threads = Experiments.__init__.__defaults__, torch.get_num_threads()
    Experiments.__init__.__defaults__ = (str(home),)
    torch.set_num_threads(1)
    yield home
    Experiments.__init__.__defaults__ = saved_defaults
    torch.set_num_threads(saved_threads)


def cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope='module')
def searched(tmp_path_factory):
    """One tiny ASNG search on the ENAS space with the main job's config."""
    pytest.importorskip('search_spaces.enas_cell')
    out = tmp_path_factory.mktemp('search') / 'asng'
    assert cli('search', MAIN_JOB, '--output', out, *sets(TINY_ENAS)) == 0
    return out


def assert_png(path: Path):
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert float(image[..., :3].std()) > 0.01, f'{path} is blank'


def test_search_writes_all_files(searched):
    for name in ('architecture.json', 'history.json', 'probabilities.json', 'summary.json', 'config.yaml',
                 'history.png', 'distribution.png', 'checkpoints/last.ckpt', 'logs/metrics.csv'):
        assert (searched / name).is_file(), name
    assert not list(searched.rglob('*.tmp')), 'no half-written temporary files'
    doc = json.loads((searched / 'architecture.json').read_text())
    assert doc['space'] == 'enas_cell' and doc['strategy'] == 'asng'
    arch = doc['architecture']
    assert len(arch) == 40 and all(k.startswith(('normal/', 'reduce/')) for k in arch)
    history = json.loads((searched / 'history.json').read_text())
    assert len(history) == 1 and {'convergence', 'entropy', 'delta', 'architectures'} <= set(history[0])
    probabilities = json.loads((searched / 'probabilities.json').read_text())
    assert set(probabilities) == set(arch)
    for dist in probabilities.values():
        assert abs(sum(dist.values()) - 1) < 1e-6
    summary = json.loads((searched / 'summary.json').read_text())
    assert summary['status'] == 'done' and summary['device'] == 'cpu' and summary['wall_time_s'] > 0
    assert summary['versions']['nni'] == '3.0' and summary['config']['space']['name'] == 'enas_cell'
    assert summary['global_step'] == 3           # 96 D_x images / batch 32
    assert_png(searched / 'history.png')
    assert_png(searched / 'distribution.png')
    ckpt = torch.load(searched / 'checkpoints' / 'last.ckpt', map_location='cpu', weights_only=False)
    assert 'nni_asng' in ckpt, 'the search state is stored in the checkpoint'


def test_retrain_on_the_exported_architecture(searched, tmp_path, capsys):
    out = tmp_path / 'retrain'
    assert cli('retrain', MAIN_JOB, '--arch', searched / 'architecture.json', '--seed', 3, '--output', out,
               *sets(TINY_ENAS)) == 0
    record = json.loads((out / 'retrain.json').read_text())
    assert record['status'] == 'done' and record['seed'] == 3 and record['test_metric'] == 'acc'
    assert 0.0 <= record['test']['acc'] <= 1.0 and record['test_size'] == 200 and record['train_size'] == 192
    assert record['params'] > 0 and record['architecture'] == json.loads(
        (searched / 'architecture.json').read_text())['architecture']
    assert len(record['history']) == 1 and record['history'][0]['default'] == pytest.approx(record['test']['acc'])
    assert f"test acc: {record['test']['acc']:.4f}" in capsys.readouterr().out


def test_mismatching_architecture_is_refused_with_the_label(searched, tmp_path, capsys):
    doc = json.loads((searched / 'architecture.json').read_text())
    doc['architecture']['normal/node3/op0'] = 'conv_9x9'
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(doc))
    assert cli('retrain', MAIN_JOB, '--arch', bad, '--output', tmp_path / 'r', *sets(TINY_ENAS)) == 2
    err = capsys.readouterr().err
    assert "'normal/node3/op0'" in err and 'conv_9x9' in err and 'Traceback' not in err
    assert not (tmp_path / 'r').exists() or not (tmp_path / 'r' / 'retrain.json').exists() or \
        json.loads((tmp_path / 'r' / 'retrain.json').read_text())['status'] != 'done'

    del doc['architecture']['reduce/node6/input1']
    doc['architecture']['normal/node3/op0'] = 'sep_conv_3x3'
    bad.write_text(json.dumps(doc))
    assert cli('retrain', MAIN_JOB, '--arch', bad, '--output', tmp_path / 'r2', *sets(TINY_ENAS)) == 2
    assert 'reduce/node6/input1' in capsys.readouterr().err

    other = tmp_path / 'other.json'
    other.write_text(json.dumps({'space': 'nas_bench_201', 'architecture': {'cell/0_1': 'conv_3x3'}}))
    assert cli('retrain', MAIN_JOB, '--arch', other, '--output', tmp_path / 'r3', *sets(TINY_ENAS)) == 2
    assert "space 'nas_bench_201'" in capsys.readouterr().err

    broken = tmp_path / 'broken.json'
    broken.write_text('{"architecture": ')
    assert cli('retrain', MAIN_JOB, '--arch', broken, '--output', tmp_path / 'r4', *sets(TINY_ENAS)) == 2
    assert 'not valid JSON' in capsys.readouterr().err


def test_existing_output_is_never_overwritten_silently(searched, capsys):
    before = {p: p.stat().st_mtime_ns for p in searched.rglob('*') if p.is_file()}
    assert cli('search', MAIN_JOB, '--output', searched, *sets(TINY_ENAS)) == 2
    err = capsys.readouterr().err
    assert 'already holds search results' in err and '--overwrite' in err and '--resume' in err
    assert {p: p.stat().st_mtime_ns for p in searched.rglob('*') if p.is_file()} == before


def test_resume_continues_from_the_checkpoint(searched, tmp_path):
    import shutil
    out = tmp_path / 'resumed'
    shutil.copytree(searched, out)
    assert cli('search', MAIN_JOB, '--output', out, '--resume', *sets(TINY_ENAS + ['search.epochs=2'])) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['resumed'] and summary['global_step'] == 6       # 3 restored + 3 new steps
    history = json.loads((out / 'history.json').read_text())
    assert [h['epoch'] for h in history] == [0, 1]                  # the first epoch came from the checkpoint


def test_user_errors_exit_nonzero_without_traceback(tmp_path, capsys):
    out = tmp_path / 'x'
    assert cli('search', MAIN_JOB, '--output', out, *sets(TINY_ENAS + [f'data.root={tmp_path / "nowhere"}'])) == 2
    err = capsys.readouterr().err
    assert 'Fashion-MNIST not found' in err and 'Traceback' not in err
    assert cli('search', MAIN_JOB, '--output', out, '--set', 'strategy.name=asgn') == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'asgn'" in err and 'Traceback' not in err
    assert cli('search', MAIN_JOB, '--output', tmp_path / 'y', '--resume') == 2
    assert 'no checkpoint to resume from' in capsys.readouterr().err
    malformed = tmp_path / 'bad.yaml'
    malformed.write_text('name: x\nspace: [unclosed\n')
    assert cli('check', malformed) == 2
    err = capsys.readouterr().err
    assert 'malformed YAML' in err and ('bad.yaml:3' in err or 'bad.yaml:2' in err)
    assert cli('--debug', 'search', MAIN_JOB, '--set', 'strategy.name=asgn') == 2
    assert 'Traceback' in capsys.readouterr().err


def test_check_prints_the_complete_config(capsys):
    assert cli('check', MAIN_JOB) == 0
    out = capsys.readouterr().out
    assert 'valid' in out and 'trial_gpu_number: auto' in out and 'lr: 0.025' in out


def test_run_searches_retrains_and_prints_the_accuracy(tmp_path, capsys):
    """`run` with AdvantageNAS on the NAS-Bench-201 space (also covers the policy-gradient exports)."""
    config = CONFIGS / 'advantagenas_nb201_fashion_mnist.yaml'
    out = tmp_path / 'run'
    overrides = TINY_DATA + ['space.args.channels=2', 'search.epochs=1', 'strategy.args.warmup_epochs=0',
                             'retrain.space_args.channels=2', 'retrain.space_args.num_cells=1', 'retrain.epochs=1',
                             'retrain.limit=192', 'retrain.test_limit=200']
    assert cli('run', config, '--output', out, *sets(overrides)) == 0
    printed = capsys.readouterr().out
    assert 'TEST ACCURACY' in printed
    doc = json.loads((out / 'architecture.json').read_text())
    assert set(doc['exports']) == {'argmax', 'process_best'}
    record = json.loads((out / 'retrain_seed0' / 'retrain.json').read_text())
    assert f"TEST ACCURACY {record['test']['acc'] * 100:.2f}%" in printed


def test_multi_complexity_writes_architectures_smallest_first(tmp_path):
    pytest.importorskip('search_spaces.enas_cell')
    config = CONFIGS / 'multi_complexity_enas_fashion_mnist.yaml'
    out = tmp_path / 'mc'
    overrides = TINY_DATA + ['space.args.channels=2', 'strategy.args.weight_epochs=1', 'search.epochs=2',
                             'search.evaluate_batches=2', 'strategy.args.epsilons=[0.0, 1.0]']
    assert cli('search', config, '--output', out, *sets(overrides)) == 0
    doc = json.loads((out / 'architectures.json').read_text())
    rows = doc['architectures']
    assert [r['epsilon'] for r in rows] and len(rows) == 2
    assert [r['params'] for r in rows] == sorted(r['params'] for r in rows)
    assert all(r['val_loss'] is not None and r['val_loss'] > 0 for r in rows)
    assert_png(out / 'complexity.png')
    # one of them retrains with --index; without it the choice is asked for
    assert cli('retrain', config, '--arch', out / 'architectures.json', '--output', tmp_path / 'r',
               *sets(overrides)) == 2


def test_inpainting_run_reports_psnr(tmp_path, capsys):
    pytest.importorskip('search_spaces.cae')
    config = CONFIGS / 'asng_cae_int_inpainting.yaml'
    out = tmp_path / 'cae'
    overrides = ['data.limit=128', 'data.batch_size=16', 'search.epochs=1', 'search.progress_bar=false',
                 'space.args.num_layers=6', 'retrain.epochs=1', 'retrain.limit=64', 'retrain.test_limit=32',
                 'retrain.progress_bar=false']
    assert cli('run', config, '--output', out, *sets(overrides)) == 0
    printed = capsys.readouterr().out
    assert 'TEST PSNR' in printed
    record = json.loads((out / 'retrain_seed0' / 'retrain.json').read_text())
    assert record['test_metric'] == 'psnr' and record['test']['psnr'] > 0 and 0 <= record['test']['ssim'] <= 1
    # beside the metrics, the first 6 test images: masked input, output, original (layout: test_inpainting.py)
    for picture in (out / 'inpainting.png', out / 'retrain_seed0' / 'inpainting.png'):
        image = matplotlib.image.imread(str(picture))
        assert image.shape[0] > 1.6 * image.shape[1] and float(image[..., :3].std()) > 0.1, (picture, image.shape)


def test_result_files_are_written_atomically(tmp_path):
    from nni_asng.app.runners.outputs import atomic_write, write_json
    target = write_json(tmp_path / 'r.json', {'a': 1})

    def crash(tmp):
        tmp.write_text('{"a": ')          # half written ...
        raise RuntimeError('killed')      # ... then the process dies

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert json.loads(target.read_text()) == {'a': 1}
    assert [p.name for p in tmp_path.iterdir()] == ['r.json']

"""How nni-asng installs into a user's environment (issue: "a library that drops into the NNI environment").

* The ask/tell core (``nni_asng.distributions``, ``nni_asng.optimizers``) imports and runs with numpy alone:
  a subprocess blocks ``nni``, ``torch`` and ``pytorch_lightning`` and runs ASNG, AdvantageNAS's and REINFORCE's
  optimisers (their Adam is numpy's too).
* The built wheel declares ranges, not pins: pip's resolver, asked to install it into an environment that
  already holds another supported torch (a metadata-only stand-in for torch 2.11.0, the GPU image's), keeps
  that torch; with an unsupported one (2.16.0) it would replace it (the control that shows the check can fail).
  The environment is a venv without a pip of its own; this environment's pip works on it (``pip --python``): no
  ensurepip, and this pip (26) resolves the wheel's ~50 dependencies in about a third of the CPU time of the
  pip 23.2 that ensurepip of Python 3.11 bundles (measured: 8 s against 21 s per dry run).
* The application's dependencies (pydantic, matplotlib, pyyaml, mlxtend) come only with the ``cli`` extra.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_BLOCKER = '''
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('nni', 'torch', 'pytorch_lightning', 'lightning'):
            raise ImportError(f'blocked import of {name}: the core must run with numpy alone')
        return None
sys.meta_path.insert(0, Block())
'''


def test_core_runs_with_numpy_alone():
    code = _BLOCKER + '''
import numpy as np
import nni_asng
from nni_asng.distributions import CategoricalDistribution, GaussianDistribution, ProductDistribution
from nni_asng.optimizers import ASNG, PDAS, SNG
opt = ASNG(CategoricalDistribution([3] * 4), seed=0)
for _ in range(300):
    x = opt.ask()
    opt.tell(x, (x != 0).sum(axis=1).astype(float))
assert list(opt.most_likely()) == [0, 0, 0, 0], opt.most_likely()
from nni_asng.optimizers.policy_gradient import AdvantageOptimizer, ReinforceOptimizer, SoftmaxCategoricalPolicy
advantage = AdvantageOptimizer(SoftmaxCategoricalPolicy([3, 4]), lr=0.1, total_steps=20, seed=0)
reinforce = ReinforceOptimizer(SoftmaxCategoricalPolicy([3, 4]), lr=0.1, total_steps=20, seed=0)
for _ in range(20):
    row = advantage.ask()[0]
    assert advantage.tell(row, float((row != 0).sum()), -(row != 0).astype(float))
    row = reinforce.ask()[0]
    assert reinforce.tell(row, float((row != 0).sum()))
for opt in (advantage, reinforce):
    assert opt.updates == 20 and isinstance(opt.policy.logits, np.ndarray)
    assert np.all(np.isfinite(opt.policy.logits)) and not np.allclose(opt.policy.logits, 1.0)
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('nni', 'torch', 'pytorch_lightning'))
assert not loaded, loaded
print('ok')
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-3000:]


def test_strategies_load_lazily_on_first_use():
    code = ('import sys, nni_asng\n'
            'assert "nni" not in sys.modules\n'
            'strategy = nni_asng.ASNG()\n'
            'assert "nni" in sys.modules and type(strategy).__module__ == "nni_asng.oneshot.natural_gradient"\n'
            'print("ok")\n')
    result = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-3000:]


def _fake_distribution(folder: Path, name: str, version: str) -> Path:
    """A metadata-only wheel standing in for an installed package (no files of the real one)."""
    wheel = folder / f'{name}-{version}-py3-none-any.whl'
    info = f'{name}-{version}.dist-info'
    files = {f'{name}/__init__.py': f'__version__ = {version!r}\n',
             f'{info}/METADATA': f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n',
             f'{info}/WHEEL': 'Wheel-Version: 1.0\nGenerator: nni-asng-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n'}
    record = ''.join(f'{path},,\n' for path in files) + f'{info}/RECORD,,\n'
    with zipfile.ZipFile(wheel, 'w') as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f'{info}/RECORD', record)
    return wheel


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f'{args}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}'
    return result


@pytest.fixture(scope='module')
def built_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('wheel')
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', out, ROOT],
         timeout=300)
    (wheel,) = out.glob('nni_asng-*.whl')
    return wheel


def test_wheel_metadata_has_ranges_and_a_cli_extra(built_wheel):
    with zipfile.ZipFile(built_wheel) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    requires = [line.split(':', 1)[1].strip() for line in meta.splitlines() if line.startswith('Requires-Dist:')]
    core = [r for r in requires if 'extra ==' not in r]
    names = {r.split(';')[0].replace(' ', '').split('<')[0].split('>')[0].split('=')[0].split('[')[0].lower()
             for r in core}
    assert 'torch' in names and 'nni' in names
    assert not any(r.startswith('torch==') or r.startswith('torch ==') for r in core), core
    assert not names & {'pydantic', 'matplotlib', 'mlxtend', 'tqdm', 'torchvision', 'pyyaml'}, core
    cli = [r for r in requires if 'extra == "cli"' in r]
    assert {r.split('>')[0].split('<')[0].split('=')[0].strip().lower() for r in cli} >= {'pydantic', 'matplotlib'}


def _pip(env_python: Path) -> list:
    """This environment's pip, working on the environment of ``env_python``."""
    return [sys.executable, '-m', 'pip', '--python', env_python]


def _would_install(env_python: Path, wheel: Path, tmp: Path) -> dict[str, str]:
    report = tmp / 'report.json'
    _run([*_pip(env_python), 'install', '--dry-run', '--quiet', '--report', report, wheel], timeout=600)
    return {item['metadata']['name'].lower(): item['metadata']['version']
            for item in json.loads(report.read_text())['install']}


@pytest.mark.slow
def test_installing_the_wheel_keeps_a_supported_torch(built_wheel, tmp_path):
    """pip's resolver (dry run) on a venv whose torch is 2.11.0 keeps it; with 2.16.0 it would not."""
    env = tmp_path / 'env'
    _run([sys.executable, '-m', 'venv', '--without-pip', env], timeout=300)
    python = env / 'bin' / 'python'
    # The stand-ins install past any machine-wide pip constraint (this workplace caps torch at 2.14.1).
    (tmp_path / 'no-constraints.txt').write_text('')
    unconstrained = {**os.environ, 'PIP_CONSTRAINT': str(tmp_path / 'no-constraints.txt')}
    supported = _fake_distribution(tmp_path, 'torch', '2.11.0')
    _run([*_pip(python), 'install', '--quiet', '--no-deps', '--no-index', supported], timeout=300,
         env=unconstrained)
    plan = _would_install(python, built_wheel, tmp_path)
    assert 'nni' in plan and 'pytorch-lightning' in plan, plan      # a real resolution happened
    assert 'torch' not in plan, f'pip would replace the installed torch 2.11.0 by {plan.get("torch")}'

    unsupported = _fake_distribution(tmp_path, 'torch', '2.16.0')
    _run([*_pip(python), 'install', '--quiet', '--no-deps', '--no-index', '--force-reinstall', unsupported],
         timeout=300, env=unconstrained)
    plan = _would_install(python, built_wheel, tmp_path)
    assert 'torch' in plan, 'the control failed: an unsupported torch should be replaced'


#: The main job shrunk to seconds (a few hundred images, one epoch, two channels).
TINY_MAIN_JOB = ['data.limit=192', 'data.batch_size=32', 'space.args.channels=2', 'search.epochs=1',
                 'search.progress_bar=false', 'search.threads=1', 'retrain.space_args.channels=2',
                 'retrain.epochs=1', 'retrain.limit=192', 'retrain.test_limit=200', 'retrain.batch_size=64',
                 'retrain.progress_bar=false', 'retrain.threads=1']


@pytest.mark.slow
def test_the_wheel_alone_runs_a_shipped_config_from_an_empty_folder(built_wheel, tmp_path):
    """README's install-to-first-search path without a clone: the wheel carries the configs, and
    ``nni-asng run asng_enas_fashion_mnist`` in an empty folder outside the source tree searches, retrains and
    prints the test accuracy. The venv is fresh and holds nni-asng from the wheel only; its dependencies (NNI,
    torch, Lightning, the cli extra) are this environment's, appended to its path (the resolver test above
    covers installing them)."""
    with zipfile.ZipFile(built_wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith('nni_asng/app/configs/') and n.endswith('.yaml')}
    assert 'nni_asng/app/configs/asng_enas_fashion_mnist.yaml' in shipped and len(shipped) >= 7, shipped
    venv = tmp_path / 'venv'
    _run([sys.executable, '-m', 'venv', '--without-pip', venv], timeout=300)
    python = venv / 'bin' / 'python'
    site = Path(_run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).stdout.strip())
    # Plain path lines: the .pth files of those folders (nni-asng's editable install among them) are not read.
    (site / 'dependencies-of-the-test.pth').write_text(
        ''.join(p + '\n' for p in sys.path if p.endswith('site-packages') and Path(p).is_dir()))
    _run([*_pip(python), 'install', '--quiet', '--no-deps', '--no-index', built_wheel], timeout=300)
    work = tmp_path / 'empty'
    work.mkdir()
    env = {**os.environ, 'HOME': str(tmp_path / 'home'), 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    env.pop('PYTHONPATH', None)
    where = _run([python, '-c', 'import nni_asng, search_spaces; print(nni_asng.__file__, search_spaces.__file__)'],
                 cwd=work, env=env)
    assert all(path.startswith(str(venv)) for path in where.stdout.split()), where.stdout
    listing = _run([venv / 'bin' / 'nni-asng', 'configs'], cwd=work, env=env).stdout
    assert 'asng_enas_fashion_mnist' in listing and 'asng_cae_cat_inpainting' in listing
    sets = [arg for item in TINY_MAIN_JOB for arg in ('--set', item)]
    result = _run([venv / 'bin' / 'nni-asng', 'run', 'asng_enas_fashion_mnist', *sets], cwd=work, env=env,
                  timeout=900)
    assert 'TEST ACCURACY' in result.stdout, result.stdout[-2000:]
    assert (work / 'runs' / 'asng_enas_fashion_mnist' / 'architecture.json').is_file()


def _without(blocked: tuple[str, ...], code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` (or ``python -m nni_asng ARGS`` when code is empty) with ``blocked`` packages missing."""
    blocker = ('import sys, importlib.abc\n'
               'class Missing(importlib.abc.MetaPathFinder):\n'
               '    def find_spec(self, name, path=None, target=None):\n'
               f'        if name.split(".")[0] in {blocked!r}:\n'
               '            raise ModuleNotFoundError(f"No module named {name!r}", name=name)\n'
               'sys.meta_path.insert(0, Missing())\n')
    runner = code or f'import sys; sys.argv = ["nni-asng", *{list(args)!r}]; from nni_asng.app.cli import main; sys.exit(main())'
    return subprocess.run([sys.executable, '-c', blocker + runner], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)


def test_a_strategy_without_nni_says_what_to_install():
    result = _without(('nni',), 'import nni_asng\nnni_asng.ASNG()\n')
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('nni_asng.dependencies.MissingDependencyError: nni_asng.ASNG needs NNI 3.0'), last
    assert 'pip install "nni==3.0"' in last


def test_the_command_line_without_nni_or_torch_says_what_to_install():
    result = _without(('torch',), '', 'list')
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    assert 'nni-asng list needs PyTorch' in result.stderr and 'pip install "torch>=' in result.stderr
    result = _without(('nni',), '', 'check', 'asng_enas_fashion_mnist')
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
    assert 'nni-asng check needs NNI 3.0' in result.stderr and 'pip install "nni==3.0"' in result.stderr
    # What needs neither still works: the names of spaces and strategies, the shipped configs.
    result = _without(('nni',), '', 'list')
    assert result.returncode == 0 and 'asng' in result.stdout, result.stderr[-2000:]
    result = _without(('nni', 'torch', 'pytorch_lightning'), '', 'configs')
    assert result.returncode == 0 and 'asng_enas_fashion_mnist' in result.stdout, result.stderr[-2000:]


def test_declared_requirements_match_pyproject():
    """The pip commands of the missing-dependency errors name the ranges pyproject.toml declares."""
    from nni_asng.dependencies import REQUIREMENTS
    pyproject = (ROOT / 'pyproject.toml').read_text()
    for module, (_, requirement) in REQUIREMENTS.items():
        if not requirement.startswith('nni-asng'):
            assert f'"{requirement}"' in pyproject, (module, requirement)

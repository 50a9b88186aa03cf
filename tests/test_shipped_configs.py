"""Configs that travel with the package, and `nni-asng check` refusing what a run would refuse.

* The shipped configs (package data, ``nni_asng/app/configs``) are named by name from any folder, listed by
  ``nni-asng configs`` with their descriptions and copied by ``nni-asng configs --copy`` to edit; a path that
  does not exist names the shipped configs (and the right name when the user typed the old repository path).
* ``nni-asng check`` builds the data, the space and the strategy as a search does, without training: a strategy
  argument the strategy's own validation refuses, a data folder without the files and a space module that
  does not import all fail ``check`` (and ``launch``, before NNI starts) with a message naming the key.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nni_asng.app.cli import main
from nni_asng.app.config.builtin import BUILTIN_FOLDER, builtin_names, copy_builtin, resolve_config
from nni_asng.app.config.errors import ConfigError
from nni_asng.app.config.loading import load_config
from nni_asng.data.fashion_mnist import DEFAULT_ROOT

pytestmark = pytest.mark.app

needs_fashion_mnist = pytest.mark.skipif(not (DEFAULT_ROOT / 'train-images-idx3-ubyte.gz').is_file(),
                                         reason='needs Fashion-MNIST (apt-get install dataset-fashion-mnist)')

TINY = ['--set', 'data.limit=64', '--set', 'space.args.channels=2']


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working folder outside the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_shipped_configs_are_package_data_with_descriptions():
    names = builtin_names()
    assert 'asng_enas_fashion_mnist' in names and len(names) >= 7
    assert all((BUILTIN_FOLDER / f'{n}.yaml').is_file() for n in names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name and len(cfg.description) > 20, name


def test_a_name_loads_from_any_folder(elsewhere):
    cfg = load_config('asng_enas_fashion_mnist', ['search.epochs=1'])
    assert cfg.search.epochs == 1 and cfg.source == str(BUILTIN_FOLDER / 'asng_enas_fashion_mnist.yaml')
    assert resolve_config('pdas_enas_fashion_mnist.yaml') == BUILTIN_FOLDER / 'pdas_enas_fashion_mnist.yaml'


def test_a_file_of_the_user_wins_over_a_shipped_name(elsewhere):
    mine = elsewhere / 'asng_enas_fashion_mnist'          # a file that happens to carry a shipped name
    mine.write_text((BUILTIN_FOLDER / 'asng_enas_fashion_mnist.yaml').read_text())
    assert resolve_config('asng_enas_fashion_mnist').resolve() == mine


def test_a_missing_config_lists_the_shipped_ones(elsewhere):
    with pytest.raises(ConfigError) as err:
        load_config('nope.yaml')
    assert 'config file nope.yaml does not exist' in str(err.value) and 'asng_enas_fashion_mnist' in str(err.value)
    with pytest.raises(ConfigError) as err:                # the path of a clone, run from the wheel
        load_config('experiments/configs/asng_enas_fashion_mnist.yaml')
    assert 'the shipped config of that name is `asng_enas_fashion_mnist`' in str(err.value)


def test_configs_command_lists_and_copies(elsewhere, capsys):
    assert main(['configs']) == 0
    listing = capsys.readouterr().out
    for name in builtin_names():
        line = next(l for l in listing.splitlines() if l.strip().startswith(name + ' '))
        assert len(line.split(None, 1)[1]) > 20, line            # with its description
    assert main(['configs', '--copy', 'pdas_enas_fashion_mnist']) == 0
    copy = elsewhere / 'pdas_enas_fashion_mnist.yaml'
    assert copy.read_text() == (BUILTIN_FOLDER / 'pdas_enas_fashion_mnist.yaml').read_text()
    assert f'wrote {copy.name}' in capsys.readouterr().out or copy.is_file()
    assert main(['configs', '--copy', 'pdas_enas_fashion_mnist']) == 2          # never overwritten silently
    assert 'already exists' in capsys.readouterr().err
    target = copy_builtin('asng_enas_fashion_mnist', elsewhere / 'mine' / 'job.yaml')
    assert load_config(target).name == 'asng_enas_fashion_mnist'
    assert main(['configs', '--copy', 'no_such_config']) == 2
    assert "no shipped config is called 'no_such_config'" in capsys.readouterr().err


@pytest.mark.parametrize('override, expected', [
    ('strategy.args.delta_init=-1', 'delta_init'),
    ('strategy.args.lam=1', 'lam'),
])
def test_load_refuses_what_the_strategy_refuses(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config('asng_enas_fashion_mnist', [override])
    message = str(err.value)
    assert 'strategy.args' in message and "strategy 'asng' refuses these arguments" in message, message
    assert expected in message.split('refuses these arguments', 1)[1], message


def test_a_sweep_strategy_is_checked_too():
    with pytest.raises(ConfigError) as err:
        load_config('asng_enas_fashion_mnist', ['launch.sweep.strategies=[{name: pdas, args: {alpha: -2}}]'])
    assert 'launch.sweep.strategies[0].args' in str(err.value) and 'alpha' in str(err.value)


@needs_fashion_mnist
def test_check_builds_data_space_and_strategy(capsys):
    assert main(['check', 'asng_enas_fashion_mnist', *TINY]) == 0
    out = capsys.readouterr().out
    assert 'valid; data, space and strategy built' in out and '32 + 32 examples' in out, out[:500]


def test_check_refuses_a_data_folder_without_the_files(tmp_path, capsys):
    assert main(['check', 'asng_enas_fashion_mnist', '--set', f'data.root={tmp_path / "nope"}']) == 2
    err = capsys.readouterr().err
    assert 'Fashion-MNIST not found' in err and 'nope does not exist' in err and 'data.root' in err, err


def test_check_refuses_a_space_that_does_not_import(capsys):
    assert main(['check', 'asng_enas_fashion_mnist', '--set', 'space.name=no_such_pkg.spaces:MySpace']) == 2
    err = capsys.readouterr().err
    assert 'space.name' in err and 'no_such_pkg' in err, err


@needs_fashion_mnist
def test_check_refuses_a_space_that_rejects_its_arguments(capsys):
    assert main(['check', 'asng_enas_fashion_mnist', *TINY, '--set', 'space.args.channels=-3']) != 0
    err = capsys.readouterr().err
    assert 'channels' in err or 'space' in err, err


def test_launch_refuses_a_bad_strategy_argument_before_nni_starts(tmp_path, capsys):
    out = tmp_path / 'launch'
    code = main(['launch', 'asng_enas_fashion_mnist', '--output', str(out), '--no-wait',
                 '--set', 'strategy.args.delta_init=-1'])
    assert code == 2 and 'delta_init' in capsys.readouterr().err
    assert not out.exists(), 'nothing was written and no NNI experiment started'
    assert not os.environ.get('NNI_PLATFORM')

"""Experiment configs: validation on load with errors that name file, line and key path."""
from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from nni_asng.app import ConfigError, ExperimentConfig, apply_overrides, dump_config, load_config, parse_config
from nni_asng.app.config import registry

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / 'nni_asng' / 'app' / 'configs').glob('*.yaml'))           # package data
CONFIGS = SHIPPED + sorted((ROOT / 'experiments' / 'configs').glob('*.yaml'))       # + the repository's tables

MINIMAL = """\
name: t
space:
  name: nas_bench_201
  args: {channels: 4, num_cells: 1}
strategy:
  name: asng
"""


def error_of(text: str, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), source='cfg.yaml', overrides=overrides)
    return str(info.value)


def test_minimal_config_gets_the_papers_defaults():
    cfg = parse_config(MINIMAL)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.search.optimizer.name == 'sgd' and cfg.search.optimizer.lr == 0.025
    assert cfg.search.optimizer.momentum == 0.9 and cfg.search.optimizer.weight_decay == 3e-4
    assert cfg.search.optimizer.schedule == 'cosine' and cfg.search.gradient_clip == 5.0
    assert cfg.launch.trial_gpu_number == 'auto' and cfg.launch.training_service == {'platform': 'local'}
    assert cfg.output_dir == Path('runs/t')


@pytest.mark.parametrize('path', CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    text = path.read_text()
    try:
        cfg = load_config(path)
    except ConfigError as err:
        if 'not available yet' in str(err):   # a search space another engineer is still writing
            pytest.skip(str(err))
        raise
    assert cfg.name == path.stem, 'config name and file name should agree'
    again = parse_config(dump_config(cfg), source='dumped')   # the dump written into results loads again
    assert again.model_dump() == cfg.model_dump()
    assert 'space:' in text and 'strategy:' in text


def test_shipped_configs_cover_the_issue():
    names = {p.stem for p in SHIPPED}
    assert {'asng_enas_fashion_mnist', 'pdas_enas_fashion_mnist', 'advantagenas_nb201_fashion_mnist',
            'multi_complexity_enas_fashion_mnist', 'asng_cae_cat_inpainting', 'asng_cae_int_inpainting',
            'asng_enas_cifar10'} <= names


def test_wrong_type_names_key_path_and_line():
    message = error_of(MINIMAL + 'search:\n  epochs: three\n')
    assert "cfg.yaml:8: search.epochs: expected an integer, got 'three'" in message


def test_unknown_keys_suggest_the_right_one():
    message = error_of(MINIMAL + 'search:\n  gradient_clp: 5\n')
    assert "cfg.yaml:8: search.gradient_clp: unknown key; did you mean 'gradient_clip'?" in message
    message = error_of(MINIMAL.replace('name: asng', 'name: asng\n  args: {lamda: 2}'))
    assert "strategy.args.lamda: unknown key; did you mean 'lam'?" in message
    message = error_of(MINIMAL + 'serach: {}\n')
    assert "serach: unknown key; did you mean 'search'?" in message


def test_space_and_strategy_arguments_are_type_checked():
    message = error_of(MINIMAL.replace('num_cells: 1', 'num_cells: one, colour: red'))
    assert "cfg.yaml:4: space.args.num_cells: expected an integer, got 'one'" in message
    assert 'space.args.colour: unknown key' in message and 'channels' in message   # lists the valid keys
    message = error_of(MINIMAL.replace('name: asng', 'name: asng\n  args: {lam: 2.5}'))
    assert 'strategy.args.lam: expected an integer, got 2.5' in message


def test_tuple_arguments_accept_yaml_lists():
    cfg = parse_config(MINIMAL.replace('name: asng', 'name: advantage_nas\n  args: {betas: [0.5, 0.999]}'))
    assert cfg.strategy.args['betas'] == [0.5, 0.999]


def test_several_errors_are_reported_together_in_file_order():
    message = error_of(MINIMAL + 'data:\n  limit: 1.5\nsearch:\n  epochs: 0\nlaunch:\n  trial_gpu_number: two\n')
    lines = message.splitlines()[1:]
    assert len(lines) == 3
    assert 'data.limit: a fraction must lie in (0, 1]' in lines[0]
    assert 'search.epochs: must be >= 1, got 0' in lines[1]
    assert "launch.trial_gpu_number: expected 'auto' or an integer, got 'two'" in lines[2]


def test_malformed_yaml_reports_file_and_line():
    message = error_of(MINIMAL + 'search:\n  epochs: [1, 2\n')
    assert message.startswith('cfg.yaml:') and 'malformed YAML' in message
    line = int(message.split(':')[1])
    assert line in (9, 10)
    message = error_of('name: t\n  space: x\n')
    assert message.startswith('cfg.yaml:2:')


def test_duplicate_keys_are_errors():
    message = error_of(MINIMAL + 'search:\n  epochs: 2\n  epochs: 3\n')
    assert 'cfg.yaml:9: search.epochs: duplicate key (first set on line 8)' in message


def test_unknown_names_list_the_valid_ones():
    message = error_of(MINIMAL.replace('name: asng', 'name: asgn'))
    assert "unknown strategy 'asgn'; did you mean 'asng'?" in message
    for name in registry.STRATEGIES:
        assert name in message
    message = error_of(MINIMAL.replace('nas_bench_201', 'resnet'))
    assert "unknown space 'resnet'" in message and 'enas_cell' in message and 'nni_hub_darts' in message
    message = error_of(MINIMAL + 'data:\n  dataset: imagenet\n')
    assert "data.dataset: unknown dataset 'imagenet'" in message and 'fashion_mnist' in message


def test_missing_space_module_is_named(monkeypatch):
    fake = dataclasses.replace(registry.SPACES['enas_cell'], name='future_space', module='search_spaces.future_space')
    monkeypatch.setitem(registry.SPACES, 'future_space', fake)
    message = error_of(MINIMAL.replace('nas_bench_201', 'future_space'))
    assert 'search_spaces.future_space' in message and 'search_spaces/future_space.py' in message


def test_overrides_apply_and_are_marked_in_errors():
    cfg = parse_config(MINIMAL, overrides=['search.epochs=2', 'data.limit=0.5', 'retrain.seeds=[3, 4]'])
    assert cfg.search.epochs == 2 and cfg.data.limit == 0.5 and cfg.retrain.seeds == [3, 4]
    message = error_of(MINIMAL, overrides=['search.epochs=x'])
    assert "search.epochs: expected an integer, got 'x' (from --set)" in message
    with pytest.raises(ConfigError, match='expected key.path=value'):
        apply_overrides({}, ['search.epochs'])


def test_strategy_arguments_set_elsewhere_are_refused():
    message = error_of(MINIMAL.replace('name: asng', 'name: asng\n  args: {seed: 3, gradient_clip_val: 1.0}'))
    assert 'strategy.args.seed: set by seed (top level)' in message
    assert 'strategy.args.gradient_clip_val: set by search.gradient_clip' in message


def test_cross_section_checks():
    mc = MINIMAL.replace('name: asng', 'name: multi_complexity\n  args: {weight_epochs: 2, theta_epochs: 1}')
    message = error_of(mc + 'search:\n  epochs: 5\n')
    assert 'search.epochs: the multi_complexity strategy needs exactly 3 epochs' in message
    assert parse_config(mc + 'search:\n  epochs: 3\n').search.epochs == 3
    message = error_of(MINIMAL + 'data:\n  mask: center\n')
    assert 'data.mask: only inpainting spaces use a mask' in message


def test_inpainting_space_gets_a_default_mask():
    pytest.importorskip('search_spaces.cae')
    cfg = parse_config(MINIMAL.replace('name: nas_bench_201\n  args: {channels: 4, num_cells: 1}',
                                       'name: cae\n  args: {variant: int, width: 0.125}'))
    assert cfg.task == 'inpainting'


def test_missing_file_and_empty_config(tmp_path):
    with pytest.raises(ConfigError, match='does not exist'):
        load_config(tmp_path / 'nope.yaml')
    empty = tmp_path / 'empty.yaml'
    empty.write_text('# nothing\n')
    with pytest.raises(ConfigError, match='empty'):
        load_config(empty)
    with pytest.raises(ConfigError, match='required key is missing'):
        parse_config('name: t\n')

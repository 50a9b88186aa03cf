"""The user's own search space (``space.name: module:Class``) and data (``data.factory: module:function``),
defined outside nni_asng in a temporary module: clear errors, and a search and a retraining with them.
(The same space and data run through ``nni-asng launch`` in tests/test_pipeline.py.)"""
from __future__ import annotations

import json

import pytest
import torch

from nni_asng.app import ConfigError, load_config
from pipeline_harness import MODULE, write_config


@pytest.mark.parametrize('change, message', [
    ({'space__name': 'no_such_module_xyz:Space'}, "cannot import module 'no_such_module_xyz'"),
    ({'space__name': f'{MODULE}:Nope'}, f"module {MODULE} has no attribute 'Nope' (its names:"),
    ({'space__name': f'{MODULE}:NOT_A_SPACE'}, 'is an int, not an NNI ModelSpace'),
    ({'space__name': f'{MODULE}:make_data'}, 'is a function, not an NNI ModelSpace'),
    ({'space__name': f'{MODULE}.py:TinySpace'}, 'looks like a file name; write the module name without ".py"'),
    ({'space__name': 'TinySpace'}, "unknown space 'TinySpace'"),
    ({'space__args': {'widht': 3}}, "space.args.widht: unknown key; did you mean 'width'?"),
    ({'data__factory': 'no_such_module_xyz:make'}, "data.factory: data.factory 'no_such_module_xyz:make': cannot "
                                                   "import module"),
    ({'data__factory': f'{MODULE}:nope'}, f"module {MODULE} has no attribute 'nope'"),
    ({'data__factory': f'{MODULE}:NOT_A_SPACE'}, 'is an int, not a function'),
    ({'data__limit': 100}, 'data.limit: does not apply to data from data.factory'),
])
def test_config_errors_name_the_problem(user_module, tmp_path, change, message):
    path = write_config(tmp_path / 'c.yaml', **change)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize('factory, message', [
    ('returns_int', 'returned an int; expected (train, val) or (train, val, test)'),
    ('returns_one', 'returned a tuple of length 1; expected'),
    ('returns_strings', 'returned a str as its train set; expected a map-style dataset'),
    ('returns_flat', 'a training sample is a tuple of 2: (Tensor, int) (image shape (144,)); expected (image '
                     'tensor of shape C x H x W, integer label)'),
])
def test_factory_returning_the_wrong_thing(user_module, tmp_path, factory, message):
    from nni_asng.app.runners.userdata import call_factory
    cfg = load_config(write_config(tmp_path / 'c.yaml', data__factory=f'{MODULE}:{factory}', data__factory_args={}))
    with pytest.raises(ConfigError) as info:
        call_factory(cfg.data.factory, cfg.data.factory_args, 0)
    assert message in str(info.value) and factory in str(info.value), str(info.value)


def test_factory_arguments_and_shapes(user_module, tmp_path):
    from nni_asng.app.runners.userdata import call_factory
    cfg = load_config(write_config(tmp_path / 'c.yaml', data__factory_args={'n': 64, 'bogus': 1}))
    with pytest.raises(ConfigError, match=r"rejects data.factory_args \{'n': 64, 'bogus': 1\}"):
        call_factory(cfg.data.factory, cfg.data.factory_args, 0)
    cfg = load_config(write_config(tmp_path / 'd.yaml', data__factory=f'{MODULE}:as_dict', data__factory_args={}))
    data = call_factory(cfg.data.factory, cfg.data.factory_args, 0)
    assert data.input_shape == (1, 12, 12) and data.num_classes == 4
    assert data.batch_sizes == {'train': 16, 'val': None} and len(data.datasets['train']) == 64


def test_search_and_retrain_with_the_users_space_and_data(user_module, tmp_path):
    from nni.nas.space import model_context

    from nni_asng.app import run_retrain, run_search
    from nni_asng.model_size import count_parameters
    cfg = load_config(write_config(tmp_path / 'c.yaml', search__epochs=1))
    result = run_search(cfg, tmp_path / 'search', log=lambda m: None)
    doc = json.loads(result.architecture_file.read_text())
    assert doc['space'] == f'{MODULE}:TinySpace' and set(doc['architecture']) == {'op', 'act'}

    retrained = run_retrain(cfg, result.architecture_file, output=tmp_path / 'retrain', log=lambda m: None)
    assert 0.0 <= retrained.metric <= 1.0 and retrained.metrics['acc'] == retrained.metric
    import importlib
    space_cls = importlib.import_module(MODULE).TinySpace
    with model_context(doc['architecture']):              # the fixed network, built the NNI way
        expected = count_parameters(space_cls(in_channels=1, num_classes=4, width=4))
    assert retrained.params == expected
    record = json.loads((tmp_path / 'retrain' / 'retrain.json').read_text())
    assert record['status'] == 'done' and record['test_size'] == 128 and record['train_size'] == 256
    assert torch.is_tensor(torch.tensor(record['test']['acc']))

"""The nni-asng application: YAML experiment configs, the ``nni-asng`` command line, search and retraining
runs, NNI experiments (web UI) and tabular benchmarks. Needs the ``cli`` extra (``pip install nni-asng[cli]``).

Public API (what the experiment scripts and users call)::

    from nni_asng.app import load_config, run_search, run_retrain
    cfg = load_config('experiments/configs/asng_enas_fashion_mnist.yaml', ['search.epochs=1'])
    result = run_search(cfg, 'runs/demo')                                   # writes architecture.json, plots, ...
    run_retrain(cfg, result.architecture_file, output='runs/demo/retrain')

    build_table(cfg, 'runs/table')                                          # nni-asng tabulate
    fit_fixed_network(cfg, network, train_loader, {'val': val_loader}, device='cpu')   # the one training loop

    parts = build_search(cfg)          # a run's parts, built from its config (nni_asng.app.assembly):
    parts = build_retrain(cfg, arch, seed=0, source='architecture.json')   # data, space, strategy, network, ...
    with quiet_warnings():             # mutes Lightning's and NNI's advice (workers, batches, traced modules)
"""
import importlib

# Where each public name lives. They load on first use (PEP 562), so importing a submodule (e.g. the NNI
# advisor nni_asng.app.advisor, which NNI's dispatcher must import within seconds) does not import torch.
_EXPORTS = {
    'ExperimentConfig': 'config', 'apply_overrides': 'config', 'dump_config': 'config', 'load_config': 'config',
    'parse_config': 'config',
    'ArchitectureFileError': 'errors', 'ConfigError': 'errors', 'LaunchError': 'errors', 'SearchInterrupted': 'errors',
    'UserError': 'errors',
    'DataInfo': 'registry', 'space_entry': 'registry', 'strategy_entry': 'registry',
    'build_retrain': 'assembly', 'build_search': 'assembly', 'fit_fixed_network': 'assembly',
    'quiet_warnings': 'assembly',
    'RetrainResult': 'runs', 'SearchResult': 'runs', 'load_architectures': 'runs', 'run_retrain': 'runs',
    'run_search': 'runs', 'versions': 'runs',
    'TableBuild': 'tabulate', 'build_table': 'tabulate',
}

__all__ = ['ExperimentConfig', 'load_config', 'parse_config', 'apply_overrides', 'dump_config',
           'UserError', 'ConfigError', 'ArchitectureFileError', 'LaunchError', 'SearchInterrupted',
           'DataInfo', 'space_entry', 'strategy_entry',
           'run_search', 'run_retrain', 'fit_fixed_network', 'load_architectures', 'versions', 'SearchResult',
           'RetrainResult', 'build_search', 'build_retrain', 'build_table', 'TableBuild', 'quiet_warnings']


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f'.{_EXPORTS[name]}', __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + __all__)

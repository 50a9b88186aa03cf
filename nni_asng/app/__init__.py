"""The nni-asng application: YAML experiment configs, the ``nni-asng`` command line, search and retraining
runs, NNI experiments (web UI) and tabular benchmarks. Needs the ``cli`` extra (``pip install nni-asng[cli]``).

Public API (what the experiment scripts and users call)::

    from nni_asng.app import load_config, run_search, run_retrain
    cfg = load_config('asng_enas_fashion_mnist', ['search.epochs=1'])
    result = run_search(cfg, 'runs/demo')                                   # writes architecture.json, plots, ...
    run_retrain(cfg, result.architecture_file, output='runs/demo/retrain')

    build_table(cfg, 'runs/table')                                          # nni-asng tabulate
    fit_fixed_network(cfg, network, train_loader, {'val': val_loader}, device='cpu')   # the one training loop

    parts = build_search(cfg)          # a run's parts, built from its config (nni_asng.app.runners.assembly):
    parts = build_retrain(cfg, arch, seed=0, source='architecture.json')   # data, space, strategy, network, ...
    with quiet_warnings():             # mutes Lightning's and NNI's advice (workers, batches, traced modules)

Layers (docs/architecture.md): ``config`` (schema, loading, registry of names, errors) < ``runners`` (building and
running searches, retraining and tables) < ``experiment`` (NNI experiments: launch, pipeline, advisor, trial) <
``cli``; a module imports only its own layer and those below.
"""
import importlib

# Where each public name lives. They load on first use (PEP 562), so importing a submodule (e.g. the NNI
# advisor nni_asng.app.experiment.advisor, which NNI's dispatcher must import within seconds) does not import torch.
_EXPORTS = {
    'ExperimentConfig': 'config.schema', 'apply_overrides': 'config.loading', 'dump_config': 'config.loading',
    'load_config': 'config.loading', 'parse_config': 'config.loading',
    'ArchitectureFileError': 'config.errors', 'ConfigError': 'config.errors', 'LaunchError': 'config.errors',
    'SearchInterrupted': 'config.errors', 'UserError': 'config.errors',
    'DataInfo': 'config.registry', 'space_entry': 'config.registry', 'strategy_entry': 'config.registry',
    'build_retrain': 'runners.assembly', 'build_search': 'runners.assembly', 'fit_fixed_network': 'runners.assembly',
    'quiet_warnings': 'runners.quiet',
    'RetrainResult': 'runners.runs', 'SearchResult': 'runners.runs', 'load_architectures': 'runners.runs',
    'run_retrain': 'runners.runs', 'run_search': 'runners.runs', 'versions': 'runners.runs',
    'TableBuild': 'runners.tabulate', 'build_table': 'runners.tabulate',
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

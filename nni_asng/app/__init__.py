"""The nni-asng application: YAML experiment configs, the ``nni-asng`` command line, search and retraining
runs, NNI experiments (web UI) and tabular benchmarks. Needs the ``cli`` extra (``pip install nni-asng[cli]``).

Public API (what the experiment scripts and users call)::

    from nni_asng.app import load_config, run_search, run_retrain
    cfg = load_config('experiments/configs/asng_enas_fashion_mnist.yaml', ['search.epochs=1'])
    result = run_search(cfg, 'runs/demo')                                   # writes architecture.json, plots, ...
    run_retrain(cfg, result.architecture_file, output='runs/demo/retrain')

    build_table(cfg, 'runs/table')                                          # nni-asng tabulate
    fit_fixed_network(cfg, network, train_loader, {'val': val_loader}, device='cpu')   # the one training loop
"""
from .config import ExperimentConfig, apply_overrides, dump_config, load_config, parse_config
from .errors import ArchitectureFileError, ConfigError, LaunchError, SearchInterrupted, UserError
from .registry import DataInfo, space_entry, strategy_entry
from .runs import RetrainResult, SearchResult, fit_fixed_network, load_architectures, run_retrain, run_search, versions
from .tabulate import TableBuild, build_table

__all__ = ['ExperimentConfig', 'load_config', 'parse_config', 'apply_overrides', 'dump_config',
           'UserError', 'ConfigError', 'ArchitectureFileError', 'LaunchError', 'SearchInterrupted',
           'DataInfo', 'space_entry', 'strategy_entry',
           'run_search', 'run_retrain', 'fit_fixed_network', 'load_architectures', 'versions', 'SearchResult',
           'RetrainResult', 'build_table', 'TableBuild']

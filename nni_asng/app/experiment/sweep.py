"""The searches of ``launch.sweep`` (strategies x seeds) and the parameters of the pipeline's trials.

What the pipeline plans (:mod:`.pipeline`), the advisor hands out (:mod:`.advisor`) and a trial reads back
(:mod:`.trial`): a search trial per :class:`SearchSpec`, then per exported architecture and ``retrain.seeds``
a retraining trial.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from ..config.errors import UserError
from ..config.loading import dump_config, parse_config
from ..config.registry import strategy_entry

__all__ = ['SearchSpec', 'search_specs', 'find_search', 'search_config', 'exported_count', 'planned_trials',
           'search_parameters', 'retrain_parameters']


@dataclass(frozen=True)
class SearchSpec:
    """One search trial of the sweep: its key (shown in the trial parameters), strategy and seed."""

    key: str
    strategy: str
    args: dict = field(default_factory=dict, hash=False, compare=False)
    seed: int = 0


def search_specs(cfg) -> list[SearchSpec]:
    """``launch.sweep``: every strategy with every seed (default: the config's own strategy and seed)."""
    sweep = cfg.launch.sweep
    strategies = list(sweep.strategies) if sweep.strategies else [cfg.strategy]
    seeds = list(sweep.seeds) if sweep.seeds else [cfg.seed]
    names = [strategy_entry(s.name).name for s in strategies]
    specs = []
    for i, (strategy, name) in enumerate(zip(strategies, names)):
        label = name if names.count(name) == 1 else f'{name}{names[:i].count(name) + 1}'
        for seed in seeds:
            specs.append(SearchSpec(f'{label}-seed{seed}', name, dict(strategy.args), int(seed)))
    return specs


def find_search(cfg, key: str | None) -> SearchSpec:
    """The search of the sweep whose key is ``key`` (None: the only one)."""
    specs = search_specs(cfg)
    if key is None and len(specs) == 1:
        return specs[0]
    for spec in specs:
        if spec.key == key:
            return spec
    raise UserError(f'the trial belongs to search {key!r}, which the config\'s launch.sweep does not define '
                    f'(its searches: {", ".join(s.key for s in specs)}); was the config changed after the start?')


def search_config(cfg, spec: SearchSpec):
    """``cfg`` with the strategy, its arguments and the seed of ``spec`` (validated like any config)."""
    if cfg.strategy.name == spec.strategy and dict(cfg.strategy.args) == spec.args and cfg.seed == spec.seed:
        return cfg
    raw = yaml.safe_load(dump_config(cfg))
    raw['strategy'] = {'name': spec.strategy, 'args': dict(spec.args)}
    raw['seed'] = spec.seed
    source = f'{cfg.source or "<config>"} (search {spec.key})'
    return parse_config(yaml.safe_dump(raw, sort_keys=False), source=source)


def exported_count(cfg) -> int:
    """How many architectures a search with ``cfg`` exports (multi_complexity: one per ε)."""
    entry = strategy_entry(cfg.strategy.name)
    if entry.name != 'multi_complexity':
        return 1
    epsilons = cfg.strategy.args.get('epsilons')
    if epsilons is None:
        epsilons = entry.parameters()['epsilons'].default
    return len(list(epsilons))


def planned_trials(cfg) -> int:
    """Search trials + the retraining trials they start when they all succeed."""
    seeds = len(cfg.retrain.seeds)
    return sum(1 + exported_count(search_config(cfg, spec)) * seeds for spec in search_specs(cfg))


def _common(spec: SearchSpec, config_ref: str, overrides: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {'search': spec.key, 'strategy': spec.strategy}
    if spec.args:
        out['strategy_args'] = dict(spec.args)
    out['config'] = config_ref
    if overrides:
        out['overrides'] = list(overrides)
    return out


def search_parameters(spec: SearchSpec, config_ref: str, overrides: list[str] = ()) -> dict[str, Any]:
    common = _common(spec, config_ref, list(overrides))
    return {'phase': 'search', 'search': spec.key, 'strategy': spec.strategy, 'seed': spec.seed, **common}


def retrain_parameters(cfg, spec: SearchSpec, final: dict, config_ref: str,
                       overrides: list[str] = ()) -> list[dict[str, Any]]:
    """The retraining trials of a search's final result: every exported architecture x ``retrain.seeds``."""
    archs = final.get('architectures') or []
    epsilons = final.get('epsilons') or [None] * len(archs)
    common = _common(spec, config_ref, list(overrides))
    out = []
    for index, (arch, epsilon) in enumerate(zip(archs, epsilons)):
        for seed in cfg.retrain.seeds:
            params = {'phase': 'retrain', 'search': spec.key, 'strategy': spec.strategy, 'seed': int(seed),
                      'search_seed': spec.seed, 'index': index}
            if epsilon is not None:
                params['epsilon'] = epsilon
            params.update(architecture=arch, **{k: v for k, v in common.items() if k not in params})
            out.append(params)
    return out

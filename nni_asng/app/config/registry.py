"""Names used in experiment configs → search spaces, fixed networks, tasks and strategies.

Spaces (``space.name``)::

    enas_cell, darts_cell, nas_bench_201, proxyless     classification (search_spaces/)
    cae                                                 inpainting (search_spaces/cae.py)
    nni_hub_darts, nni_hub_enas, nni_hub_nas_bench_201, nni_hub_proxyless   NNI's own hub spaces
    package.module:ClassName                            your own ModelSpace (classification; see user_space_entry)

A :class:`SpaceEntry` knows the module and class of a space, which constructor arguments the dataset
provides (input channels, number of classes), how to build the fixed child network of an exported
architecture (fresh weights, retraining overrides applied) and which argument is the width for a
parameter budget. Strategies (``strategy.name``) map to nni-asng's strategies and, for comparisons,
NNI's own one-shot strategies. ``data.factory`` names a function of the user's (:func:`load_factory`).
"""
from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import os
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn

from ...model_size import count_parameters
from .errors import ConfigError

__all__ = ['SpaceEntry', 'StrategyEntry', 'SPACES', 'STRATEGIES', 'TASKS', 'space_entry', 'strategy_entry',
           'normalise_name', 'constructor_parameters', 'DataInfo', 'user_space_entry', 'load_factory']

TASKS = ('classification', 'inpainting')


@dataclass(frozen=True)
class DataInfo:
    """What a space needs to know about the data: image channels, classes (classification) and shape."""

    in_channels: int
    num_classes: int | None
    input_shape: tuple[int, int, int]


# Constructor argument names through which the spaces receive the dataset's properties.
_CHANNEL_ARGS = ('in_channels', 'input_channels', 'image_channels')
_CLASS_ARGS = ('num_classes', 'num_labels', 'n_classes')


@dataclass(frozen=True)
class SpaceEntry:
    """How to build one search space and its fixed networks.

    Parameters
    ----------
    name, module, attr
        Config name; the module and attribute of the ``ModelSpace`` class.
    task
        ``'classification'`` or ``'inpainting'``.
    description
        One line for listings.
    fixed_builder
        Name of a function ``f(arch, **space_args)`` in ``module`` that builds the fixed network with fresh
        weights; ``None``: ``with nni.nas.space.model_context(arch): cls(**space_args)`` (NNI's idiom).
    width_arg
        The integer width argument scaled to meet ``retrain.param_budget``.
    input_channels, num_classes
        Fixed by the space (NNI's hub spaces take RGB and, with ``dataset='cifar'``, 10 classes).
    fixed_args
        Arguments always passed (not user-settable), e.g. ``dataset='cifar'`` for the hub cell spaces.
    """

    name: str
    module: str
    attr: str
    task: str
    description: str
    fixed_builder: str | None = None
    width_arg: str | None = None
    input_channels: int | None = None
    num_classes: int | None = None
    fixed_args: Mapping[str, Any] = field(default_factory=dict)
    user: bool = False                  # a ``module:Class`` of the user's (see :func:`user_space_entry`)

    # ------------------------------------------------------------------ import
    def load_class(self) -> type:
        module = self.import_module()
        try:
            cls = _get_attribute(module, self.attr)
        except AttributeError as err:
            if self.user:
                raise ConfigError(f'space {self.name!r}: module {self.module} has no attribute {self.attr!r} '
                                  f'(its names: {_public_names(module)})') from None
            raise ConfigError(f'space {self.name!r}: module {self.module} has no {self.attr!r} '
                              f'(is the module complete?)') from err
        if self.user:
            _check_model_space(self.name, cls)
        return cls

    def import_module(self):
        if self.user:
            return _import_user_module(self.module, f'space {self.name!r}')
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as err:
            missing = err.name or self.module
            if self.module == missing or self.module.startswith(missing + '.') or missing.startswith(self.module):
                path = self.module.replace('.', '/') + '.py'
                raise ConfigError(f'space {self.name!r} needs module {self.module} ({path}), which is not available '
                                  f'yet: {err}') from err
            raise ConfigError(f'space {self.name!r}: importing {self.module} failed: {err}') from err

    # ------------------------------------------------------------------ arguments
    def parameters(self) -> dict[str, inspect.Parameter]:
        """User-settable constructor arguments (without those the data or the entry provide)."""
        params = constructor_parameters(self.load_class())
        for name in list(params):
            if name in self.fixed_args:
                del params[name]
        return params

    def data_arguments(self, info: DataInfo) -> dict[str, Any]:
        """Constructor arguments filled from the dataset."""
        accepted = constructor_parameters(self.load_class())
        args: dict[str, Any] = {}
        for name in _CHANNEL_ARGS:
            if name in accepted:
                args[name] = info.in_channels
        if info.num_classes is not None:
            for name in _CLASS_ARGS:
                if name in accepted:
                    args[name] = info.num_classes
        return args

    def check_data(self, info: DataInfo) -> None:
        if self.num_classes is not None and info.num_classes not in (None, self.num_classes):
            raise ConfigError(f'space {self.name!r} has a fixed {self.num_classes}-class classifier, but the dataset '
                              f'has {info.num_classes} classes')

    def arguments(self, user_args: Mapping[str, Any], info: DataInfo) -> dict[str, Any]:
        """Data arguments, the user's, then the fixed ones; a user value contradicting the data is an error."""
        self.check_data(info)
        data_args = self.data_arguments(info)
        for key, value in user_args.items():
            if key in data_args and value != data_args[key]:
                raise ConfigError(f'space {self.name!r}: {key}={value!r} contradicts the dataset ({key}='
                                  f'{data_args[key]!r}); leave it out, it is set from the data')
        return {**data_args, **dict(user_args), **dict(self.fixed_args)}

    # ------------------------------------------------------------------ building
    def build_space(self, user_args: Mapping[str, Any], info: DataInfo):
        cls = self.load_class()
        args = self.arguments(user_args, info)
        with _as_config_error(f'space {self.name!r} rejects space.args {dict(user_args)}'):
            return cls(**args)

    def build_fixed(self, arch: Mapping[str, Any], user_args: Mapping[str, Any], info: DataInfo) -> nn.Module:
        """The fixed network of ``arch`` with fresh weights."""
        args = self.arguments(user_args, info)
        with _as_config_error(f'space {self.name!r}: the fixed network rejects the arguments {dict(user_args)} '
                              '(space.args + retrain.space_args)'):
            if self.fixed_builder is not None:
                return getattr(self.import_module(), self.fixed_builder)(dict(arch), **args)
            from nni.nas.space import model_context  # on first use: `nni-asng list` does not load NNI
            cls = self.load_class()
            with model_context(dict(arch)):
                return cls(**args)


@contextlib.contextmanager
def _as_config_error(what: str):
    """A space constructor's ValueError/TypeError about its arguments becomes a ConfigError (not a traceback);
    architecture errors pass through unchanged."""
    try:
        yield
    except (ValueError, TypeError) as err:
        if type(err).__name__ in ('InvalidArchitectureError', 'ArchitectureError'):
            raise
        raise ConfigError(f'{what}: {err}') from err


@dataclass(frozen=True)
class StrategyEntry:
    """A one-shot strategy: its class and whether it is one of ours (which take ``seed`` and report history)."""

    name: str
    module: str
    attr: str
    ours: bool
    description: str

    def load_class(self) -> type:
        if self.module != 'nni_asng':
            # nni_asng.oneshot imports nni.nas.strategy in the order NNI needs; do it first (on first use:
            # `nni-asng list` does not load NNI).
            import nni_asng.oneshot  # noqa: F401
        return getattr(importlib.import_module(self.module), self.attr)

    def parameters(self) -> dict[str, inspect.Parameter]:
        params = constructor_parameters(self.load_class(), stop_at='OneShotStrategy')
        for name in ('mutation_hooks', 'model_space', 'engine'):
            params.pop(name, None)
        return params


SPACES: dict[str, SpaceEntry] = {e.name: e for e in [
    SpaceEntry('enas_cell', 'search_spaces.enas_cell', 'ENASCellSpace', 'classification',
               'ENAS micro (cell) space of asng-nas §3.2', fixed_builder='build_enas_network', width_arg='channels'),
    SpaceEntry('darts_cell', 'search_spaces.darts_cell', 'DARTSCellSpace', 'classification',
               'DARTS cell space (pdas §4.1)', fixed_builder='build_darts_network', width_arg='channels'),
    SpaceEntry('nas_bench_201', 'search_spaces.nas_bench_201', 'NasBench201Space', 'classification',
               'NAS-Bench-201 cell space (advantagenas §5.2)', fixed_builder='build_nas_bench_201_network',
               width_arg='channels'),
    SpaceEntry('proxyless', 'search_spaces.proxyless', 'ProxylessSpace', 'classification',
               'ProxylessNAS mobile space (multi-complexity §4.2)', fixed_builder='build_proxyless_network'),
    SpaceEntry('cae', 'search_spaces.cae', 'CAESpace', 'inpainting',
               'symmetric convolutional autoencoder space for inpainting (asng-nas §3.3)',
               fixed_builder='build_cae_network'),
    SpaceEntry('nni_hub_darts', 'nni.nas.hub.pytorch', 'DARTS', 'classification',
               "NNI's hub DARTS space (dataset='cifar')", width_arg='width', input_channels=3, num_classes=10,
               fixed_args={'dataset': 'cifar'}),
    SpaceEntry('nni_hub_enas', 'nni.nas.hub.pytorch', 'ENAS', 'classification',
               "NNI's hub ENAS space (dataset='cifar')", width_arg='width', input_channels=3, num_classes=10,
               fixed_args={'dataset': 'cifar'}),
    SpaceEntry('nni_hub_nas_bench_201', 'nni.nas.hub.pytorch', 'NasBench201', 'classification',
               "NNI's hub NAS-Bench-201 space", width_arg='stem_out_channels', input_channels=3),
    SpaceEntry('nni_hub_proxyless', 'nni.nas.hub.pytorch', 'ProxylessNAS', 'classification',
               "NNI's hub ProxylessNAS space", input_channels=3),
]}

STRATEGIES: dict[str, StrategyEntry] = {e.name: e for e in [
    StrategyEntry('asng', 'nni_asng', 'ASNG', True, 'adaptive stochastic natural gradient (asng-nas)'),
    StrategyEntry('pdas', 'nni_asng', 'PDAS', True, 'probabilistic DAS with learning-rate adaptation'),
    StrategyEntry('sng', 'nni_asng', 'SNG', True, 'stochastic natural gradient, fixed step'),
    StrategyEntry('advantage_nas', 'nni_asng', 'AdvantageNAS', True, 'policy gradient with per-edge credit'),
    StrategyEntry('reinforce', 'nni_asng', 'Reinforce', True, 'REINFORCE with an EMA baseline'),
    StrategyEntry('multi_complexity', 'nni_asng', 'MultiComplexity', True,
                  'several architectures of different sizes (importance sampling)'),
    StrategyEntry('darts', 'nni.nas.strategy', 'DARTS', False, "NNI's DARTS"),
    StrategyEntry('gumbel_darts', 'nni.nas.strategy', 'GumbelDARTS', False, "NNI's GumbelDARTS"),
    StrategyEntry('proxyless', 'nni.nas.strategy', 'Proxyless', False, "NNI's ProxylessNAS strategy"),
    StrategyEntry('random_one_shot', 'nni.nas.strategy', 'RandomOneShot', False, "NNI's RandomOneShot (SPOS)"),
]}

_STRATEGY_ALIASES = {'advantagenas': 'advantage_nas', 'multicomplexity': 'multi_complexity',
                     'gumbeldarts': 'gumbel_darts', 'randomoneshot': 'random_one_shot', 'random': 'random_one_shot',
                     'spos': 'random_one_shot'}
_SPACE_ALIASES = {'nasbench201': 'nas_bench_201', 'nb201': 'nas_bench_201', 'enas': 'enas_cell',
                  'darts': 'darts_cell'}


def normalise_name(name: str) -> str:
    return str(name).strip().lower().replace('-', '_')


def _lookup(kind: str, name: Any, table: Mapping[str, Any], aliases: Mapping[str, str]):
    key = normalise_name(name)
    key = aliases.get(key.replace('_', ''), key) if key not in table else key
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ''
        plural = 'strategies' if kind == 'strategy' else f'{kind}s'
        raise ConfigError(f'unknown {kind} {name!r}{hint} Valid {plural}: {", ".join(table)}')
    return table[key]


def space_entry(name: str) -> SpaceEntry:
    if isinstance(name, str) and ':' in name:
        return user_space_entry(name)
    return _lookup('space', name, SPACES, _SPACE_ALIASES)


# ---------------------------------------------------------------------------------------------- user spaces
_USER_SPACE = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_.]*)$')


def user_space_entry(name: str) -> SpaceEntry:
    """``space.name: mypkg.spaces:MySpace``: an importable NNI ``ModelSpace`` class of the user's.

    A classification space: constructor arguments named ``in_channels``/``num_classes`` (or the other
    names of ``_CHANNEL_ARGS``/``_CLASS_ARGS``) are filled from the data; the fixed network of an
    architecture is built the NNI way, ``with nni.nas.space.model_context(arch): MySpace(**args)``.
    """
    match = _USER_SPACE.match(name.strip())
    if match is None:
        raise ConfigError(f'space {name!r}: expected "package.module:ClassName" (an importable module, a colon, '
                          'the ModelSpace class), e.g. "mypkg.spaces:MySpace"')
    module, attr = match.groups()
    return SpaceEntry(name.strip(), module, attr, 'classification', f'user space {name.strip()}', user=True)


def _get_attribute(module, dotted: str):
    obj = module
    for part in dotted.split('.'):
        obj = getattr(obj, part)
    return obj


def _public_names(module, limit: int = 12) -> str:
    names = [n for n in dir(module) if not n.startswith('_')]
    return ', '.join(names[:limit]) + (', ...' if len(names) > limit else '') if names else 'none'


def _import_user_module(module: str, what: str):
    """Import a module the config names; a missing module or one failing on import is a ConfigError."""
    if '' not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())      # `python -m` and console scripts: modules beside the config's cwd
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if module.endswith('.py'):
            raise ConfigError(f'{what}: {module!r} looks like a file name; write the module name without ".py" '
                              f'(e.g. {module[:-3]!r}) and put its folder on PYTHONPATH') from None
        if err.name and (module == err.name or module.startswith(err.name + '.')):
            raise ConfigError(f'{what}: cannot import module {module!r} ({err}); is it installed, or is its folder '
                              'on PYTHONPATH?') from None
        raise ConfigError(f'{what}: importing module {module!r} failed: {type(err).__name__}: {err}') from err
    except Exception as err:  # noqa: BLE001 - any error of the user's module, reported with its name
        raise ConfigError(f'{what}: importing module {module!r} failed: {type(err).__name__}: {err}') from err


def load_factory(spec: str) -> Callable:
    """The function ``module:attr`` names (``data.factory``; a ConfigError says why it cannot be used)."""
    module_name, sep, attr = str(spec).partition(':')
    if not sep or not module_name or not attr:
        raise ConfigError(f'data.factory {spec!r}: expected "package.module:function", e.g. "mypkg.data:make_data"')
    module = _import_user_module(module_name, f'data.factory {spec!r}')
    try:
        factory = _get_attribute(module, attr)
    except AttributeError:
        raise ConfigError(f'data.factory {spec!r}: module {module_name} has no attribute {attr!r} (its names: '
                          f'{_public_names(module)})') from None
    if not callable(factory):
        raise ConfigError(f'data.factory {spec!r} is {a_kind(factory)}, not a function')
    return factory


def a_kind(obj: Any) -> str:
    """'an int', 'a function', ...: what ``obj`` is, for messages."""
    name = type(obj).__name__
    return f'{"an" if name[:1].lower() in "aeiou" else "a"} {name}'


def _check_model_space(name: str, obj: Any) -> None:
    from nni.nas.nn.pytorch import ModelSpace  # on first use: `nni-asng list` does not load NNI
    if not (isinstance(obj, type) and issubclass(obj, ModelSpace)):
        kind = f'the class {obj.__name__}' if isinstance(obj, type) else a_kind(obj)
        raise ConfigError(f'space {name!r} is {kind}, not an NNI ModelSpace: define it as '
                          '`class MySpace(nni.nas.nn.pytorch.ModelSpace)` with LayerChoice/InputChoice/nni.choice '
                          'inside')


def strategy_entry(name: str) -> StrategyEntry:
    return _lookup('strategy', name, STRATEGIES, _STRATEGY_ALIASES)


def constructor_parameters(cls: type, stop_at: str | None = None) -> dict[str, inspect.Parameter]:
    """Keyword parameters of ``cls.__init__``, following ``**kwargs`` up the MRO (to ``stop_at``, inclusive).

    Annotations are resolved (``from __future__ import annotations`` strings) where possible.
    """
    params: dict[str, inspect.Parameter] = {}
    for klass in getattr(cls, '__mro__', [cls]):
        init = klass.__dict__.get('_init_wrapped') or klass.__dict__.get('__init__')   # NNI ModelSpace wraps it
        if init is None:
            continue
        init = getattr(init, '__wrapped__', init)
        try:
            signature = inspect.signature(init)
        except (TypeError, ValueError):
            break
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # unresolvable forward references: keep the raw annotations
            hints = {}
        has_var_kwargs = False
        for name, p in list(signature.parameters.items())[1:]:
            if p.kind is p.VAR_KEYWORD:
                has_var_kwargs = True
                continue
            if p.kind is p.VAR_POSITIONAL or name in params:
                continue
            params[name] = p.replace(annotation=hints.get(name, p.annotation))
        if klass.__name__ == stop_at or not has_var_kwargs:
            break
    return params


def scale_to_budget(entry: SpaceEntry, arch: Mapping[str, Any], user_args: Mapping[str, Any], info: DataInfo,
                    budget: int, log: Callable[[str], None] = lambda s: None) -> tuple[dict[str, Any], int]:
    """The largest ``entry.width_arg`` whose fixed network has at most ``budget`` parameters."""
    if entry.width_arg is None:
        raise ConfigError(f'retrain.param_budget: space {entry.name!r} has no width argument to scale')
    args = dict(user_args)

    def params_at(width: int) -> int:
        with torch.device('meta'):      # shapes only: no memory, no initialisation
            return count_parameters(entry.build_fixed(arch, {**args, entry.width_arg: width}, info))

    low, high = 1, 1
    if params_at(low) > budget:
        raise ConfigError(f'retrain.param_budget: even {entry.width_arg}=1 exceeds {budget} parameters')
    while params_at(high * 2) <= budget and high < 4096:
        high *= 2
    low, high = high, high * 2        # params_at(low) <= budget < params_at(high) (or high hit the cap)
    while high - low > 1:
        mid = (low + high) // 2
        if params_at(mid) <= budget:
            low = mid
        else:
            high = mid
    args[entry.width_arg] = low
    count = params_at(low)
    log(f'param budget {budget:,}: {entry.width_arg}={low} gives {count:,} parameters')
    return args, count

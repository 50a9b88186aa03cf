"""Experiment configs: YAML files read, overridden (``--set``) and validated on load; written back as YAML.

Every key is checked when the file is read, so a typo fails in a second instead of after an hour of
search: unknown keys and wrong types are reported with the file, the line and the full key path
(``search.epochs: expected an integer, got 'three'``; ``strategy.args.lamda: unknown key; did you mean
'lam'?``); malformed YAML reports the file and line; unknown space, strategy or dataset names list the
valid ones. ``space.args``, ``retrain.space_args`` and ``strategy.args`` are checked against the
constructor of the named space / strategy class.
"""
from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Strict, TypeAdapter, ValidationError, create_model

from ...data import get_info
from .builtin import resolve_config
from .errors import ConfigError
from .registry import load_factory, space_entry, strategy_entry
from .schema import ExperimentConfig, SearchConfig

__all__ = ['load_config', 'parse_config', 'apply_overrides', 'dump_config']

def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read, override (``key.path=value`` strings, as ``--set``) and validate an experiment config: a YAML
    file, or the name of a config shipped with nni-asng (``asng_enas_fashion_mnist``)."""
    path = resolve_config(path)
    text = path.read_text(encoding='utf-8')
    return parse_config(text, source=str(path), overrides=overrides)


def parse_config(text: str, source: str = '<string>', overrides: Sequence[str] = ()) -> ExperimentConfig:
    raw, lines = _parse_yaml(text, source)
    overridden: set[tuple] = set()
    if overrides:
        raw, overridden = apply_overrides(raw, overrides)
    errors = _validate(raw) + _semantic_errors(raw)
    if errors:
        raise ConfigError(_format(source, errors, lines, overridden))
    config = ExperimentConfig.model_validate(raw)
    config.source = source
    return config


def _parse_yaml(text: str, source: str) -> tuple[dict, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        lines: dict[tuple, int] = {}
        if node is not None:
            _check_keys(node, (), lines, source)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None) or getattr(err, 'context_mark', None)
        where = f'{source}:{mark.line + 1}:{mark.column + 1}' if mark is not None else source
        problem = getattr(err, 'problem', None) or str(err)
        context = getattr(err, 'context', None)
        raise ConfigError(f'{where}: malformed YAML: {problem}' + (f' ({context})' if context else '')) from None
    if raw is None:
        raise ConfigError(f'{source}: the config is empty')
    if not isinstance(raw, dict):
        raise ConfigError(f'{source}:1: the config must be a mapping of sections (name:, space:, strategy:, ...), '
                          f'got a {type(raw).__name__}')
    return raw, lines


def _check_keys(node, path: tuple, lines: dict, source: str) -> None:
    """Record the line of every key and reject duplicate keys (PyYAML silently keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = '.'.join(str(p) for p in path + (key,))
                raise ConfigError(f'{source}:{line}: {dotted}: duplicate key (first set on line {seen[key]})')
            seen[key] = line
            lines[path + (key,)] = line
            _check_keys(value_node, path + (key,), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _check_keys(item, path + (i,), lines, source)


def apply_overrides(raw: dict, overrides: Sequence[str]) -> tuple[dict, set[tuple]]:
    """``['search.epochs=2', 'data.limit=500']`` applied to the parsed YAML (values are YAML scalars)."""
    raw = copy.deepcopy(raw)
    paths: set[tuple] = set()
    for item in overrides:
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep or not key or any(not part for part in key.split('.')):
            raise ConfigError(f'--set {item!r}: expected key.path=value, e.g. search.epochs=2')
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f'--set {item!r}: the value is not valid YAML ({err})') from None
        parts = key.split('.')
        target = raw
        for i, part in enumerate(parts[:-1]):
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f'--set {item!r}: {".".join(parts[:i + 1])} is not a section (it holds {child!r})')
            target = child
        target[parts[-1]] = parsed
        paths.add(tuple(parts))
    return raw, paths


def dump_config(config: ExperimentConfig) -> str:
    """The complete config (defaults filled in) as YAML, loadable by :func:`load_config`."""
    data = config.model_dump(mode='python')
    return yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=None, width=100)


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------- validation
Error = tuple[tuple, str]   # (key path, message)


def _validate(raw: dict) -> list[Error]:
    try:
        ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        return _merge([(_clean_loc(ExperimentConfig, tuple(e['loc'])), e) for e in err.errors()],
                      ExperimentConfig)
    return []


def _clean_loc(model: type[BaseModel] | None, loc: tuple) -> tuple:
    """Drop pydantic's union/validator tags from an error location, keeping keys and list indices."""
    out: list = []
    annotation: Any = None
    for i, part in enumerate(loc):
        if model is not None:
            out.append(part)
            if not isinstance(part, str) or part not in model.model_fields:
                out.extend(loc[i + 1:])   # an unknown key: keep the rest verbatim
                break
            annotation = model.model_fields[part].annotation
            model = _model_of(annotation) if _is_model(annotation) else None
        elif isinstance(part, int):
            out.append(part)
        elif annotation is not None and typing.get_origin(annotation) is dict:
            out.append(part)
            annotation = None
    return tuple(out)


def _is_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return len(args) == 1 and _is_model(args[0])


def _merge(errors: list[tuple[tuple, dict]], root: type[BaseModel] | None) -> list[Error]:
    """One message per key; the alternatives of a union are joined ("expected 'auto' or an integer")."""
    grouped: dict[tuple, list[dict]] = {}
    for loc, e in errors:
        grouped.setdefault(loc, []).append(e)
    out: list[Error] = []
    for loc, items in grouped.items():
        messages = [_describe(e, root, loc) for e in items]
        expected = [m for m in messages if m.startswith('expected ')]
        if len(items) > 1 and len(expected) == len(messages):
            got = messages[0].rpartition(', got ')[2]
            alternatives = [m[len('expected '):].rpartition(', got ')[0] or m[len('expected '):] for m in messages]
            out.append((loc, f'expected {" or ".join(dict.fromkeys(alternatives))}, got {got}'))
        else:
            out.append((loc, next((m for m in messages if not m.startswith('expected ')), messages[0])))
    return out


def _section(raw: Mapping, key: str) -> dict:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def _semantic_errors(raw: Mapping[str, Any]) -> list[Error]:
    """Names and arguments checked against the registry (spaces, strategies, datasets).

    Works on the raw mapping, so these errors are reported together with the schema's.
    """
    errors: list[Error] = []
    space_cfg, strategy_cfg = _section(raw, 'space'), _section(raw, 'strategy')
    data_cfg, search_cfg, retrain_cfg = _section(raw, 'data'), _section(raw, 'search'), _section(raw, 'retrain')
    space = strategy = None
    if isinstance(space_cfg.get('name'), str):
        try:
            space = space_entry(space_cfg['name'])
        except ConfigError as err:
            errors.append((('space', 'name'), str(err)))
    if isinstance(strategy_cfg.get('name'), str):
        try:
            strategy = strategy_entry(strategy_cfg['name'])
        except ConfigError as err:
            errors.append((('strategy', 'name'), str(err)))
    if isinstance(data_cfg.get('dataset'), str):
        try:
            get_info(data_cfg['dataset'])
        except Exception as err:  # UnknownDatasetError lists the supported names
            errors.append((('data', 'dataset'), str(err)))

    if space is not None:
        try:
            params = space.parameters()
        except ConfigError as err:
            errors.append((('space', 'name'), str(err)))
        else:
            owner = f'space {space.name!r}'
            if isinstance(space_cfg.get('args'), dict):
                errors += _check_args(space_cfg['args'], params, ('space', 'args'), owner)
            if isinstance(retrain_cfg.get('space_args'), dict):
                errors += _check_args(retrain_cfg['space_args'], params, ('retrain', 'space_args'), owner)
        if retrain_cfg.get('param_budget') is not None and space.width_arg is None:
            errors.append((('retrain', 'param_budget'), f'space {space.name!r} has no width argument to scale '
                                                        'to a parameter budget; remove it'))
        if space.task != 'inpainting' and data_cfg.get('mask') is not None:
            errors.append((('data', 'mask'), f'only inpainting spaces use a mask; space {space.name!r} is '
                                             f'a {space.task} space'))

    epochs = search_cfg.get('epochs', SearchConfig.model_fields['epochs'].default)
    if strategy is not None and isinstance(strategy_cfg.get('args', {}), dict):
        errors += _strategy_errors(strategy, strategy_cfg.get('args', {}), epochs, ('strategy',))
    errors += _sweep_errors(_section(raw, 'launch').get('sweep'), epochs)
    errors += _factory_errors(data_cfg, retrain_cfg, space)
    return errors


_RESERVED_STRATEGY_ARGS = {'gradient_clip_val': 'search.gradient_clip', 'seed': 'seed (top level)',
                           'log_every_n_steps': 'search.log_every_n_steps'}


def _strategy_errors(strategy, args: Mapping[str, Any], epochs: Any, prefix: tuple) -> list[Error]:
    """``args`` of ``strategy`` (a StrategyEntry) checked against its constructor; ``prefix`` locates them."""
    errors: list[Error] = []
    params = strategy.parameters()
    reserved = _RESERVED_STRATEGY_ARGS
    for key in args:
        if key in reserved:
            errors.append((prefix + ('args', key), f'set by {reserved[key]}; remove it here'))
    before = len(errors)
    errors += _check_args({k: v for k, v in args.items() if k not in reserved},
                          {k: v for k, v in params.items() if k not in reserved},
                          prefix + ('args',), f'strategy {strategy.name!r}')
    if len(errors) == before:
        errors += _constructor_errors(strategy, {k: v for k, v in args.items() if k not in reserved}, prefix)
    if strategy.name == 'multi_complexity' and len(errors) == before and isinstance(epochs, int):
        needed = _multi_complexity_epochs(args, params)
        if needed is not None and epochs != needed:
            errors.append((('search', 'epochs'), f'the multi_complexity strategy{_where(prefix)} needs exactly '
                                                 f'{needed} epochs (weight_epochs + theta_epochs, x N for method '
                                                 f'"separate"), got {epochs}'))
    return errors


def _constructor_errors(strategy, args: Mapping[str, Any], prefix: tuple) -> list[Error]:
    """The strategy's own checks of its hyperparameters (e.g. ``delta_init > 0``, ``lam >= 2``), run by building
    it with ``args``: what a search would refuse, refused when the config is read."""
    try:
        strategy.load_class()(**args)
    except (ValueError, TypeError) as err:
        return [(prefix + ('args',), f'strategy {strategy.name!r} refuses these arguments: {err}')]
    return []


def _where(prefix: tuple) -> str:
    if prefix == ('strategy',):
        return ''
    dotted = ''.join(f'[{p}]' if isinstance(p, int) else f'.{p}' for p in prefix).lstrip('.')
    return f' ({dotted})'


def _sweep_errors(sweep: Any, epochs: Any) -> list[Error]:
    """Every strategy of ``launch.sweep.strategies`` is a known strategy with valid arguments."""
    if not isinstance(sweep, dict) or not isinstance(sweep.get('strategies'), list):
        return []
    errors: list[Error] = []
    for i, item in enumerate(sweep['strategies']):
        prefix = ('launch', 'sweep', 'strategies', i)
        if not isinstance(item, dict) or not isinstance(item.get('name'), str):
            continue                                  # the schema reports it
        try:
            entry = strategy_entry(item['name'])
        except ConfigError as err:
            errors.append((prefix + ('name',), str(err)))
            continue
        if isinstance(item.get('args', {}), dict):
            errors += _strategy_errors(entry, item.get('args', {}), epochs, prefix)
    return errors


def _factory_errors(data_cfg: Mapping[str, Any], retrain_cfg: Mapping[str, Any], space) -> list[Error]:
    """``data.factory``: importable and callable; the built-in dataset's size settings do not apply to it."""
    factory = data_cfg.get('factory')
    if not isinstance(factory, str) or ':' not in factory:
        return []
    errors: list[Error] = []
    try:
        load_factory(factory)
    except ConfigError as err:
        errors.append((('data', 'factory'), str(err)))
    for section, cfg, key in (('data', data_cfg, 'limit'), ('retrain', retrain_cfg, 'limit'),
                              ('retrain', retrain_cfg, 'test_limit')):
        if cfg.get(key) is not None:
            errors.append(((section, key), 'does not apply to data from data.factory (the factory decides the '
                                           'sizes; pass them through data.factory_args)'))
    if space is not None and space.task != 'classification':
        errors.append((('data', 'factory'), f'data.factory provides classification data; space {space.name!r} is '
                                            f'a {space.task} space'))
    return errors


def _multi_complexity_epochs(args: Mapping[str, Any], params: Mapping[str, inspect.Parameter]) -> int | None:
    def get(name):
        return args.get(name, params[name].default if name in params else None)
    method, w, t, eps = get('method'), get('weight_epochs'), get('theta_epochs'), get('epsilons')
    if not all(isinstance(v, int) for v in (w, t)):
        return None
    if method == 'simultaneous':
        return t
    if method == 'separate':
        return w + len(list(eps)) * t
    return w + t


def _check_args(args: Mapping[str, Any], params: Mapping[str, inspect.Parameter], prefix: tuple,
                owner: str) -> list[Error]:
    """Validate keyword arguments against a constructor signature (unknown keys, types)."""
    errors: list[Error] = []
    for key in args:
        if key not in params:
            errors.append((prefix + (key,), _unknown(key, list(params), owner)))
    known = {k: v for k, v in args.items() if k in params}
    if not known:
        return errors
    fields = {name: (_field_type(params[name].annotation), None) for name in known}
    model = create_model('Args', __config__=ConfigDict(strict=True, arbitrary_types_allowed=True), **fields)
    try:
        model.model_validate(known)
    except ValidationError as err:
        located = [(prefix + tuple(e['loc'])[:1] + tuple(p for p in tuple(e['loc'])[1:] if isinstance(p, int)), e)
                   for e in err.errors()]
        errors += _merge(located, None)
    return errors


def _field_type(annotation: Any) -> Any:
    """A pydantic-usable version of a constructor annotation (Any where it cannot be used)."""
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        return Any
    try:
        TypeAdapter(annotation)
    except Exception:
        return Any
    relaxed = _relax_tuples(annotation)     # YAML gives lists; accept them where a tuple is expected
    try:
        TypeAdapter(relaxed, config=ConfigDict(strict=True))
    except Exception:
        return Any
    return relaxed


def _relax_tuples(annotation: Any) -> Any:
    if annotation is tuple or typing.get_origin(annotation) is tuple:
        return typing.Annotated[annotation, Strict(False)]
    if typing.get_origin(annotation) in (typing.Union, getattr(types, 'UnionType', None)):
        return typing.Union[tuple(_relax_tuples(a) for a in typing.get_args(annotation))]
    return annotation


def _unknown(key: str, allowed: Sequence[str], owner: str | None = None) -> str:
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    msg = 'unknown key'
    if close:
        msg += f'; did you mean {close[0]!r}?'
    elif allowed:
        msg += f' (valid keys{" of " + owner if owner else ""}: {", ".join(map(str, allowed))})'
    else:
        msg += f' ({owner} takes no arguments)' if owner else ''
    return msg


_TYPE_WORDS = {'int': 'an integer', 'float': 'a number', 'bool': 'true or false', 'string': 'a string',
               'list': 'a list', 'dict': 'a mapping (key: value)', 'tuple': 'a list', 'model': 'a mapping (key: value)'}


def _describe(error: dict, root: type[BaseModel] | None, loc: tuple = ()) -> str:
    kind = error['type']
    value = error.get('input')
    got = f', got {value!r}' if 'input' in error else ''
    if kind == 'extra_forbidden':
        loc = loc or tuple(error['loc'])
        allowed = _fields_at(root, loc[:-1]) if root is not None else []
        return _unknown(str(loc[-1]), allowed)
    if kind == 'missing':
        return 'required key is missing'
    head = kind.split('_')[0]
    if kind.endswith('_type') or kind.endswith('_parsing') or kind == 'int_from_float':
        word = _TYPE_WORDS.get(head, head)
        return f'expected {word}{got}' + (_number_hint(value) if head in ('float', 'int') else '')
    if kind in ('literal_error', 'enum'):
        return f'expected {error["ctx"]["expected"]}{got}'
    if kind in ('greater_than', 'greater_than_equal', 'less_than', 'less_than_equal'):
        sign = {'greater_than': '>', 'greater_than_equal': '>=', 'less_than': '<', 'less_than_equal': '<='}[kind]
        bound = next(iter(error['ctx'].values()))
        return f'must be {sign} {bound}{got}'
    if kind in ('too_short', 'too_long'):
        return error['msg'].replace('List', 'the list').replace('Value', 'the value') + got
    if kind == 'string_pattern_mismatch':
        return f'may only hold letters, digits, "_", "-" and "." (starting with a letter or digit){got}'
    if kind == 'value_error':
        return str(error['ctx'].get('error', error['msg']))
    return error['msg'][0].lower() + error['msg'][1:] + got


def _number_hint(value: Any) -> str:
    """YAML 1.1 (PyYAML) reads ``1e-3`` and ``1.0e30`` as text: say how to write them as numbers."""
    if not isinstance(value, str) or not re.fullmatch(r'\s*[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+\s*', value):
        return ''
    return f' (YAML reads {value} as text; write it with a dot and a signed exponent, e.g. {float(value):.1e})'


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    for part in loc:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        model = _model_of(model.model_fields[part].annotation)
    if model is None:
        return []
    return [name for name, f in model.model_fields.items() if not f.exclude]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _format(source: str, errors: list[Error], lines: Mapping[tuple, int], overridden: set[tuple]) -> str:
    out = []

    def line_of(loc: tuple) -> int:
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                return lines[loc[:n]]
        return 10 ** 9

    for loc, message in sorted(errors, key=lambda item: line_of(item[0])):
        dotted = ''
        for part in loc:
            dotted += f'[{part}]' if isinstance(part, int) else (f'.{part}' if dotted else str(part))
        origin = ''
        if any(loc[:len(p)] == p for p in overridden):
            origin = ' (from --set)'
        line = None
        for n in range(len(loc), 0, -1):
            if loc[:n] in lines:
                line = lines[loc[:n]]
                break
        where = f'{source}:{line}' if line and not origin else source
        out.append(f'{where}: {dotted}: {message}{origin}')
    return 'invalid config:\n  ' + '\n  '.join(out)

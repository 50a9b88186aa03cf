"""The experiment configs shipped inside the package (``nni_asng/app/configs/*.yaml``).

A command names one by its name (``nni-asng run asng_enas_fashion_mnist``) or names a YAML file of its own;
``nni-asng configs`` lists them and ``nni-asng configs --copy NAME`` writes one into the user's folder to edit.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from .errors import ConfigError

__all__ = ['BUILTIN_FOLDER', 'builtin_names', 'builtin_path', 'builtin_description', 'resolve_config',
           'copy_builtin']

BUILTIN_FOLDER = Path(__file__).resolve().parents[1] / 'configs'


def builtin_names() -> list[str]:
    """Names of the shipped configs, sorted."""
    return sorted(p.stem for p in BUILTIN_FOLDER.glob('*.yaml'))


def builtin_path(name: str) -> Path | None:
    """The shipped config called ``name`` (with or without ``.yaml``), or None."""
    stem = name[:-5] if name.endswith('.yaml') else name
    path = BUILTIN_FOLDER / f'{stem}.yaml'
    return path if re.fullmatch(r'[A-Za-z0-9_.-]+', stem) and path.is_file() else None


def builtin_description(name: str) -> str:
    """The ``description:`` line of a shipped config (empty if it has none)."""
    path = builtin_path(name)
    for line in path.read_text(encoding='utf-8').splitlines() if path else ():
        if line.startswith('description:'):
            return line.split(':', 1)[1].strip().strip('\'"')
    return ''


def resolve_config(config: str | os.PathLike) -> Path:
    """A YAML file the user names, else the shipped config of that name; a clear error otherwise."""
    path = Path(config).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ConfigError(f'{path} is not a file')
    shipped = builtin_path(str(config))
    if shipped is not None:
        return shipped
    same_name = builtin_path(path.name)
    hint = f'; the shipped config of that name is `{same_name.stem}` (no folder)' if same_name else ''
    raise ConfigError(f'config file {path} does not exist{hint}. Name a YAML file, or one of the configs '
                      f'that come with nni-asng: {", ".join(builtin_names())} (`nni-asng configs` lists them, '
                      f'`nni-asng configs --copy NAME` copies one here to edit)')


def copy_builtin(name: str, destination: str | os.PathLike = '.', overwrite: bool = False) -> Path:
    """Copy the shipped config ``name`` into ``destination`` (a folder or a file name); returns the new file."""
    source = builtin_path(name)
    if source is None:
        raise ConfigError(f'no shipped config is called {name!r}; choose one of: {", ".join(builtin_names())}')
    target = Path(destination).expanduser()
    if target.is_dir() or str(destination).endswith(os.sep):
        target = target / source.name
    if target.exists() and not overwrite:
        raise ConfigError(f'{target} already exists; pass --overwrite to replace it, or name another file')
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target

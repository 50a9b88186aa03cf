"""Result files: atomic writes (a crash never leaves half a JSON) and protection of earlier results."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config.errors import OutputExistsError


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types for numpy scalars/arrays, tensors, paths, tuples and non-string dict keys."""
    if isinstance(obj, dict):
        return {_key(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        obj = float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ('inf' if obj > 0 else '-inf')
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if type(obj).__module__.startswith('torch') and hasattr(obj, 'tolist'):
        return to_jsonable(obj.tolist())
    return obj


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (list, tuple)):
        return json.dumps(to_jsonable(key))
    return str(to_jsonable(key))


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=False) + '\n'
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding='utf-8'))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding='utf-8'))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def check_output(folder: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                 what: str = 'results') -> Path:
    """Refuse an output folder that already holds files unless ``resume`` or ``overwrite`` (changes nothing)."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f'output {folder} exists and is not a folder')
    if folder.is_dir() and any(folder.iterdir()) and not (overwrite or resume):
        raise OutputExistsError(
            f'output folder {folder} already holds {what}; refusing to overwrite them. Choose another folder '
            f'(--output DIR), continue the run (--resume, search only) or replace them (--overwrite).')
    return folder


def prepare_output(folder: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                   what: str = 'results') -> Path:
    """:func:`check_output`, then create ``folder``; ``overwrite`` deletes old contents, ``resume`` keeps them."""
    folder = check_output(folder, resume=resume, overwrite=overwrite, what=what)
    if folder.is_dir() and any(folder.iterdir()) and overwrite and not resume:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder

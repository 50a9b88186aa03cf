"""``nni-asng register``: the pipeline's advisor registered with NNI (``nnictl algo register``), so that plain NNI
experiment YAMLs can name it as ``tuner: {name: NniAsngPipeline}``."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config.errors import UserError
from .advisor import ADVISOR_CLASS, ADVISOR_NAME

__all__ = ['algorithm_meta', 'register_command']

Log = Callable[[str], None]


def algorithm_meta() -> dict[str, Any]:
    """What ``nnictl algo register --meta FILE`` needs to know about the advisor."""
    return {'algoType': 'advisor', 'builtinName': ADVISOR_NAME, 'className': ADVISOR_CLASS}


def register_command(unregister: bool = False, log: Log = print) -> int:
    """Register (or remove) the pipeline advisor with NNI's own ``nnictl algo register``."""
    nnictl = [sys.executable, '-m', 'nni.tools.nnictl.nnictl', 'algo']
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore'}       # nnictl's pkg_resources deprecation notice
    if unregister:
        command = nnictl + ['unregister', ADVISOR_NAME]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            meta = Path(tmp) / 'nni_asng_algorithms.yml'
            meta.write_text(yaml.safe_dump(algorithm_meta(), sort_keys=False))
            command = nnictl + ['register', '--meta', str(meta)]
            result = subprocess.run(command, capture_output=True, text=True, env=env)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or 'error' in output.lower():
        raise UserError(f'`nnictl algo {"unregister" if unregister else "register"}` failed: {output or result.returncode}')
    log(output)
    if not unregister:
        log(f'NNI experiment YAMLs can now name it:  tuner: {{name: {ADVISOR_NAME}, classArgs: {{config: CONFIG.yaml}}}}'
            '   (see `nnictl algo list`)')
    return 0

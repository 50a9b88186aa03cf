"""Run the real ``nni-asng`` command in subprocesses on tiny Fashion-MNIST configs.

Shared by the CLI fault tests (resume after signals and crashes, multi-process search) and, for the
REST API of the real NNI experiments ``nni-asng launch`` starts, by tests/test_launch.py and
tests/test_pipeline.py. Every process gets one OpenMP thread and its own ``HOME`` (NNI keeps its experiment
manifest in ``~/nni-experiments``); matplotlib keeps using the existing font cache.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest

from nni_asng.app.runners.jobs import job_parameters  # the parameters of a ``/trial-jobs`` record
from nni_asng.data.fashion_mnist import DEFAULT_ROOT
import pipeline_harness

needs_fashion_mnist = pytest.mark.skipif(not (DEFAULT_ROOT / 'train-images-idx3-ubyte.gz').is_file(),
                                         reason='needs Fashion-MNIST (apt-get install dataset-fashion-mnist)')

#: ASNG on a 2-channel NAS-Bench-201 cell; ``data.limit`` images are halved into D_x and D_θ.
TINY: dict[str, Any] = {
    'name': 'tiny_cli',
    'seed': 0,
    'space': {'name': 'nas_bench_201', 'args': {'channels': 2, 'num_cells': 1}},
    'strategy': {'name': 'asng', 'args': {'lam': 2}},
    'data': {'dataset': 'fashion_mnist', 'limit': 192, 'batch_size': 16},
    'search': {'epochs': 1, 'device': 'cpu', 'checkpoint_every_n_steps': 3, 'progress_bar': False, 'threads': 1,
               'log_every_n_steps': 1},
    'retrain': {'space_args': {'channels': 2, 'num_cells': 1}, 'epochs': 1, 'limit': 64, 'test_limit': 64,
                'batch_size': 32, 'device': 'cpu', 'progress_bar': False, 'threads': 1},
}


def write_config(path: Path, **changes: Any) -> Path:
    """:data:`TINY` with ``changes`` (``section__key=value``, e.g. ``search__epochs=2``) as a YAML file."""
    return pipeline_harness.write_config(path, TINY, **changes)


def cli_env(home: Path) -> dict[str, str]:
    import matplotlib
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', HOME=str(home), MPLCONFIGDIR=matplotlib.get_cachedir())
    return env


def cli_command(*args: Any) -> list[str]:
    return [sys.executable, '-m', 'nni_asng', *(str(a) for a in args)]


def run_cli(*args: Any, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``nni-asng ARGS`` to completion; stdout and stderr are captured as text."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(cli_command(*args), env=cli_env(home), capture_output=True, text=True, timeout=timeout,
                          cwd=home)


class CliProcess:
    """``nni-asng ARGS`` running in the background, its output going to files (no pipe to fill)."""

    def __init__(self, *args: Any, home: Path, logs: Path):
        home.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / 'stdout.txt', logs / 'stderr.txt'
        with open(self.stdout_path, 'w') as out, open(self.stderr_path, 'w') as err:
            self.process = subprocess.Popen(cli_command(*args), env=cli_env(home), stdout=out, stderr=err, cwd=home)

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 300) -> int:
        return self.process.wait(timeout=timeout)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def output(self) -> str:
        return f'--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-5000:]}'

    def __enter__(self) -> 'CliProcess':
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:          # never leave a search running behind a failed test
            self.process.kill()
            self.process.wait(timeout=60)


def checkpoint_step(path: Path) -> Optional[int]:
    """``global_step`` of the Lightning checkpoint at ``path`` (None: absent or being replaced)."""
    import torch
    try:
        return int(torch.load(path, map_location='cpu', weights_only=True)['global_step'])
    except Exception:  # noqa: BLE001 - not there yet, or replaced while we read it
        return None


def wait_for_checkpoint(cli: CliProcess, path: Path, at_least: int, timeout: float = 300) -> int:
    """Poll ``path`` until it holds a checkpoint of step >= ``at_least``; returns that step."""
    deadline, seen, last_stamp = time.monotonic() + timeout, None, None
    while time.monotonic() < deadline:
        if cli.process.poll() is not None:
            raise AssertionError(f'the search ended (exit code {cli.process.returncode}) before writing a checkpoint '
                                 f'of step >= {at_least} (last seen: {seen})\n{cli.output()}')
        try:
            stamp = path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != last_stamp:
            step = checkpoint_step(path)
            if step is not None:
                seen, last_stamp = step, stamp
                if step >= at_least:
                    return step
        time.sleep(0.02)
    raise AssertionError(f'no checkpoint of step >= {at_least} after {timeout} s (last seen: {seen})\n{cli.output()}')


def interrupt_after(cli: CliProcess, checkpoint: Path, at_least: int, signum: int) -> int:
    """Send ``signum`` once ``checkpoint`` is at step >= ``at_least``; returns the exit code."""
    wait_for_checkpoint(cli, checkpoint, at_least)
    cli.send(signum)
    return cli.wait()


def assert_valid_architecture(out: Path) -> dict:
    """``out/architecture.json`` names every label of the configured space with an allowed value."""
    from nni_asng.app import load_config
    from nni_asng.oneshot import SearchSpaceEncoding
    from nni_asng.app import DataInfo, space_entry
    cfg = load_config(out / 'config.yaml')
    doc = json.loads((out / 'architecture.json').read_text())
    assert doc['space'] == cfg.space.name and doc['strategy'] == cfg.strategy.name
    entry = space_entry(cfg.space.name)
    channels = entry.input_channels or 1
    space = entry.build_space(cfg.space.args, DataInfo(channels, 10, (channels, 28, 28)))
    SearchSpaceEncoding(space).validate(doc['architecture'])      # raises ArchitectureError naming the label
    return doc['architecture']


# ---------------------------------------------------------------------------------------------- NNI's REST API
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def rest(port: int, path: str, timeout: float = 20):
    """GET ``http://127.0.0.1:<port>/api/v1/nni<path>`` as JSON."""
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/v1/nni{path}', timeout=timeout) as response:
        return json.loads(response.read())


def decode(data):
    """NNI's (possibly repeatedly) JSON-encoded metrics and parameters, decoded."""
    while isinstance(data, str):
        data = json.loads(data)
    return data


def alive(pid: Optional[int]) -> bool:
    """Whether process ``pid`` (an NNI manager) still runs."""
    import psutil
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Launch:
    """``nni-asng launch CONFIG --output OUT --port P`` (no --arch: the pipeline) in a subprocess; ``stop()`` ends
    its experiment (what ``nni-asng launch --stop`` does, in this process: a subprocess would only add imports)."""

    def __init__(self, config: Path, out: Path, env: dict, extra: Any = (), timeout: float = 1500):
        self.out, self.env, self.port = out, env, free_port()
        self.args = [sys.executable, '-m', 'nni_asng', 'launch', str(config), '--output', str(out)]
        started = time.time()
        self.result = subprocess.run(self.args + ['--port', str(self.port), *extra], capture_output=True, text=True,
                                     env=env, timeout=timeout, cwd=out.parent)
        self.seconds = time.time() - started

    @property
    def record(self) -> dict:
        return json.loads((self.out / 'launch' / 'launch.json').read_text())

    def output(self) -> str:
        return f'--- stdout\n{self.result.stdout[-5000:]}\n--- stderr\n{self.result.stderr[-5000:]}'

    def stop(self) -> None:
        from nni_asng.app.experiment.manager import stop_experiment
        if not (self.out / 'launch' / 'launch.json').is_file():
            return
        record = self.record
        stop_experiment(record['id'], record['port'], record.get('pid'))
        pid, deadline = record.get('pid'), time.time() + 60
        while alive(pid) and time.time() < deadline:
            time.sleep(0.5)
        if alive(pid):
            os.kill(pid, 9)


__all__ = ['needs_fashion_mnist', 'TINY', 'write_config', 'run_cli', 'CliProcess', 'checkpoint_step',
           'wait_for_checkpoint', 'interrupt_after', 'assert_valid_architecture', 'free_port', 'rest', 'decode',
           'job_parameters', 'alive', 'Launch']

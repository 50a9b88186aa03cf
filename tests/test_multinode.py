"""One search on several machines: Lightning's multi-node DDP, two "nodes" x one process, gloo on loopback.

Every node runs the same ``nni-asng search CONFIG --output OUT --set search.num_nodes=2`` (as a cluster
scheduler would start it on each machine) with ``MASTER_ADDR``/``MASTER_PORT`` (where node 0 listens),
``NODE_RANK`` and ``WORLD_SIZE`` in its environment, its own HOME and working folder, and OUT on storage both
see. Checked: the search runs to the end; the search state (θ and the rest) and the export agree across the
nodes (SHA-256 digests gathered from every rank into summary.json; the export's is the digest of the
architecture.json node 0 wrote); only node 0 writes results; a search stopped after its first epoch and resumed
from its checkpoint on both nodes ends bit for bit where the uninterrupted one ends; and a node started without
its rendezvous variables is refused with what to set, not left waiting.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from pipeline_harness import write_config
from cli_harness import free_port

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                 reason='torch.distributed with the gloo backend is not available')]

NODES = 2
#: 256 training images, batch 32: 8 batches per epoch, 4 per node; θ moves from the first step (warmup 0) and the
#: weights' learning rate is constant, so that a run planned for 1 epoch and resumed to 2 repeats the 2-epoch run.
SETTINGS = dict(strategy={'name': 'asng', 'args': {'lam': 2, 'warmup': 0}}, search__epochs=2,
                search__num_nodes=NODES, search__checkpoint_every_n_steps=2, search__log_every_n_steps=1,
                search__optimizer={'lr': 0.05, 'schedule': 'constant'})


def node_environment(root: Path, rank: int, port: int, user_module: Path) -> dict[str, str]:
    import matplotlib
    home = root / f'node{rank}'
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, 'HOME': str(home), 'MPLCONFIGDIR': matplotlib.get_cachedir(), 'OMP_NUM_THREADS': '1',
            'PYTHONWARNINGS': 'ignore', 'PYTHONUNBUFFERED': '1',
            'PYTHONPATH': os.pathsep.join(filter(None, [str(user_module), os.environ.get('PYTHONPATH')])),
            'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'NODE_RANK': str(rank),
            'WORLD_SIZE': str(NODES)}


def search_on_nodes(config: Path, out: Path, root: Path, user_module: Path, *extra: str,
                    timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """``nni-asng search CONFIG --output OUT EXTRA`` on every node at once; their results once all ended."""
    port, processes = free_port(), []
    root.mkdir(parents=True, exist_ok=True)
    try:
        for rank in range(NODES):
            env = node_environment(root, rank, port, user_module)
            processes.append(subprocess.Popen(
                [sys.executable, '-m', 'nni_asng', 'search', str(config), '--output', str(out), *extra],
                env=env, cwd=env['HOME'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        deadline = time.time() + timeout
        results = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.time()))
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
        return results
    finally:
        for process in processes:                   # never leave a node waiting for the other
            if process.poll() is None:
                process.kill()
                process.communicate()


def output(results) -> str:
    return '\n'.join(f'--- node {i} (exit {r.returncode})\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}'
                     for i, r in enumerate(results))


def summary_of(out: Path) -> dict:
    return json.loads((out / 'summary.json').read_text())


def test_one_search_on_two_nodes_agrees_across_nodes_and_resumes(user_module, tmp_path):
    from nni_asng.oneshot.lightning import export_digest
    config = write_config(tmp_path / 'two_nodes.yaml', **SETTINGS)
    started = time.time()

    # the whole search on two nodes
    full = tmp_path / 'shared' / 'full'
    results = search_on_nodes(config, full, tmp_path / 'full', user_module)
    assert [r.returncode for r in results] == [0, 0], output(results)
    assert 'x 2 processes (DDP)' in results[0].stdout and 'results in' in results[0].stdout
    assert 'search:' not in results[1].stdout and 'results in' not in results[1].stdout, 'node 1 prints nothing'
    summary = summary_of(full)
    assert summary['status'] == 'done' and summary['world_size'] == NODES
    steps = summary['global_step']
    states, exports = summary['search_state_sha256'], summary['export_sha256']
    assert len(states) == len(exports) == NODES and len(set(states)) == len(set(exports)) == 1, summary
    architecture = json.loads((full / 'architecture.json').read_text())['architecture']
    assert exports[0] == export_digest([architecture]), 'the nodes exported what node 0 wrote'
    assert len(list((full / 'nni-experiments').iterdir())) == 1, 'node 1 keeps its NNI records out of the output'
    history = json.loads((full / 'history.json').read_text())
    assert len(history) == 2 and history[0]['architectures'] != [] and summary['resumed'] is False

    # the same search planned for one epoch, then resumed from its checkpoint to two on both nodes
    resumed = tmp_path / 'shared' / 'resumed'
    first = search_on_nodes(config, resumed, tmp_path / 'first', user_module, '--set', 'search.epochs=1')
    assert [r.returncode for r in first] == [0, 0], output(first)
    assert summary_of(resumed)['global_step'] == steps // 2 and steps >= 4
    again = search_on_nodes(config, resumed, tmp_path / 'again', user_module, '--resume')
    assert [r.returncode for r in again] == [0, 0], output(again)
    summary = summary_of(resumed)
    assert summary['resumed'] is True and summary['global_step'] == steps
    assert summary['search_state_sha256'] == states and summary['export_sha256'] == exports, (
        'resumed on two nodes, the search ends bit for bit where the uninterrupted one ends')
    assert json.loads((resumed / 'architecture.json').read_text())['architecture'] == architecture
    assert json.loads((resumed / 'history.json').read_text()) == history
    print(f'two-node search, and the same search resumed: {time.time() - started:.0f} s')


def test_a_node_without_its_rendezvous_variables_is_refused(user_module, tmp_path, monkeypatch, capsys):
    """In process: no NODE_RANK / MASTER_ADDR, a NODE_RANK out of range, a WORLD_SIZE that disagrees."""
    from nni_asng.app import load_config
    from nni_asng.app.runners.runs import _SCHEDULER_VARIABLES, check_nodes
    from nni_asng.app.config.errors import ConfigError
    cfg = load_config(write_config(tmp_path / 'two_nodes.yaml', **SETTINGS))
    cases = {
        'unset': ({}, 'MASTER_ADDR, MASTER_PORT, NODE_RANK are not set: start `nni-asng search` once on each of the 2 '
                      'machines'),
        'rank': ({'MASTER_ADDR': 'node0', 'MASTER_PORT': '29500', 'NODE_RANK': '2'},
                 "NODE_RANK='2' but search.num_nodes is 2: NODE_RANK must be one of 0..1"),
        'world': ({'MASTER_ADDR': 'node0', 'MASTER_PORT': '29500', 'NODE_RANK': '1', 'WORLD_SIZE': '4'},
                  'WORLD_SIZE=4 but search.num_nodes=2 x search.devices=1 = 2 processes'),
        'slurm': ({'SLURM_NTASKS': '3'}, 'but the scheduler started 3 (WORLD_SIZE / SLURM_NTASKS)'),
    }
    for name, (environ, message) in cases.items():
        with pytest.raises(ConfigError) as raised:
            check_nodes(cfg, environ)
        assert message in str(raised.value), (name, str(raised.value))
    check_nodes(cfg, {'MASTER_ADDR': 'node0', 'MASTER_PORT': '29500', 'NODE_RANK': '1', 'WORLD_SIZE': '2'})
    check_nodes(cfg, {'SLURM_NTASKS': '2'})

    # and through the command (in process): exit status 2, the message, no traceback, no waiting
    from nni_asng.app.cli import main
    for key in ('MASTER_ADDR', 'MASTER_PORT', 'NODE_RANK', 'WORLD_SIZE', *_SCHEDULER_VARIABLES):
        monkeypatch.delenv(key, raising=False)
    assert main(['search', str(tmp_path / 'two_nodes.yaml'), '--output', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'search.num_nodes is 2, but MASTER_ADDR, MASTER_PORT, NODE_RANK are not set' in err, err
    assert 'Traceback' not in err and not (tmp_path / 'out').exists()

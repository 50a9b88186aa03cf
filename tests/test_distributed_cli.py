"""``nni-asng search --set search.devices=2`` on CPU: two processes (Lightning DDP, gloo) from the CLI.

Lightning's subprocess launcher starts rank 1 by re-running the command line of rank 0
(``python -m nni_asng.__main__ search ...`` with ``LOCAL_RANK=1``); only rank 0 writes results.
The ranks' final search states must be identical (summary.json lists one SHA-256 per rank).
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

from cli_harness import assert_valid_architecture, needs_fashion_mnist, run_cli, write_config
from nni_asng.oneshot.checkpoint import from_checkpoint
from nni_asng.oneshot.lightning import state_digest

pytestmark = [needs_fashion_mnist,
              pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                 reason='torch.distributed with the gloo backend is not available')]


def test_two_process_search_from_the_cli(tmp_path):
    config = write_config(tmp_path / 'tiny.yaml', data__limit=256)      # D_x 128 images: 4 steps per rank
    out = tmp_path / 'ddp'
    result = run_cli('search', config, '--output', out, '--set', 'search.devices=2', home=tmp_path / 'home')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert 'x 2 processes (DDP)' in result.stdout and 'Traceback' not in result.stderr
    assert result.stdout.count('results in') == 1, 'only rank 0 reports'

    summary = json.loads((out / 'summary.json').read_text())
    assert summary['status'] == 'done' and summary['world_size'] == 2
    assert summary['global_step'] == 128 // 16 // 2, 'each rank takes every second D_x batch'
    digests = summary['search_state_sha256']
    assert len(digests) == 2 and digests[0] == digests[1] and len(digests[0]) == 64

    checkpoint = torch.load(out / 'checkpoints' / 'last.ckpt', map_location='cpu', weights_only=True)
    searcher = from_checkpoint(checkpoint['nni_asng'])['searcher']
    assert state_digest(searcher) == digests[0], 'the digest is that of the saved search state'
    assert searcher['optimizer']['updates'] > 0

    assert_valid_architecture(out)
    assert len(list((out / 'logs').rglob('metrics.csv'))) == 1, 'rank 1 writes no logs of its own'
    assert not list(out.glob('*.tmp')) and not list(out.rglob('summary*.json'))[1:]

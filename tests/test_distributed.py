"""Multi-process search through Lightning DDP (2 CPU processes, gloo)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / 'scripts' / 'ddp_search.py'


def run(out: Path, which: str, devices: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, str(SCRIPT), str(out), which, str(devices)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads((out / f'theta_rank{r}_of{devices}.json').read_text()) for r in range(devices)]


@pytest.mark.parametrize('which', ['asng', 'advantage'])
def test_theta_identical_across_ranks_and_equal_to_single_process(which, tmp_path):
    ranks = run(tmp_path / 'ddp', which, 2)
    single, = run(tmp_path / 'single', which, 1)
    np.testing.assert_array_equal(ranks[0]['theta'], ranks[1]['theta'])       # same update on every rank
    assert ranks[0]['updates'] == single['updates'] == 8
    np.testing.assert_allclose(ranks[0]['theta'], single['theta'], rtol=1e-12, atol=1e-12)
    assert not np.allclose(single['theta'], single['theta'][0])               # θ actually moved

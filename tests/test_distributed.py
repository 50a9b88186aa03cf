"""Multi-process search through Lightning DDP (2 CPU processes, gloo), against the same search in one process
(run in the test's own process: a subprocess would only add seconds of imports)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / 'scripts' / 'ddp_search.py'


def private_home(folder: Path) -> dict:
    """The environment with ``HOME`` in ``folder``: NNI's experiment manifest (read whole several times per
    experiment) starts empty and the user's stays untouched; matplotlib keeps its font cache."""
    import matplotlib
    (folder / 'home').mkdir(parents=True, exist_ok=True)
    return {**os.environ, 'HOME': str(folder / 'home'), 'MPLCONFIGDIR': matplotlib.get_cachedir()}


def run(out: Path, which: str, devices: int) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, str(SCRIPT), str(out), which, str(devices)], capture_output=True,
                            text=True, timeout=600, env=private_home(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads((out / f'theta_rank{r}_of{devices}.json').read_text()) for r in range(devices)]


def run_in_process(out: Path, which: str) -> dict:
    """The script's ``main(out, which, devices=1)`` in this process."""
    spec = importlib.util.spec_from_file_location('ddp_search', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out.mkdir(parents=True, exist_ok=True)
    module.main(out, which, 1)
    return json.loads((out / 'theta_rank0_of1.json').read_text())


@pytest.mark.parametrize('which', ['asng', 'advantage'])
def test_theta_identical_across_ranks_and_equal_to_single_process(which, tmp_path, monkeypatch):
    ranks = run(tmp_path / 'ddp', which, 2)
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    single = run_in_process(tmp_path / 'single', which)
    np.testing.assert_array_equal(ranks[0]['theta'], ranks[1]['theta'])       # same update on every rank
    assert ranks[0]['updates'] == single['updates'] == 8
    np.testing.assert_allclose(ranks[0]['theta'], single['theta'], rtol=1e-12, atol=1e-12)
    assert not np.allclose(single['theta'], single['theta'][0])               # θ actually moved

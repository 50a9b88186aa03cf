"""scripts/gpu_check.sh: the prepared GPU check, exercised on every CI run through its ``--cpu-smoke`` mode
(the same steps with tiny sizes on the CPU), plus its summary logic on GPU-shaped numbers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_harness import needs_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / 'scripts' / 'gpu_check.sh'
sys.path.insert(0, str(REPO / 'scripts'))
import gpu_check  # noqa: E402

STEPS = ['pytest_gpu', 'step_cost_hub_darts', 'step_cost_enas_cell', 'cifar_protocol', 'main_run', 'launch']


def test_scripts_parse_and_usage_errors():
    for script in ('gpu_check.sh', 'build_gpu_bundle.sh'):
        subprocess.run(['bash', '-n', str(REPO / 'scripts' / script)], check=True)
    proc = subprocess.run(['bash', str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and 'gpu_check.sh OUT_DIR' in proc.stderr
    proc = subprocess.run(['bash', str(SCRIPT), '--gpus', 'x'], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and 'unknown option --gpus' in proc.stderr


def test_targets_are_judged_on_gpu_numbers():
    rows = [dict(space='hub_darts', key='asng', strategy='ASNG(λ=2)', stage='', status='ok', step_ms=240.0,
                 x_random=2.4, x_darts=0.22, mem_x_random=1.2, peak_mib=1300.0, overhead_ms=2.0, overhead_pct=0.8),
            dict(space='hub_darts', key='random_one_shot', strategy='NNI RandomOneShot', stage='', status='ok',
                 step_ms=100.0, peak_mib=1100.0),
            dict(space='hub_darts', key='darts', strategy='NNI DARTS', stage='', status='ok', step_ms=1100.0,
                 peak_mib=7600.0)]
    steps = {'step_cost_hub_darts': {'rows': rows},
             'step_cost_enas_cell': {'rows': [dict(rows[0], space='enas_cell', x_random=3.5, x_darts=None,
                                                       overhead_pct=2.5)]},
             'cifar_protocol': {'variants': [{'variant': '32', 'projected_hours': 1.6, 'iter_ms_mean': 148.0,
                                              'timed': 49},
                                             {'variant': 'bf16-mixed', 'projected_hours': 0.9, 'iter_ms_mean': 83.0,
                                              'timed': 49}]},
             'launch': {'trials': [{'status': 'done', 'device': 'cuda',
                                    'accelerator': {'device': 'cuda', 'cuda_device_name': 'NVIDIA H200'}}]}}
    got = {t['target']: t['met'] for t in gpu_check.targets(steps, gpu=True)}
    assert got['hub_darts: ASNG(λ=2) step ≤ 3× RandomOneShot'] == 'yes'
    assert got['hub_darts: ASNG(λ=2) step ≤ 0.3× DARTS'] == 'yes'
    assert got['hub_darts: ASNG peak memory ≤ 1.5× RandomOneShot'] == 'yes'
    assert got['hub_darts: ASNG θ overhead ≤ 2 % of the step'] == 'yes'
    assert got['enas_cell: ASNG(λ=2) step ≤ 3× RandomOneShot'] == 'NO'
    assert got['enas_cell: ASNG θ overhead ≤ 2 % of the step'] == 'NO'
    assert got['enas_cell: ASNG(λ=2) step ≤ 0.3× DARTS'] == 'n/a'          # no DARTS row there
    assert got['CIFAR-10 protocol (32): 39k iterations ≤ 1 h'] == 'NO'
    assert got['CIFAR-10 protocol (bf16-mixed): 39k iterations ≤ 1 h'] == 'yes'
    assert got['launched NNI trials trained on the GPU'] == 'yes'
    assert gpu_check.PROTOCOL_ITERATIONS == 39_000
    summary = {'mode': 'gpu', 'date': 'today', 'total_seconds': 400.0, 'budget_s': 470.0, 'machine': {},
               'steps': [{'step': name, 'status': 'ok', 'seconds': 1.0, **steps.get(name, {})} for name in STEPS],
               'targets': gpu_check.targets(steps, gpu=True), 'all_steps_ok': True}
    text = gpu_check.render_summary(summary)
    assert '| hub_darts: ASNG(λ=2) step ≤ 3× RandomOneShot | 2.4× | 3× | yes |' in text
    assert 'NVIDIA H200' in text


@pytest.mark.slow
@needs_fashion_mnist
def test_cpu_smoke_runs_every_step(tmp_path):
    """The whole check with tiny sizes on the CPU: every step runs, every file lands under OUT_DIR."""
    import matplotlib
    out = tmp_path / 'gpu'
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', MPLCONFIGDIR=matplotlib.get_cachedir(),
               GPU_CHECK_USE_BUNDLE='0')
    started = time.time()
    proc = subprocess.run(['bash', str(SCRIPT), '--cpu-smoke', str(out)], env=env, capture_output=True, text=True,
                          timeout=1500)
    elapsed = time.time() - started
    assert (out / 'summary.json').is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    steps = {s['step']: s for s in summary['steps']}
    assert list(steps) == STEPS
    assert proc.returncode == 0, json.dumps({k: (s.get('status'), s.get('tail')) for k, s in steps.items()}, indent=1)
    assert all(s['status'] == 'ok' for s in steps.values())
    # 1. machine, 2. the CUDA tests are collected and skipped without a GPU
    assert (out / 'machine.txt').is_file() and 'torch' in json.loads((out / 'machine.json').read_text())['versions']
    counts = steps['pytest_gpu']['counts']
    assert counts['tests'] >= 3 and counts['skipped'] == counts['tests'] and counts['failures'] == 0
    # 3. step cost of ours and NNI's strategies on both spaces, with ratios and θ overhead
    for space in ('hub_darts', 'enas_cell'):
        rows = {r['key']: r for r in steps[f'step_cost_{space}']['rows']}
        assert set(gpu_check.SMOKE_STRATEGIES.split(',')) <= set(rows)
        assert rows['asng']['status'] == 'ok' and rows['asng']['x_random'] > 0 and rows['asng']['overhead_pct'] >= 0
    # 4. the CIFAR-10 protocol's iteration, projected to 39,000 iterations
    variant, = steps['cifar_protocol']['variants']
    assert variant['status'] == 'ok' and variant['channels_last'] and variant['projected_hours'] > 0
    # 5. the main config's search and retraining, 6. its launched NNI trial, with the device each ran on
    assert steps['main_run']['retrain']['accelerator']['device'] == 'cpu'
    assert steps['main_run']['search']['accelerator']['device'] == 'cpu'
    trial, = steps['launch']['trials']
    assert trial['status'] == 'done' and trial['accelerator']['device'] == 'cpu'
    assert [t['status'] for t in steps['launch']['nni_trials']] == ['SUCCEEDED']
    # 7. summary, tables, logs and plots
    targets = {t['target']: t['met'] for t in summary['targets']}
    assert targets['hub_darts: ASNG(λ=2) step ≤ 3× RandomOneShot'] == 'n/a (cpu smoke)'
    assert any(name.startswith('CIFAR-10 protocol') for name in targets)
    for name in ('summary.md', 'gpu_check.log', 'pytest_gpu.log', 'step_cost.png', 'cifar_protocol.png',
                 'step_cost/step_cost_hub_darts.txt', 'cifar_protocol/protocol.txt',
                 'main_run/retrain_seed0/retrain.json', 'main_run/launch/trials.json'):
        assert (out / name).is_file(), name
    assert not list(out.rglob('*.ckpt'))
    assert 'All steps ran: yes' in (out / 'summary.md').read_text()
    print(f'gpu_check.sh --cpu-smoke took {elapsed:.0f} s')

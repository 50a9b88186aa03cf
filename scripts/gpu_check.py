"""The steps of ``scripts/gpu_check.sh`` (read its header first): run them, time-box them, summarise them.

``python scripts/gpu_check.py --out DIR --mode gpu|cpu-smoke --work TMP`` runs every step in a subprocess
with a time cap (a step that fails or runs out of time is recorded, and the next one runs), then writes
``summary.md`` and ``summary.json`` with the targets. ``python scripts/gpu_check.py protocol ...`` is step 4
(the CIFAR-10 search protocol's iteration time), run by the driver in its own process.

The driver itself imports only the standard library (and matplotlib for two plots, when present), so it
reports even when torch or nni do not import.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MAIN_CONFIG = REPO / 'nni_asng' / 'app' / 'configs' / 'asng_enas_fashion_mnist.yaml'
CIFAR_CONFIG = REPO / 'nni_asng' / 'app' / 'configs' / 'asng_enas_cifar10.yaml'
STEP_COST = REPO / 'experiments' / 'benchmarks' / 'step_cost.py'
STRATEGIES = 'asng,pdas,advantage_nas,reinforce,multi_complexity,random_one_shot,darts,gumbel_darts'
SMOKE_STRATEGIES = 'asng,random_one_shot,darts'     # ours, NNI's sampling and NNI's dense one: the ratios' inputs
SPACES = ('hub_darts', 'enas_cell')

# The ASNG-NAS CIFAR-10 search protocol (asng-nas §3.2): 100 epochs over D_x = 25,000 images in batches of 64.
PROTOCOL_EPOCHS, PROTOCOL_TRAIN, PROTOCOL_BATCH = 100, 25_000, 64
PROTOCOL_ITERATIONS = PROTOCOL_EPOCHS * (PROTOCOL_TRAIN // PROTOCOL_BATCH)      # 39,000
PROTOCOL_HOURS_TARGET = 1.0

#: (name, cap in seconds, least time it needs) per step, in order; the GPU sums stay inside ~8 minutes.
STEPS = {
    'gpu': [('pytest_gpu', 60, 25), ('step_cost_hub_darts', 110, 45), ('step_cost_enas_cell', 90, 35),
            ('cifar_protocol', 100, 40), ('main_run', 90, 40), ('launch', 110, 60)],
    # generous: the smoke run must show that every step runs, on a busy 2-core CI machine too
    'cpu-smoke': [('pytest_gpu', 180, 20), ('step_cost_hub_darts', 240, 30), ('step_cost_enas_cell', 240, 30),
                  ('cifar_protocol', 240, 30), ('main_run', 240, 30), ('launch', 300, 60)],
}
DEFAULT_BUDGET = {'gpu': 450, 'cpu-smoke': 1200}
#: --cpu-smoke runs the main config's search and its launch (lane 1) beside the other steps (lane 0): the
#: smoke run checks that every step runs, and a CI machine's second core is otherwise idle while the test suite
#: runs (most of each step is process start-up and imports). The GPU check runs its steps one after another.
LANES = {'cpu-smoke': {'main_run': 1, 'launch': 1}}

# Tiny sizes of --cpu-smoke (the commands are the GPU ones with these overrides).
SMOKE_MAIN_SETS = ['data.limit=192', 'data.batch_size=32', 'search.epochs=1', 'space.args.channels=2',
                   'retrain.space_args.channels=2', 'retrain.epochs=1', 'retrain.limit=96', 'retrain.test_limit=64',
                   'retrain.batch_size=32', 'retrain.eval_every_n_epochs=1']
SMOKE_PROTOCOL_SETS = ['space.args.channels=4', 'space.args.cells_per_stage=1', 'data.num_workers=0',
                       'data.batch_size=16']


def log(message: str) -> None:
    print(f'[gpu_check {time.strftime("%H:%M:%S")}] {message}', flush=True)


# ============================================================================================== driver
class Driver:
    def __init__(self, args):
        self.out: Path = args.out
        self.mode: str = args.mode
        self.gpu = self.mode == 'gpu'
        self.work: Path = args.work
        self.python = sys.executable
        self.started = args.started or time.time()
        self.budget = float(args.budget or DEFAULT_BUDGET[self.mode])
        self.deadline = time.time() + self.budget
        self.plan = STEPS[self.mode]
        self.steps: dict[str, dict[str, Any]] = {}
        self.bundle = json.loads(args.bundle_info) if args.bundle_info else {'used': False}
        self.fashion = args.fashion_mnist
        self.device = 'cuda' if self.gpu else 'cpu'
        self.port = None

    # ------------------------------------------------------------------ running one step
    def timeout_for(self, name: str) -> float:
        names = [n for n, _, _ in self.plan]
        i = names.index(name)
        cap = self.plan[i][1]
        lane = LANES.get(self.mode, {}).get(name)        # steps in another lane run beside this one
        later = sum(least for n, _, least in self.plan[i + 1:] if LANES.get(self.mode, {}).get(n) == lane)
        return min(cap, self.deadline - time.time() - later)

    def run(self, name: str, command: list[str], *, log_file: Path | None = None, env: dict | None = None) -> dict:
        timeout = self.timeout_for(name)
        log_file = log_file or self.out / f'{name}.log'
        log_file.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {'step': name, 'command': ' '.join(command),
                                  'log': str(log_file.relative_to(self.out)), 'timeout_s': round(max(timeout, 0), 1)}
        least = dict((n, least) for n, _, least in self.plan)[name]
        if timeout < least:
            record.update(status='skipped', detail=f'only {max(timeout, 0):.0f} s of the budget left')
            log(f'{name}: skipped ({record["detail"]})')
            self.steps[name] = record
            return record
        log(f'{name}: {record["command"]}  (cap {timeout:.0f} s, log {record["log"]})')
        t0 = time.time()
        with open(log_file, 'w') as f:
            f.write(f'$ {record["command"]}\n')
            f.flush()
            proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
            try:
                rc = proc.wait(timeout=timeout)
                record.update(rc=rc, status='ok' if rc == 0 else 'failed')
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                record.update(rc=None, status='timed out')
        record['seconds'] = round(time.time() - t0, 1)
        if record['status'] != 'ok':
            record['tail'] = _tail(log_file, 15)
        log(f'{name}: {record["status"]} in {record["seconds"]} s')
        self.steps[name] = record
        return record

    # ------------------------------------------------------------------ the steps
    def machine_start(self) -> None:
        """Start the version probe (imports torch, Lightning, nni: seconds) beside the first step."""
        self._probe_out = open(self.work / 'version_probe.json', 'w+')
        self._probe = subprocess.Popen([self.python, '-c', _VERSION_PROBE], stdout=self._probe_out,
                                       stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)

    def machine(self) -> None:
        """machine.txt / machine.json: nvidia-smi, versions, paths (waits for the probe, at most 3 minutes)."""
        lines = [f'gpu_check mode: {self.mode}', f'date: {time.strftime("%Y-%m-%d %H:%M:%S %z")}',
                 f'host: {socket.gethostname()}', f'python: {self.python} {sys.version.split()[0]}',
                 f'PYTHONPATH: {os.environ.get("PYTHONPATH", "")}', f'bundle: {json.dumps(self.bundle)}', '']
        info: dict[str, Any] = {'mode': self.mode, 'bundle': self.bundle, 'python': sys.version.split()[0]}
        smi = shutil.which('nvidia-smi')
        if smi:
            for cmd in ([smi], [smi, '--query-gpu=name,driver_version,memory.total,compute_cap,clocks.max.sm,'
                                     'power.limit', '--format=csv']):
                try:
                    text = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
                except (OSError, subprocess.TimeoutExpired) as err:
                    text = f'{cmd[0]} failed: {err}'
                lines += [f'$ {" ".join(cmd)}', text.rstrip(), '']
                if len(cmd) > 1:
                    info['nvidia_smi_query'] = text.strip()
        else:
            lines += ['nvidia-smi: not found', '']
        try:
            self._probe.wait(timeout=180)
        except subprocess.TimeoutExpired:
            _kill_group(self._probe)
        self._probe_out.seek(0)
        output = self._probe_out.read()
        self._probe_out.close()
        try:
            versions = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            versions = {'error': output[-2000:]}
        info['versions'] = versions
        lines += ['versions and import paths:'] + [f'  {k}: {v}' for k, v in versions.items()]
        try:
            lines += ['', f'cpu: {os.cpu_count()} logical cores, load {os.getloadavg()}']
            with open('/proc/meminfo') as f:
                lines.append('memory: ' + f.readline().strip())
        except OSError:
            pass
        if self.gpu and versions.get('filelock') not in (None, '3.11.0'):
            lines.append(f'WARNING: filelock {versions.get("filelock")} is first on the path, not 3.11.0: '
                         'NasExperiment.start may hang (build the bundle with scripts/build_gpu_bundle.sh)')
        (self.out / 'machine.txt').write_text('\n'.join(lines) + '\n')
        _write_json(self.out / 'machine.json', info)
        self.machine_info = info
        log('machine: ' + ', '.join(f'{k} {versions.get(k)}' for k in ('torch', 'cuda', 'gpu', 'pytorch_lightning',
                                                                        'nni', 'filelock')))

    def pytest_gpu(self) -> None:
        files = sorted(str(p.relative_to(REPO)) for p in (REPO / 'tests').glob('test_*.py')
                       if 'pytest.mark.gpu' in p.read_text(encoding='utf-8'))
        xml = self.out / 'pytest_gpu.xml'
        record = self.run('pytest_gpu', [self.python, '-m', 'pytest', '-q', '-m', 'gpu', '-p', 'no:cacheprovider',
                                         f'--junitxml={xml}', *files])
        record['counts'] = _junit_counts(xml)

    def step_cost(self, space: str) -> None:
        folder = self.out / 'step_cost'
        prefix = folder / f'step_cost_{space}'
        size = ['--size', 'paper', '--warmup', '3', '--steps', '10'] if self.gpu else \
            ['--size', 'tiny', '--warmup', '1', '--steps', '1']
        record = self.run(f'step_cost_{space}', [self.python, str(STEP_COST), *size, '--device', self.device,
                                                 '--in-process', '--spaces', space,
                                                 '--strategies', STRATEGIES if self.gpu else SMOKE_STRATEGIES,
                                                 '--out', str(prefix)], log_file=folder / f'step_cost_{space}.log')
        path = Path(f'{prefix}.json')
        if path.is_file():
            data = json.loads(path.read_text())
            record['rows'] = [{k: r.get(k) for k in ('space', 'key', 'strategy', 'stage', 'status', 'step_ms', 'cpu_ms',
                                                     'peak_mib', 'growth_mib', 'x_random', 'x_darts', 'mem_x_random',
                                                     'mem_x_darts', 'overhead_ms', 'overhead_pct')}
                              for r in data['rows']]

    def cifar_protocol(self) -> None:
        folder = self.out / 'cifar_protocol'
        variants = '32,bf16-mixed,bf16-mixed+channels_last' if self.gpu else '32+channels_last'
        iterations = '50' if self.gpu else '4'
        warmup = '10' if self.gpu else '1'
        command = [self.python, str(Path(__file__).resolve()), 'protocol', '--out', str(folder), '--mode', self.mode,
                   '--work', str(self.work), '--variants', variants, '--iterations', iterations, '--warmup', warmup]
        record = self.run('cifar_protocol', command, log_file=folder / 'protocol.log')
        path = folder / 'protocol.json'
        if path.is_file():
            record['variants'] = json.loads(path.read_text())['variants']

    def _data_sets(self) -> list[str]:
        sets = [f'search.device={self.device}', f'retrain.device={self.device}', 'search.progress_bar=false',
                'retrain.progress_bar=false']
        if self.fashion:
            sets.append(f'data.root={self.fashion}')
        return sets + ([] if self.gpu else SMOKE_MAIN_SETS)

    def main_run(self) -> None:
        out = self.out / 'main_run'
        command = [self.python, '-m', 'nni_asng', 'run', str(MAIN_CONFIG), '--output', str(out), '--overwrite']
        for s in self._data_sets():
            command += ['--set', s]
        record = self.run('main_run', command)
        summary, retrain = out / 'summary.json', out / 'retrain_seed0' / 'retrain.json'
        if summary.is_file():
            doc = json.loads(summary.read_text())
            record['search'] = {k: doc.get(k) for k in ('status', 'wall_time_s', 'device', 'accelerator',
                                                         'global_step')}
        if retrain.is_file():
            doc = json.loads(retrain.read_text())
            record['retrain'] = {k: doc.get(k) for k in ('status', 'wall_time_s', 'device', 'accelerator', 'test',
                                                          'params', 'train_size', 'test_size')}

    def launch(self) -> None:
        out = self.out / 'main_run'
        arch = out / 'architecture.json'
        if not arch.is_file():
            self.steps['launch'] = {'step': 'launch', 'status': 'skipped',
                                    'detail': 'no architecture.json from main_run'}
            log('launch: skipped (no architecture.json)')
            return
        self.port = _free_port()
        command = [self.python, '-m', 'nni_asng', 'launch', str(MAIN_CONFIG), '--output', str(out), '--arch', str(arch),
                   '--seeds', '0', '--port', str(self.port), '--stop-when-done', '--overwrite']
        sets = [s for s in self._data_sets() if not s.startswith('search.')]
        sets += [f'launch.trial_gpu_number={1 if self.gpu else 0}', 'launch.poll_interval=2']
        for s in sets:
            command += ['--set', s]
        record = self.run('launch', command)
        if record['status'] != 'ok':          # make sure no NNI manager outlives the check
            stop = [self.python, '-m', 'nni_asng', 'launch', str(MAIN_CONFIG), '--output', str(out), '--stop']
            subprocess.run(stop, cwd=REPO, capture_output=True, timeout=60)
        trials = []
        # NNI 3.0 local trials: nni-experiments/<id>/environments/local-env/trials/<trial>/ (NNI_OUTPUT_DIR)
        # (its _latest symlink names the same experiment: each file once)
        for path in sorted({p.resolve() for p in out.glob('nni-experiments/**/retrain/retrain.json')}):
            doc = json.loads(path.read_text())
            trials.append({'retrain_json': os.path.relpath(path, self.out.resolve()), 'status': doc.get('status'),
                           'device': doc.get('device'), 'accelerator': doc.get('accelerator'), 'test': doc.get('test')})
        record['trials'] = trials
        jobs = out / 'launch' / 'trials.json'
        if jobs.is_file():
            record['nni_trials'] = [{'id': j.get('trialJobId'), 'status': j.get('status'), 'final': j.get('final')}
                                    for j in json.loads(jobs.read_text())]

    # ------------------------------------------------------------------ all
    def main(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.machine_info = {}
        self.machine_start()
        beside = None
        if LANES.get(self.mode):
            beside = threading.Thread(target=self._main_run_and_launch, name='main_run+launch', daemon=True)
            beside.start()
        self.pytest_gpu()
        try:
            self.machine()
        except Exception as err:  # noqa: BLE001 - the description must not stop the check
            log(f'machine description failed: {err}')
        for space in SPACES:
            self.step_cost(space)
        self.cifar_protocol()
        if beside is None:
            self.main_run()
            self.launch()
        else:
            beside.join()
        order = [n for n, _, _ in self.plan]
        self.steps = dict(sorted(self.steps.items(), key=lambda item: order.index(item[0])))
        removed = _drop_checkpoints(self.out)
        summary = self.summary(removed)
        ok = all(s.get('status') == 'ok' for s in self.steps.values()) and len(self.steps) == len(self.plan)
        summary['all_steps_ok'] = ok
        _write_json(self.out / 'summary.json', summary)
        (self.out / 'summary.md').write_text(render_summary(summary))
        plots(summary, self.out)
        print(render_summary(summary), flush=True)
        return 0 if ok else 1

    def _main_run_and_launch(self) -> None:
        try:
            self.main_run()
            self.launch()
        except Exception as err:  # noqa: BLE001 - recorded as a missing step; the other lane goes on
            log(f'main_run/launch failed: {type(err).__name__}: {err}')

    def summary(self, removed: list[str]) -> dict[str, Any]:
        return {'mode': self.mode, 'date': time.strftime('%Y-%m-%d %H:%M:%S %z'),
                'total_seconds': round(time.time() - self.started, 1), 'budget_s': self.budget,
                'machine': self.machine_info, 'steps': list(self.steps.values()),
                'targets': targets(self.steps, self.gpu), 'checkpoints_removed': removed}


_VERSION_PROBE = r'''
import json, os, platform
out = {'python': platform.python_version()}
def mod(name, key=None):
    try:
        m = __import__(name)
        out[key or name] = getattr(m, '__version__', '?')
        out[(key or name) + '_path'] = os.path.dirname(getattr(m, '__file__', '') or '')
    except Exception as err:
        out[key or name] = f'not importable: {type(err).__name__}: {err}'
for name in ('numpy', 'torchvision', 'torchmetrics', 'pytorch_lightning', 'nni', 'pydantic', 'filelock',
             'typeguard', 'matplotlib', 'pytest'):
    mod(name)
try:
    import torch
    out['torch'] = torch.__version__
    out['cuda'] = torch.version.cuda
    out['cudnn'] = torch.backends.cudnn.version()
    out['cuda_available'] = torch.cuda.is_available()
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                   gpu_memory_gib=round(p.total_memory / 2 ** 30, 1), capability=f'{p.major}.{p.minor}',
                   bf16_supported=torch.cuda.is_bf16_supported())
except Exception as err:
    out['torch'] = f'not importable: {type(err).__name__}: {err}'
try:
    import nni_asng
    out['nni_asng_path'] = os.path.dirname(nni_asng.__file__)
except Exception as err:
    out['nni_asng'] = f'not importable: {type(err).__name__}: {err}'
print(json.dumps(out))
'''


# ============================================================================================== targets
def targets(steps: dict[str, dict], gpu: bool) -> list[dict[str, Any]]:
    """The issue's targets, evaluated on this run (on the CPU smoke run they are shown, not judged)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value, limit, unit: str = '', detail: str = '', higher_is_better: bool = False):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            met = 'n/a'
        elif not gpu:
            met = 'n/a (cpu smoke)'
        else:
            met = 'yes' if (value >= limit if higher_is_better else value <= limit) else 'NO'
        out.append({'target': name, 'value': value, 'limit': limit, 'unit': unit, 'met': met, 'detail': detail})

    for space in SPACES:
        rows = {(r['key'], r.get('stage') or ''): r for r in steps.get(f'step_cost_{space}', {}).get('rows', [])
                if r.get('status') == 'ok'}
        asng = rows.get(('asng', ''), {})
        add(f'{space}: ASNG(λ=2) step ≤ 3× RandomOneShot', asng.get('x_random'), 3.0, '×',
            _ms(asng, rows.get(('random_one_shot', ''))))
        add(f'{space}: ASNG(λ=2) step ≤ 0.3× DARTS', asng.get('x_darts'), 0.3, '×',
            _ms(asng, rows.get(('darts', ''))))
        add(f'{space}: ASNG peak memory ≤ 1.5× RandomOneShot', asng.get('mem_x_random'), 1.5, '×',
            f'{_num(asng.get("peak_mib"))} MiB vs {_num(rows.get(("random_one_shot", ""), {}).get("peak_mib"))} MiB')
        add(f'{space}: ASNG θ overhead ≤ 2 % of the step', asng.get('overhead_pct'), 2.0, '%',
            f'{_num(asng.get("overhead_ms"))} ms per step')
    for v in steps.get('cifar_protocol', {}).get('variants', []):
        add(f'CIFAR-10 protocol ({v["variant"]}): 39k iterations ≤ 1 h', v.get('projected_hours'),
            PROTOCOL_HOURS_TARGET, 'h',
            f'{_num(v.get("iter_ms_mean"))} ms per iteration (mean of {v.get("timed")}, data loading included)')
    trials = steps.get('launch', {}).get('trials', [])
    on_gpu = [t for t in trials if (t.get('accelerator') or {}).get('device') == 'cuda'
              and (t.get('accelerator') or {}).get('cuda_device_name')]
    if trials:
        names = sorted({(t.get('accelerator') or {}).get('cuda_device_name') or t.get('device') or '?' for t in trials})
        value = len(on_gpu) / len(trials)
        out.append({'target': 'launched NNI trials trained on the GPU', 'value': value, 'limit': 1.0, 'unit': '',
                    'met': ('yes' if value == 1.0 else 'NO') if gpu else 'n/a (cpu smoke)',
                    'detail': f'{len(on_gpu)}/{len(trials)} trial(s) on CUDA ({", ".join(names)})'})
    return out


def _ms(a: dict, b: dict | None) -> str:
    if not a or not b:
        return ''
    key = 'step_ms' if a.get('step_ms') is not None else 'cpu_ms'
    return f'{_num(a.get(key))} ms vs {_num(b.get(key))} ms'


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 100 else f'{value:.0f}'
    return str(value)


def render_summary(summary: dict[str, Any]) -> str:
    m = summary.get('machine', {}).get('versions', {})
    lines = [f'# nni-asng GPU check ({summary["mode"]})', '',
             f'{summary["date"]}; {summary["total_seconds"]:.0f} s in all (steps budget {summary["budget_s"]:.0f} s). '
             f'GPU: {m.get("gpu", "none")}; torch {m.get("torch")} (CUDA {m.get("cuda")}, cuDNN {m.get("cudnn")}), '
             f'pytorch-lightning {m.get("pytorch_lightning")}, nni {m.get("nni")}, filelock {m.get("filelock")}, '
             f'python {m.get("python")}. Bundle: {json.dumps(summary.get("machine", {}).get("bundle", {}))}.', '',
             '## Steps', '', '| step | status | seconds | notes |', '|---|---|---|---|']
    for s in summary['steps']:
        notes = s.get('detail', '')
        if s['step'] == 'pytest_gpu' and s.get('counts'):
            notes = ', '.join(f'{k} {v}' for k, v in s['counts'].items())
        if s['step'] == 'main_run' and s.get('retrain'):
            test = s['retrain'].get('test') or {}
            acc = (s['retrain'].get('accelerator') or {})
            search_s = (s.get('search') or {}).get('wall_time_s')
            notes = (f'test acc {_num(test.get("acc"))}, search {_num(search_s)} s, retrain '
                     f'{_num(s["retrain"].get("wall_time_s"))} s on {acc.get("cuda_device_name") or acc.get("device")}')
        if s['step'] == 'launch' and s.get('trials'):
            notes = '; '.join(f'trial {t.get("status")} on '
                              f'{(t.get("accelerator") or {}).get("cuda_device_name") or t.get("device")}, '
                              f'test acc {_num((t.get("test") or {}).get("acc"))}' for t in s['trials'])
        if s.get('status') not in ('ok', 'skipped') and s.get('tail'):
            notes += ' — last line: ' + s['tail'][-1][:160].replace('|', '/')
        lines.append(f'| {s["step"]} | {s.get("status")} | {_num(s.get("seconds"))} | {notes} |')
    for space in SPACES:
        rows = next((s.get('rows') for s in summary['steps'] if s['step'] == f'step_cost_{space}'), None)
        if not rows:
            continue
        lines += ['', f'## Step cost: {space}', '',
                  '| strategy | stage | step ms | cpu ms | peak MiB | × RandomOneShot | × DARTS | mem × Random | '
                  'θ overhead ms | θ overhead % | status |', '|---|---|---|---|---|---|---|---|---|---|---|']
        for r in rows:
            cells = [r.get('strategy'), r.get('stage') or ''] + [_num(r.get(k)) for k in (
                'step_ms', 'cpu_ms', 'peak_mib', 'x_random', 'x_darts', 'mem_x_random', 'overhead_ms', 'overhead_pct')]
            lines.append('| ' + ' | '.join(str(c) for c in cells) + f' | {(r.get("status") or "")[:80]} |')
    variants = next((s.get('variants') for s in summary['steps'] if s['step'] == 'cifar_protocol'), None)
    if variants:
        lines += ['', f'## CIFAR-10 search protocol ({PROTOCOL_ITERATIONS:,} iterations: {PROTOCOL_EPOCHS} epochs of '
                      f'{PROTOCOL_TRAIN:,}/{PROTOCOL_TRAIN:,} images, batch {PROTOCOL_BATCH}, λ=2)', '',
                  '| variant | iteration ms (mean) | median | step ms (median) | projected h | peak MiB |',
                  '|---|---|---|---|---|---|']
        for v in variants:
            cells = [v['variant']] + [_num(v.get(k)) for k in ('iter_ms_mean', 'iter_ms_median', 'step_ms_median',
                                                                 'projected_hours', 'peak_mib')]
            lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '## Targets', '', '| target | value | limit | met | detail |', '|---|---|---|---|---|']
    for t in summary['targets']:
        value = _num(t['value'])
        lines.append(f'| {t["target"]} | {value}{t["unit"] if value != "-" else ""} | {_num(t["limit"])}{t["unit"]} | '
                     f'{t["met"]} | {t["detail"]} |')
    if summary.get('checkpoints_removed'):
        lines += ['', f'Checkpoints removed to keep OUT_DIR small: {len(summary["checkpoints_removed"])} file(s).']
    lines += ['', f'All steps ran: {"yes" if summary.get("all_steps_ok") else "NO"}', '']
    return '\n'.join(lines)


def plots(summary: dict[str, Any], out: Path) -> None:
    """step_cost.png (time and memory per strategy) and cifar_protocol.png (projected hours), with matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except Exception as err:  # noqa: BLE001
        log(f'plots skipped: matplotlib does not import ({err})')
        return
    spaces = [(space, next((s.get('rows') for s in summary['steps'] if s['step'] == f'step_cost_{space}'), None))
              for space in SPACES]
    spaces = [(space, [r for r in rows if r.get('status') == 'ok']) for space, rows in spaces if rows]
    if spaces:
        fig, axes = plt.subplots(2, len(spaces), figsize=(6 * len(spaces), 7), squeeze=False)
        for j, (space, rows) in enumerate(spaces):
            labels = [r['strategy'] + (f'\n{r["stage"]}' if r.get('stage') else '') for r in rows]
            key = 'step_ms' if summary['mode'] == 'gpu' else 'cpu_ms'
            axes[0][j].barh(labels, [r.get(key) or 0 for r in rows], color='tab:blue')
            axes[0][j].set_title(f'{space}: {"CUDA" if key == "step_ms" else "CPU"} time per step (ms)')
            axes[1][j].barh(labels, [r.get('peak_mib') or 0 for r in rows], color='tab:orange')
            axes[1][j].set_title(f'{space}: peak memory (MiB)')
            for ax in axes[:, j]:
                ax.invert_yaxis()
                ax.tick_params(labelsize=8)
        fig.tight_layout()
        fig.savefig(out / 'step_cost.png', dpi=110)
        plt.close(fig)
    variants = next((s.get('variants') for s in summary['steps'] if s['step'] == 'cifar_protocol'), None)
    if variants:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.barh([v['variant'] for v in variants], [v.get('projected_hours') or 0 for v in variants], color='tab:green')
        ax.axvline(PROTOCOL_HOURS_TARGET, color='red', linestyle='--', label='target: 1 h')
        ax.set_xlabel(f'projected hours for {PROTOCOL_ITERATIONS:,} iterations')
        ax.invert_yaxis()
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / 'cifar_protocol.png', dpi=110)
        plt.close(fig)


# ============================================================================================== protocol (step 4)
def write_synthetic_cifar10(root: Path, per_batch: int, seed: int = 0) -> Path:
    """A ``cifar-10-batches-py`` folder of random images (5 training batches of ``per_batch`` images, one test
    batch): CIFAR-shaped data in the standard format, read by nni-asng's CIFAR-10 loader."""
    import pickle

    import numpy as np
    folder = root / 'cifar-10-batches-py'
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        batch = {b'data': rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b'labels': rng.integers(0, 10, per_batch).tolist(), b'batch_label': name.encode()}
        with open(folder / name, 'wb') as f:
            pickle.dump(batch, f, protocol=4)
    return folder


def protocol(args) -> int:
    """Time the CIFAR-10 search protocol's iteration through the CLI's own search (``runs.run_search``)."""
    import torch
    from pytorch_lightning import Callback

    from nni_asng.app import load_config
    from nni_asng.app.runners import assembly, runs

    gpu = args.mode == 'gpu'
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = write_synthetic_cifar10(Path(args.work) / 'cifar10', per_batch=10_000 if gpu else 200)
    device = 'cuda' if gpu else 'cpu'
    warmup, iterations = int(args.warmup), int(args.iterations)

    class IterationTimer(Callback):
        """Start-to-start wall time of every iteration (data loading included) and the step time
        (batch start -> end); CUDA is synchronised at both ends."""

        def __init__(self):
            self.iter_ms: list[float] = []
            self.step_ms: list[float] = []
            self._start = None

        def _sync(self):
            if device == 'cuda':
                torch.cuda.synchronize()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._sync()
            now = time.perf_counter()
            if self._start is not None and batch_idx > warmup:
                self.iter_ms.append((now - self._start) * 1e3)
            if batch_idx == warmup and device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            self._start = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._sync()
            if batch_idx >= warmup:
                self.step_ms.append((time.perf_counter() - self._start) * 1e3)

    results: list[dict[str, Any]] = []
    doc = {'config': str(CIFAR_CONFIG.relative_to(REPO)), 'iterations': PROTOCOL_ITERATIONS, 'device': device,
           'data': 'synthetic CIFAR-shaped images (uint8, 32x32x3) in the cifar-10-batches-py format',
           'timed_iterations': max(0, iterations - warmup - 1), 'variants': results}
    original = assembly.search_evaluator
    for variant in [v for v in args.variants.split(',') if v]:
        precision = variant.split('+')[0]
        channels_last = variant.endswith('+channels_last')
        timer = IterationTimer()

        def with_timer(*a, callbacks, _timer=timer, **k):
            return original(*a, callbacks=[*callbacks, _timer], **k)

        sets = [f'data.root={data}', 'search.epochs=1', f'search.limit_train_batches={iterations}',
                f'search.device={device}', 'search.progress_bar=false', f'search.precision={precision}',
                f'search.channels_last={str(channels_last).lower()}', 'search.checkpoint_every_n_steps=null']
        if not gpu:
            sets += SMOKE_PROTOCOL_SETS + ['search.threads=1']
        cfg = load_config(CIFAR_CONFIG, sets)
        log(f'protocol {variant}: {iterations} iterations ({warmup} untimed) of {CIFAR_CONFIG.name} with '
            f'{" ".join(sets)}')
        assembly.search_evaluator = with_timer
        started = time.time()
        record: dict[str, Any] = {'variant': variant, 'precision': precision, 'channels_last': channels_last,
                                  'overrides': sets}
        try:
            runs.run_search(cfg, out / variant.replace('+', '_'), overwrite=True, log=log)
            record['status'] = 'ok'
        except Exception as err:  # noqa: BLE001 - recorded, the next variant runs
            record.update(status='error', error=f'{type(err).__name__}: {err}'[:500])
            log(f'protocol {variant}: {record["error"]}')
        finally:
            assembly.search_evaluator = original
        record['wall_s'] = round(time.time() - started, 1)
        if timer.iter_ms:
            mean, median = statistics.fmean(timer.iter_ms), statistics.median(timer.iter_ms)
            record.update(timed=len(timer.iter_ms), iter_ms_mean=mean, iter_ms_median=median,
                          step_ms_median=statistics.median(timer.step_ms) if timer.step_ms else None,
                          projected_hours=mean * PROTOCOL_ITERATIONS / 3.6e6,
                          projected_hours_median=median * PROTOCOL_ITERATIONS / 3.6e6)
        if device == 'cuda':
            record['peak_mib'] = torch.cuda.max_memory_allocated() / 2 ** 20
        results.append(record)
        _write_json(out / 'protocol.json', doc)          # after every variant: a crash keeps what was measured
        log(f'protocol {variant}: ' + ', '.join(f'{k} {_num(record.get(k))}' for k in
                                                ('status', 'iter_ms_mean', 'step_ms_median', 'projected_hours')))
    lines = [f'# {doc["config"]} on {device}: {PROTOCOL_ITERATIONS:,} iterations projected from '
             f'{doc["timed_iterations"]} timed ones (data loading included)',
             f'{"variant":32s} {"iter ms":>9s} {"median":>9s} {"step ms":>9s} {"hours":>7s}  status']
    for r in results:
        lines.append(f'{r["variant"]:32s} {_num(r.get("iter_ms_mean")):>9s} {_num(r.get("iter_ms_median")):>9s} '
                     f'{_num(r.get("step_ms_median")):>9s} {_num(r.get("projected_hours")):>7s}  {r["status"]}')
    (out / 'protocol.txt').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines), flush=True)
    return 0 if all(r['status'] == 'ok' and r.get('timed') for r in results) else 1


# ============================================================================================== helpers
def _kill_group(proc: subprocess.Popen) -> None:
    """End a step that ran out of time, with everything it started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, n: int) -> list[str]:
    try:
        lines = path.read_text(errors='replace').splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-n:]


def _junit_counts(path: Path) -> dict[str, int]:
    if not path.is_file():
        return {}
    text = path.read_text(errors='replace')
    match = re.search(r'<testsuite [^>]*>', text)
    if not match:
        return {}
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(0)))
    return {k: int(attrs.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _drop_checkpoints(out: Path) -> list[str]:
    removed = []
    for path in out.rglob('*.ckpt'):
        removed.append(str(path.relative_to(out)))
        path.unlink()
    return removed


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['protocol']:
        p = argparse.ArgumentParser(prog='gpu_check.py protocol')
        p.add_argument('--out', required=True)
        p.add_argument('--mode', choices=sorted(STEPS), required=True)
        p.add_argument('--work', required=True)
        p.add_argument('--variants', default='32')
        p.add_argument('--iterations', type=int, default=60)
        p.add_argument('--warmup', type=int, default=10)
        return protocol(p.parse_args(argv[1:]))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--mode', choices=sorted(STEPS), default='gpu')
    p.add_argument('--work', type=Path, required=True)
    p.add_argument('--bundle-info', default='')
    p.add_argument('--fashion-mnist', default=None, help='Fashion-MNIST folder (default: the config\'s data.root)')
    p.add_argument('--budget', type=float, default=None, help='seconds for the time-boxed steps')
    p.add_argument('--started', type=float, default=None)
    return Driver(p.parse_args(argv)).main()


if __name__ == '__main__':
    sys.exit(main())

"""Search and retraining as ONE NNI experiment: ``nni-asng launch CONFIG`` (without ``--arch``).

The experiment's tuner is :class:`nni_asng.app.advisor.PipelineAdvisor`. It hands out one search trial
per entry of ``launch.sweep`` (strategies x seeds; default: the config's strategy and seed), and when
a search trial reports its final result (the exported architecture(s)), one retraining trial per
architecture (per ε for multi_complexity) and seed of ``retrain.seeds``. Every trial runs the same
command, ``python -m nni_asng trial`` (:mod:`nni_asng.app.trial`), which reads its parameters. A
search that fails starts no retraining; the experiment ends (DONE) once every trial that can run has
run. ``nni-asng launch`` writes ``<output>/launch/``::

    config.yaml      the complete nni-asng config the trials and the advisor read
    launch.yml       the NNI experiment config (``nnictl create --config launch.yml --port P`` runs it again)
    launch.json      experiment id, port, URL, manager pid (what ``--stop`` reads)
    trials.json      every trial with its parameters, status and final result, once the experiment ended
    results.json     per search: its final result and the test metric of every retraining

The same pipeline starts from a plain NNI YAML (``experiments/nni/*_pipeline.yml``) once the advisor is
registered with NNI (``nni-asng register`` runs ``nnictl algo register``): its ``tuner`` section names
``NniAsngPipeline`` with ``classArgs: {config: <nni-asng config>, overrides: [...]}``.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
import time
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ConfigError, LaunchError, UserError

__all__ = ['SearchSpec', 'search_specs', 'find_search', 'search_config', 'exported_count', 'planned_trials',
           'search_parameters', 'retrain_parameters', 'build_pipeline_config', 'launch_pipeline',
           'register_command', 'ADVISOR_CLASS', 'ADVISOR_NAME', 'SECURITY_NOTE', 'security_note']

Log = Callable[[str], None]
ADVISOR_CLASS = 'nni_asng.app.advisor.PipelineAdvisor'
ADVISOR_NAME = 'NniAsngPipeline'


def security_note(port: int) -> str:
    """What to tell whoever gets the web UI's URL."""
    return (f"NNI's web server listens on every network interface of this machine (port {port}) without "
            f'authentication; whoever reaches the port can read the experiment, stop it and kill its trials through '
            f'the REST API. Keep it private: block port {port} in the firewall and open the UI through an SSH tunnel '
            f'from your own machine (ssh -L {port}:localhost:{port} HOST, then http://localhost:{port}/).')


SECURITY_NOTE = security_note(8080)


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class SearchSpec:
    """One search trial of the sweep: its key (shown in the trial parameters), strategy and seed."""

    key: str
    strategy: str
    args: dict = field(default_factory=dict, hash=False, compare=False)
    seed: int = 0


def search_specs(cfg) -> list[SearchSpec]:
    """``launch.sweep``: every strategy with every seed (default: the config's own strategy and seed)."""
    from .registry import strategy_entry
    sweep = cfg.launch.sweep
    strategies = list(sweep.strategies) if sweep.strategies else [cfg.strategy]
    seeds = list(sweep.seeds) if sweep.seeds else [cfg.seed]
    names = [strategy_entry(s.name).name for s in strategies]
    specs = []
    for i, (strategy, name) in enumerate(zip(strategies, names)):
        label = name if names.count(name) == 1 else f'{name}{names[:i].count(name) + 1}'
        for seed in seeds:
            specs.append(SearchSpec(f'{label}-seed{seed}', name, dict(strategy.args), int(seed)))
    return specs


def find_search(cfg, key: str | None) -> SearchSpec:
    specs = search_specs(cfg)
    if key is None and len(specs) == 1:
        return specs[0]
    for spec in specs:
        if spec.key == key:
            return spec
    raise UserError(f'the trial belongs to search {key!r}, which the config\'s launch.sweep does not define '
                    f'(its searches: {", ".join(s.key for s in specs)}); was the config changed after the start?')


def search_config(cfg, spec: SearchSpec):
    """``cfg`` with the strategy, its arguments and the seed of ``spec`` (validated like any config)."""
    from .config import dump_config, parse_config
    if cfg.strategy.name == spec.strategy and dict(cfg.strategy.args) == spec.args and cfg.seed == spec.seed:
        return cfg
    raw = yaml.safe_load(dump_config(cfg))
    raw['strategy'] = {'name': spec.strategy, 'args': dict(spec.args)}
    raw['seed'] = spec.seed
    source = f'{cfg.source or "<config>"} (search {spec.key})'
    return parse_config(yaml.safe_dump(raw, sort_keys=False), source=source)


def exported_count(cfg) -> int:
    """How many architectures a search with ``cfg`` exports (multi_complexity: one per ε)."""
    from .registry import strategy_entry
    entry = strategy_entry(cfg.strategy.name)
    if entry.name != 'multi_complexity':
        return 1
    epsilons = cfg.strategy.args.get('epsilons')
    if epsilons is None:
        epsilons = entry.parameters()['epsilons'].default
    return len(list(epsilons))


def planned_trials(cfg) -> int:
    """Search trials + the retraining trials they start when they all succeed."""
    seeds = len(cfg.retrain.seeds)
    return sum(1 + exported_count(search_config(cfg, spec)) * seeds for spec in search_specs(cfg))


def _common(spec: SearchSpec, config_ref: str, overrides: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {'search': spec.key, 'strategy': spec.strategy}
    if spec.args:
        out['strategy_args'] = dict(spec.args)
    out['config'] = config_ref
    if overrides:
        out['overrides'] = list(overrides)
    return out


def search_parameters(spec: SearchSpec, config_ref: str, overrides: list[str] = ()) -> dict[str, Any]:
    common = _common(spec, config_ref, list(overrides))
    return {'phase': 'search', 'search': spec.key, 'strategy': spec.strategy, 'seed': spec.seed, **common}


def retrain_parameters(cfg, spec: SearchSpec, final: dict, config_ref: str,
                       overrides: list[str] = ()) -> list[dict[str, Any]]:
    """The retraining trials of a search's final result: every exported architecture x ``retrain.seeds``."""
    archs = final.get('architectures') or []
    epsilons = final.get('epsilons') or [None] * len(archs)
    common = _common(spec, config_ref, list(overrides))
    out = []
    for index, (arch, epsilon) in enumerate(zip(archs, epsilons)):
        for seed in cfg.retrain.seeds:
            params = {'phase': 'retrain', 'search': spec.key, 'strategy': spec.strategy, 'seed': int(seed),
                      'search_seed': spec.seed, 'index': index}
            if epsilon is not None:
                params['epsilon'] = epsilon
            params.update(architecture=arch, **{k: v for k, v in common.items() if k not in params})
            out.append(params)
    return out


# ---------------------------------------------------------------------------------------------- NNI config
def trial_command(cfg) -> str:
    platform = cfg.launch.training_service.get('platform')
    python = cfg.launch.python or (sys.executable if platform == 'local' else 'python3')
    return f'{shlex.quote(python)} -m nni_asng trial'


def build_pipeline_config(cfg, working_directory: str | Path, config_ref: str = 'config.yaml',
                          overrides: list[str] = ()) -> dict[str, Any]:
    """The nnictl-format experiment config of the pipeline (trial code directory and advisor: the folder of
    the written YAML, where ``config_ref`` lies)."""
    from .launch import experiment_config, training_service
    specs = search_specs(cfg)
    service, gpus = training_service(cfg)
    command = trial_command(cfg)
    if isinstance(service.get('worker'), dict):             # Kubeflow / FrameworkController: the worker runs it
        service['worker'] = {**service['worker'], 'command': command}
    seeds = sorted({s.seed for s in specs} | set(cfg.retrain.seeds))
    tuner_args: dict[str, Any] = {'config': config_ref}
    if overrides:
        tuner_args['overrides'] = list(overrides)
    # Shown in the web UI; the advisor hands out the trials (a search space is not sampled).
    search_space = {'phase': {'_type': 'choice', '_value': ['search', 'retrain']},
                    'strategy': {'_type': 'choice', '_value': sorted({s.strategy for s in specs})},
                    'seed': {'_type': 'choice', '_value': seeds}}
    return experiment_config(cfg, search_space=search_space, command=command, max_trials=planned_trials(cfg),
                             tuner={'className': ADVISOR_CLASS, 'codeDirectory': '.', 'classArgs': tuner_args},
                             service=service, gpus=gpus, working_directory=working_directory)


# ---------------------------------------------------------------------------------------------- the command
def _with_retrain_seeds(cfg, seeds):
    from .config import dump_config, parse_config
    if not seeds:
        return cfg
    raw = yaml.safe_load(dump_config(cfg))
    raw.setdefault('retrain', {})['seeds'] = list(seeds)
    try:
        return parse_config(yaml.safe_dump(raw, sort_keys=False), source=f'{cfg.source} (--seeds)')
    except ConfigError as err:
        raise LaunchError(f'--seeds: {err}') from None


def _check_inputs(cfg, log: Log) -> None:
    """Fail now, not in a trial, on data that cannot be read or a space that rejects its arguments."""
    from .assembly import quiet_warnings, search_data, search_space
    spec = search_specs(cfg)[0]
    first = search_config(cfg, spec)
    with quiet_warnings():
        data = search_data(first)
        search_space(first, data.info)
    log(f'{len(search_specs(cfg))} search(es) of space {cfg.space.name!r} on {data.sizes[0]} + {data.sizes[1]} '
        f'examples (D_x + D_θ), then {len(cfg.retrain.seeds)} retraining seed(s) per exported architecture')


def launch_pipeline(cfg, args, out: Path, folder: Path, port: int, log: Log = print) -> int:
    """``nni-asng launch CONFIG`` without ``--arch`` (see the module docstring)."""
    from .config import dump_config
    from .launch import announce_and_wait, start_experiment, stop_experiment
    from .outputs import prepare_output, write_json, write_text
    cfg = _with_retrain_seeds(cfg, getattr(args, 'seeds', None))
    _check_inputs(cfg, log)
    folder = prepare_output(folder, overwrite=args.overwrite, what='a launch')
    write_text(folder / 'config.yaml', dump_config(cfg))
    working = Path(cfg.launch.experiment_working_directory or (out / 'nni-experiments')).expanduser().resolve()
    nni_config = build_pipeline_config(cfg, working)
    specs = search_specs(cfg)
    header = (f'# NNI experiment: {len(specs)} search(es) of {cfg.name} ({", ".join(s.key for s in specs)}), then '
              f'the retraining of what they export.\n# Written by `nni-asng launch`; start it again with\n'
              f'#   nnictl create --config {folder.resolve() / "launch.yml"} --port {port}\n')
    write_text(folder / 'launch.yml', header + yaml.safe_dump(nni_config, sort_keys=False))

    experiment = start_experiment(folder / 'launch.yml', port, log=log)
    url = f'http://127.0.0.1:{port}/'
    pid = experiment._proc.pid if experiment._proc is not None else None   # noqa: SLF001 (NNI keeps it there)
    record = {'id': experiment.id, 'port': port, 'url': url, 'pid': pid, 'pipeline': True,
              'launch_yml': str(folder / 'launch.yml'), 'working_directory': str(working),
              'searches': [s.key for s in specs], 'planned_trials': nni_config['maxTrialNumber'],
              'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    write_json(folder / 'launch.json', record)
    trials = f'{len(specs)} search trial(s), up to {nni_config["maxTrialNumber"]} trial(s) with the retraining'
    jobs = announce_and_wait(experiment.id, trials, cfg, out, port, no_wait=args.no_wait, log=log,
                             wait=lambda: wait_for_pipeline(port, cfg.launch.poll_interval, log))
    if jobs is None:
        return 0
    write_json(folder / 'trials.json', jobs)
    results = summarize(jobs)
    write_json(folder / 'results.json', results)
    failed = [j for j in jobs if j.get('status') != 'SUCCEEDED']
    _print_results(results, cfg, log)
    if args.stop_when_done:
        stop_experiment(experiment.id, port, pid)
        log(f'experiment {experiment.id} stopped')
    if failed:
        from .launch import _failure
        for job in failed:
            job['parameters'] = {k: v for k, v in (job.get('parameters') or {}).items() if k != 'architecture'}
        raise LaunchError(f'{len(failed)} of {len(jobs)} trial(s) did not succeed (a failed search starts no '
                          'retraining):\n' + '\n'.join(_failure(j) for j in failed) +
                          (f'\nweb UI: {url}' if not args.stop_when_done else ''))
    if not args.stop_when_done:
        log(f'web UI: {url}   (stays up until `nnictl stop {experiment.id}`; {_short_note(port)})')
    return 0


def _short_note(port: int) -> str:
    return f'it is open to every interface without a password: ssh -L {port}:localhost:{port} HOST to reach it privately'


def describe(job: dict) -> str:
    p = job.get('parameters') or {}
    if p.get('phase') == 'retrain':
        eps = f' ε={p["epsilon"]:g}' if isinstance(p.get('epsilon'), (int, float)) else ''
        what = f'retrain {p.get("search")} arch {p.get("index", 0)}{eps} seed {p.get("seed")}'
    elif p.get('phase') == 'search':
        what = f'search {p.get("search")}'
    else:
        what = 'trial'
    return f'{what} (trial {job.get("trialJobId")})'


def wait_for_pipeline(port: int, interval: float, log: Log, timeout: float | None = None) -> list[dict]:
    """Poll the REST API until the experiment is DONE (or stopped / failed); log every status change."""
    from .jobs import TERMINAL_STATES
    from .launch import rest_get, trial_jobs
    seen: dict[str, str] = {}
    started = time.time()
    while True:
        try:
            jobs = trial_jobs(port)
            status = rest_get(port, '/check-status')
        except (urllib.error.URLError, OSError) as err:
            raise LaunchError(f'lost the NNI experiment on port {port}: {err}') from err
        for job in jobs:
            state, key = job.get('status'), job.get('trialJobId')
            if seen.get(key) != state:
                seen[key] = state
                log(f'{describe(job)} {state}{_final_text(job) if state == "SUCCEEDED" else ""}')
        state = status.get('status')
        if state == 'ERROR':
            errors = '; '.join(status.get('errors') or []) or 'no message'
            raise LaunchError(f'the NNI experiment failed (status ERROR): {errors}. The advisor\'s log is '
                              f'dispatcher.log in the experiment\'s log folder')
        if state in ('DONE', 'STOPPED', 'VIEWED') and all(j.get('status') in TERMINAL_STATES for j in jobs):
            return jobs
        if timeout is not None and time.time() - started > timeout:
            raise LaunchError(f'timed out after {timeout:.0f} s waiting for the experiment to end')
        time.sleep(interval)


def _final_text(job: dict) -> str:
    final = job.get('final')
    if not isinstance(final, dict):
        return ''
    phase = (job.get('parameters') or {}).get('phase')
    if phase == 'search':
        n = len(final.get('architectures') or [])
        return f': argmax on D_θ {final.get("default", float("nan")):.4f}, {n} architecture(s) exported'
    extra = f', {final["params"]:,} parameters' if isinstance(final.get('params'), int) else ''
    return f': test {final.get("default", float("nan")):.4f}{extra}'


def summarize(jobs: list[dict]) -> list[dict]:
    """Per search: its trial, status and final result, and its retraining trials with their test metrics."""
    searches: dict[str, dict] = {}
    for job in jobs:
        p = job.get('parameters') or {}
        key = p.get('search')
        if key is None:
            continue
        entry = searches.setdefault(key, {'search': key, 'strategy': p.get('strategy'), 'retrain': []})
        if p.get('phase') == 'search':
            final = job.get('final') if isinstance(job.get('final'), dict) else {}
            entry.update(seed=p.get('seed'), trial=job.get('trialJobId'), status=job.get('status'),
                         val_metric=final.get('default'), architecture_file=final.get('architecture_file'),
                         architectures=final.get('architectures'), epsilons=final.get('epsilons'))
        elif p.get('phase') == 'retrain':
            final = job.get('final') if isinstance(job.get('final'), dict) else {}
            entry['retrain'].append({'trial': job.get('trialJobId'), 'status': job.get('status'),
                                     'index': p.get('index', 0), 'epsilon': p.get('epsilon'), 'seed': p.get('seed'),
                                     'test_metric': final.get('default'), 'params': final.get('params'),
                                     **{k: v for k, v in final.items() if k not in ('default', 'params')}})
    for entry in searches.values():
        entry['retrain'].sort(key=lambda r: (r['index'], r['seed']))
    return list(searches.values())


def _print_results(results: list[dict], cfg, log: Log) -> None:
    from .registry import space_entry
    inpainting = space_entry(cfg.space.name).task == 'inpainting'
    log('')
    log('=' * 78)
    lines = []
    for entry in results:
        val = entry.get('val_metric')
        shown = f', argmax on D_θ {val:.4f}' if isinstance(val, (int, float)) else ''
        log(f'search {entry["search"]} ({entry.get("status", "not run")}{shown})')
        if entry.get('status') not in (None, 'SUCCEEDED'):
            log('  no retraining: the search did not succeed')
        for r in entry['retrain']:
            eps = f' ε={r["epsilon"]:g}' if isinstance(r.get('epsilon'), (int, float)) else ''
            metric = r.get('test_metric')
            if isinstance(metric, (int, float)):
                value = f'TEST PSNR {metric:.3f}' if inpainting else f'TEST ACCURACY {metric * 100:.2f}%'
                params = f' ({r["params"]:,} parameters)' if isinstance(r.get('params'), int) else ''
                text = f'{value}{params}'
                lines.append(f'{entry["search"]} arch {r["index"]}{eps} seed {r["seed"]}: {value}')
            else:
                text = r.get('status', '?')
            log(f'  retrain arch {r["index"]}{eps} seed {r["seed"]}: {text}')
    log('=' * 78)
    if lines:
        log('retrained: ' + '; '.join(lines))


# ---------------------------------------------------------------------------------------------- register
def algorithm_meta() -> dict[str, Any]:
    """What ``nnictl algo register --meta FILE`` needs to know about the advisor."""
    return {'algoType': 'advisor', 'builtinName': ADVISOR_NAME, 'className': ADVISOR_CLASS}


def register_command(unregister: bool = False, log: Log = print) -> int:
    """Register (or remove) the pipeline advisor with NNI's own ``nnictl algo register``."""
    import os
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


"""Search and retraining as ONE NNI experiment: ``nni-asng launch CONFIG`` (without ``--arch``).

The experiment's tuner is :class:`nni_asng.app.experiment.advisor.PipelineAdvisor`. It hands out one search trial
per entry of ``launch.sweep`` (strategies x seeds; default: the config's strategy and seed), and when
a search trial reports its final result (the exported architecture(s)), one retraining trial per
architecture (per ε for multi_complexity) and seed of ``retrain.seeds``. Every trial runs the same
command, ``python -m nni_asng trial`` (:mod:`nni_asng.app.experiment.trial`), which reads its parameters. A
search that fails starts no retraining; the experiment ends (DONE) once every trial that can run has
run. ``nni-asng launch`` writes ``<output>/launch/``::

    config.yaml      the complete nni-asng config the trials and the advisor read
    launch.yml       the NNI experiment config (``nnictl create --config launch.yml --port P`` runs it again)
    launch.json      experiment id, port, URL, manager pid (what ``--stop`` reads)
    trials.json      every trial with its parameters, status and final result, once the experiment ended
    results.json     per search: its final result and the test metric of every retraining

The same pipeline starts from a plain NNI YAML (``experiments/nni/*_pipeline.yml``) once the advisor is
registered with NNI (``nni-asng register`` runs ``nnictl algo register``): its ``tuner`` section names
``NniAsngPipeline`` with ``classArgs: {config: <nni-asng config>, overrides: [...]}``. The searches and the
parameters of the trials are planned by :mod:`.sweep`.
"""
from __future__ import annotations

import time
import urllib.error
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config.errors import ConfigError, LaunchError
from ..config.loading import dump_config, parse_config
from ..runners.assembly import preflight
from ..runners.jobs import TERMINAL_STATES, argmax_metric
from ..runners.outputs import prepare_output, write_json, write_text
from .advisor import ADVISOR_CLASS
from .manager import (announce_and_wait, experiment_config, rest_get, start_experiment, stop_experiment,
                      training_service, trial_command, trial_failure, trial_jobs)
from .sweep import planned_trials, search_config, search_specs
from .trial import copy_architectures
from .webui import trials_url

__all__ = ['build_pipeline_config', 'launch_pipeline', 'wait_for_pipeline', 'summarize']

Log = Callable[[str], None]


def build_pipeline_config(cfg, working_directory: str | Path, config_ref: str = 'config.yaml',
                          overrides: list[str] = ()) -> dict[str, Any]:
    """The nnictl-format experiment config of the pipeline (trial code directory and advisor: the folder of
    the written YAML, where ``config_ref`` lies)."""
    specs = search_specs(cfg)
    service, gpus = training_service(cfg)
    command = trial_command(cfg, 'trial')
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


def _with_retrain_seeds(cfg, seeds):
    if not seeds:
        return cfg
    raw = yaml.safe_load(dump_config(cfg))
    raw.setdefault('retrain', {})['seeds'] = list(seeds)
    try:
        return parse_config(yaml.safe_dump(raw, sort_keys=False), source=f'{cfg.source} (--seeds)')
    except ConfigError as err:
        raise LaunchError(f'--seeds: {err}') from None


def _check_inputs(cfg, log: Log) -> None:
    """Fail now, not in a trial, on data that cannot be read, a space or strategy that rejects its arguments."""
    specs = search_specs(cfg)
    parts = preflight(search_config(cfg, specs[0]))
    log(f'{len(specs)} search(es) of space {cfg.space.name!r} on {parts.data.sizes[0]} + {parts.data.sizes[1]} '
        f'examples (D_x + D_θ), then {len(cfg.retrain.seeds)} retraining seed(s) per exported architecture')


def launch_pipeline(cfg, args, out: Path, folder: Path, port: int, log: Log = print) -> int:
    """``nni-asng launch CONFIG`` without ``--arch`` (see the module docstring)."""
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
    record = {'id': experiment.id, 'port': port, 'url': url, 'trials_url': trials_url(url), 'pid': pid,
              'pipeline': True, 'launch_yml': str(folder / 'launch.yml'), 'working_directory': str(working),
              'searches': [s.key for s in specs], 'planned_trials': nni_config['maxTrialNumber'],
              'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    write_json(folder / 'launch.json', record)
    log(f'trial table with phase, search, strategy and seed as columns: {record["trials_url"]}')
    trials = f'{len(specs)} search trial(s), up to {nni_config["maxTrialNumber"]} trial(s) with the retraining'
    jobs = announce_and_wait(experiment.id, trials, cfg, out, port, no_wait=args.no_wait, log=log,
                             wait=lambda: wait_for_pipeline(port, cfg.launch.poll_interval, log))
    if jobs is None:
        return 0
    write_json(folder / 'trials.json', jobs)
    results = summarize(jobs)
    copies = copy_architectures(jobs, folder / 'architectures', log)     # from trials on any machine
    for entry in results:
        if entry['search'] in copies:
            entry['architecture_copy'] = str(copies[entry['search']])
    write_json(folder / 'results.json', results)
    failed = [j for j in jobs if j.get('status') != 'SUCCEEDED']
    _print_results(results, cfg, log)
    if args.stop_when_done:
        stop_experiment(experiment.id, port, pid)
        log(f'experiment {experiment.id} stopped')
    if failed:
        for job in failed:
            job['parameters'] = {k: v for k, v in (job.get('parameters') or {}).items() if k != 'architecture'}
        raise LaunchError(f'{len(failed)} of {len(jobs)} trial(s) did not succeed (a failed search starts no '
                          'retraining):\n' + '\n'.join(trial_failure(j) for j in failed) +
                          (f'\nweb UI: {url}' if not args.stop_when_done else ''))
    if not args.stop_when_done:
        log(f'web UI: {trials_url(url)}   (stays up until `nnictl stop {experiment.id}`; {_short_note(port)})')
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
        n, value = len(final.get('architectures') or []), argmax_metric(final)
        shown = f'argmax on D_θ {value:.4f}, ' if value is not None else ''
        return f': {shown}{n} architecture(s) exported'
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
                         val_metric=argmax_metric(final), architecture_file=final.get('architecture_file'),
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
    inpainting = cfg.task == 'inpainting'
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

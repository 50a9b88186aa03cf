"""``nni-asng``: search, retrain, run and launch experiments described by YAML configs.

Examples (a CONFIG is a YAML file or the name of a config shipped with nni-asng, see `nni-asng configs`)::

    nni-asng configs                                            # the shipped configs
    nni-asng configs --copy asng_enas_fashion_mnist             # ./asng_enas_fashion_mnist.yaml, to edit
    nni-asng check  asng_enas_fashion_mnist
    nni-asng search asng_enas_fashion_mnist --output runs/asng --set search.epochs=2
    nni-asng search asng_enas_fashion_mnist --output runs/asng --resume
    nni-asng retrain asng_enas_fashion_mnist --arch runs/asng/architecture.json --seed 1
    nni-asng run    asng_enas_fashion_mnist                     # search + retrain, prints accuracy
    nni-asng launch asng_enas_fashion_mnist                     # search + retrain as NNI trials
    nni-asng launch asng_enas_fashion_mnist --arch runs/asng/architecture.json --port 8081
    nni-asng register                                           # NNI YAMLs: tuner NniAsngPipeline
    nni-asng launch asng_enas_fashion_mnist --stop
    nni-asng tabulate my_table.yaml                             # a tabular benchmark (resumable)

User errors (bad config, missing dataset, unknown names, wrong architecture file, busy port, failed trials)
print one message and exit with a non-zero status; ``--debug`` adds the traceback.

The commands' code is imported when a command runs (NNI, torch and Lightning take seconds to load), so
``nni-asng --help`` answers at once.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Sequence

from ..dependencies import missing_dependency
from .config.errors import SearchInterrupted, UserError, user_error_types
from .runners.quiet import quiet_library_logs, quiet_warnings

__all__ = ['main', 'build_parser']

EXIT_INTERRUPTED = 130    # 128 + SIGINT, as shells report a command stopped by Ctrl-C
EXIT_SIGTERM = 143        # 128 + SIGTERM


def _print(message: str = '') -> None:
    print(message, flush=True)


def _error(message: str) -> None:
    print(f'nni-asng: error: {message}', file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='nni-asng', description='Probabilistic one-shot NAS on NNI 3.0: search, '
                                     'retrain and launch retraining trials from a YAML experiment config.')
    parser.add_argument('--debug', action='store_true', help='show tracebacks and debug logs')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    def common(p: argparse.ArgumentParser, output: bool = True) -> None:
        p.add_argument('config', metavar='CONFIG', help='experiment YAML, or the name of a shipped config '
                                                            '(`nni-asng configs` lists them)')
        p.add_argument('--set', dest='overrides', action='append', default=[], metavar='KEY.PATH=VALUE',
                       help='override a config value, e.g. --set search.epochs=2 (repeatable)')
        if output:
            p.add_argument('--output', '-o', metavar='DIR', help='output folder (default: output.dir of the config, '
                                                                 'or runs/<name>)')
        p.add_argument('--debug', action='store_true', default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser('check', help='validate a config (data, space and strategy built, nothing trained) and print it '
                                     'with all defaults')
    common(p, output=False)

    p = sub.add_parser('configs', help='list the configs shipped with nni-asng; --copy one to edit')
    p.add_argument('--copy', metavar='NAME', help='copy the shipped config NAME into --to (default: .)')
    p.add_argument('--to', metavar='PATH', default='.', help='folder or file name of the copy (default: .)')
    p.add_argument('--overwrite', action='store_true', help='replace an existing file')
    p.add_argument('--debug', action='store_true', default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser('list', help='list the known spaces and strategies')
    p.add_argument('--debug', action='store_true', default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser('search', help='run the one-shot search and export the architecture')
    common(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument('--resume', action='store_true', help='continue from OUTPUT/checkpoints/last.ckpt')
    group.add_argument('--overwrite', action='store_true', help='delete earlier results in the output folder')

    p = sub.add_parser('retrain', help='train the fixed network of an exported architecture')
    common(p)
    p.add_argument('--arch', metavar='ARCH.json', help='architecture.json / architectures.json of a search '
                                                       '(inside an NNI trial: taken from the trial parameters)')
    p.add_argument('--index', type=int, metavar='I', help='which architecture of an architectures.json')
    p.add_argument('--seed', type=int, metavar='N', help='training seed (default: the first of retrain.seeds)')
    p.add_argument('--base', metavar='DIR', help=argparse.SUPPRESS)   # where trial parameters' paths are relative to
    p.add_argument('--overwrite', action='store_true', help='delete earlier results in the output folder')

    p = sub.add_parser('run', help='search, then retrain the found architecture(s) and print the test metric')
    common(p)
    p.add_argument('--overwrite', action='store_true', help='delete earlier results in the output folder')

    p = sub.add_parser('launch', help='search and retrain as trials of ONE NNI experiment (web UI); with --arch: '
                                      'only retrain the given architectures')
    common(p)
    p.add_argument('--arch', action='append', default=[], metavar='ARCH.json',
                   help='retrain these architecture file(s) only (no search trials)')
    p.add_argument('--seeds', type=int, nargs='+', metavar='N', help='retraining seeds (default: retrain.seeds)')
    p.add_argument('--port', type=int, help='web UI / REST port (default: launch.port)')
    p.add_argument('--no-wait', action='store_true', help='return once the experiment runs')
    p.add_argument('--stop-when-done', action='store_true', help='stop the experiment when all trials ended')
    p.add_argument('--stop', action='store_true', help='stop the experiment launched into OUTPUT')
    p.add_argument('--overwrite', action='store_true', help='replace an earlier launch folder')

    p = sub.add_parser('trial', help='one trial of the pipeline that `nni-asng launch` starts (NNI runs it; its '
                                     'parameters say search or retrain)')
    p.add_argument('--base', metavar='DIR', help='folder the parameters\' config path is relative to (default: .)')
    p.add_argument('--debug', action='store_true', default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser('register', help=f'register the pipeline advisor with NNI (`nnictl algo register`) so NNI '
                                        f'experiment YAMLs can name it as tuner NniAsngPipeline')
    p.add_argument('--unregister', action='store_true', help='remove the registration')
    p.add_argument('--debug', action='store_true', default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    p = sub.add_parser('tabulate', help='train every architecture of a small cell space: a tabular benchmark '
                                        '(resumable: run it again to continue)')
    common(p)
    p.add_argument('--processes', type=int, metavar='N', help='worker processes (default: tabular.processes)')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), help='default: retrain.device')
    p.add_argument('--max-jobs', type=int, metavar='N', help='train at most N more rows, then stop')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, 'debug', False))
    _configure_output(debug)
    try:
        with contextlib.nullcontext() if debug else quiet_warnings():
            return _dispatch(args)
    except SearchInterrupted as err:
        if getattr(err, 'rank', 0) == 0:
            print(f'nni-asng: {err}', file=sys.stderr, flush=True)
            if getattr(err, 'resume_command', None):
                print(f'nni-asng: continue the search with:\n  {err.resume_command}', file=sys.stderr, flush=True)
        return err.exit_code
    except KeyboardInterrupt:
        _error('interrupted; results written so far are kept')
        return EXIT_INTERRUPTED
    except SystemExit as err:
        # Lightning ends a run with SystemExit after a hard Ctrl-C (sys.exit(1)) and on a SIGTERM it handled
        # itself (SIGTERMException, exit code None).
        from pytorch_lightning.utilities.exceptions import SIGTERMException  # lazy: --help stays fast
        if err.code not in (None, 0, 1) and not isinstance(err, SIGTERMException):
            raise
        _error('interrupted; the last checkpoint and the results written so far are kept')
        return EXIT_SIGTERM if isinstance(err, SIGTERMException) else EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the top level decides how errors are shown
        clear = missing_dependency(err, f'nni-asng {args.command}')
        if clear is not None:
            if debug:
                traceback.print_exc()
            _error(str(clear))
            return 2
        if isinstance(err, UserError) or isinstance(err, user_error_types()):   # the first needs no NNI
            if debug:
                traceback.print_exc()
            message = str(err)
            if type(err).__name__ == 'DatasetNotFoundError':
                message += '\nIn nni-asng: set data.root in the config, or add --set data.root=PATH.'
            _error(message)
            return getattr(err, 'exit_code', 2)
        raise


def _configure_output(debug: bool) -> None:
    """Our messages on stdout; NNI's and Lightning's chatter (their log records and the warnings known to be
    harmless, see :func:`main`) only with --debug."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    if not debug:
        quiet_library_logs()


def _load(args):
    from .config.loading import load_config  # lazy: --help stays fast
    return load_config(args.config, args.overrides)


def _dispatch(args) -> int:
    command = args.command
    if command == 'list':
        return _list()
    if command == 'configs':
        return _configs(args)
    if command == 'trial':
        from .experiment.trial import run_trial  # lazy: --help stays fast
        return run_trial(args.base, log=_print)
    if command == 'register':
        from .experiment.register import register_command  # lazy: --help stays fast
        return register_command(args.unregister, log=_print)
    cfg = _load(args)
    if command == 'check':
        from .config.loading import dump_config  # lazy: --help stays fast
        from .runners.assembly import preflight  # lazy: --help stays fast
        parts = preflight(cfg)
        _print(f'# {args.config}: valid; data, space and strategy built as a search builds them '
               f'({parts.data.sizes[0]} + {parts.data.sizes[1]} examples, D_x + D_θ)')
        _print(dump_config(cfg).rstrip())
        return 0
    if command == 'search':
        return _search(cfg, args)
    if command == 'retrain':
        return _retrain(cfg, args)
    if command == 'run':
        return _run(cfg, args)
    if command == 'launch':
        from .experiment.launch import launch_command  # lazy: --help stays fast
        return launch_command(cfg, args, log=_print)
    if command == 'tabulate':
        from .runners.tabulate import build_table  # lazy: --help stays fast
        result = build_table(cfg, args.output or cfg.output_dir, processes=args.processes, device=args.device,
                             max_jobs=args.max_jobs, log=_print)
        _print(f'{result.rows}/{result.jobs} rows in {result.output}' + ('' if result.done else
                                                                          ' (run the same command to continue)'))
        return 0
    raise AssertionError(command)


def _list() -> int:
    from .config.registry import SPACES, STRATEGIES  # lazy: --help stays fast
    _print('spaces:')
    for e in SPACES.values():
        _print(f'  {e.name:24s} {e.task:15s} {e.description}')
    _print('strategies:')
    for e in STRATEGIES.values():
        _print(f'  {e.name:24s} {e.description}')
    return 0


def _configs(args) -> int:
    from .config.builtin import builtin_description, builtin_names, copy_builtin  # no NNI needed
    if args.copy:
        target = copy_builtin(args.copy, args.to, overwrite=args.overwrite)
        _print(f'wrote {target}; edit it, then: nni-asng run {target}')
        return 0
    _print('configs shipped with nni-asng (use the name as CONFIG, or --copy NAME to edit one):')
    for name in builtin_names():
        _print(f'  {name:38s} {builtin_description(name)}')
    return 0


def _resume_command(cfg, args) -> str:
    """The command line that continues an interrupted search of ``args``."""
    output = args.output if args.output else str(cfg.output_dir)
    words = ['nni-asng', 'search', args.config, '--output', output, '--resume']
    for item in args.overrides:
        words += ['--set', item]
    return shlex.join(str(w) for w in words)


def _search(cfg, args) -> int:
    from .runners.runs import run_search  # lazy: --help stays fast
    try:
        result = run_search(cfg, args.output, resume=args.resume, overwrite=args.overwrite, log=_print)
    except SearchInterrupted as err:
        err.resume_command = _resume_command(cfg, args)
        raise
    if result.rank == 0:
        _print(f'results in {result.output}')
    return 0


def _retrain(cfg, args) -> int:
    from ..evaluators.classification import in_nni_trial  # lazy: --help stays fast
    from .runners.nni_trial import TrialChannel  # lazy: --help stays fast
    from .runners.runs import run_retrain  # lazy: --help stays fast
    arch, seed, index, output, trial = args.arch, args.seed, args.index, args.output, in_nni_trial()
    if trial:
        record = TrialChannel().record       # the trial's own parameters (see nni_trial._use_recorded_parameters)
        params = (record or {}).get('parameters') or {}
        base = Path(args.base) if args.base else Path.cwd()
        if arch is None and 'arch' in params:
            arch = str(base / params['arch'])
        if seed is None and 'seed' in params:
            seed = int(params['seed'])
        if index is None and 'index' in params:
            index = int(params['index'])
        if output is None:
            output = Path(os.environ.get('NNI_OUTPUT_DIR', '.')) / 'retrain'
    if arch is None:
        raise UserError('retrain needs --arch ARCH.json (the architecture.json written by `nni-asng search`)')
    result = run_retrain(cfg, arch, seed=seed, index=index, output=output, overwrite=args.overwrite or trial,
                         log=_print, report_to_nni=trial)
    _print(f'test {result.metric_name}: {result.metric:.4f} ({result.params:,} parameters); '
           f'results in {result.output / "retrain.json"}')
    return 0


def _run(cfg, args) -> int:
    from .runners.runs import run_retrain, run_search  # lazy: --help stays fast
    try:
        result = run_search(cfg, args.output, overwrite=args.overwrite, log=_print)
    except SearchInterrupted as err:
        err.resume_command = _resume_command(cfg, args) + '   # then: nni-asng retrain ... --arch OUTPUT/architecture.json'
        raise
    if result.rank:                 # a DDP worker of the search: rank 0 retrains
        return 0
    seed = cfg.retrain.seeds[0]
    lines = []
    for index in range(len(result.architectures)):
        many = len(result.architectures) > 1
        folder = result.output / (f'retrain_arch{index}_seed{seed}' if many else f'retrain_seed{seed}')
        r = run_retrain(cfg, result.architecture_file, seed=seed, index=index if many else None, output=folder,
                        overwrite=True, log=_print)
        lines.append((index, r))
    _print('')
    _print('=' * 72)
    for index, r in lines:
        what = f'architecture {index}: ' if len(lines) > 1 else ''
        if r.metric_name == 'acc':
            _print(f'{what}TEST ACCURACY {r.metric * 100:.2f}%  ({r.params:,} parameters, test loss '
                   f'{r.metrics.get("loss", float("nan")):.4f})')
        else:
            _print(f'{what}TEST {r.metric_name.upper()} {r.metric:.3f}  ({r.params:,} parameters; '
                   + ', '.join(f'{k} {v:.4f}' for k, v in r.metrics.items() if k != r.metric_name) + ')')
    _print(f'search {result.wall_time:.0f} s, retrain {sum(r.wall_time for _, r in lines):.0f} s; '
           f'results in {result.output}')
    _print('=' * 72)
    return 0


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())

"""Stop the real ``nni-asng search`` mid-epoch, resume it, and compare with an uninterrupted run.

Each run that gets a signal is ``python -m nni_asng search CFG --output DIR`` in a subprocess on real Fashion-MNIST
(ASNG on a 2-channel NAS-Bench-201 cell, 24 steps per epoch, 2 epochs, a checkpoint every 3 steps):

* graceful: SIGTERM in epoch 0 (exit 143), resume, SIGINT in epoch 1 of the resumed run (exit
  130), resume again to the end. A signal finishes the current step and saves ``last.ckpt``;
* hard crash: SIGKILL in epoch 1; the resume starts from the last periodic checkpoint.

The comparison with the uninterrupted run of the same config and seed (the same command, run in process through
``nni_asng.app.cli.main``: it saves a subprocess's seconds of imports; so does each last resume, which gets no
signal) is BIT FOR BIT, not within a
tolerance: the complete search state in the final ``last.ckpt`` (θ, ASNG's s, γ, Δ, its sampling
RNG; equal SHA-256 digests), every supernet weight, ``history.json``, ``architecture.json``,
``probabilities.json`` and the per-step logged trajectory (entropy, convergence, Δ of every step).
The measured max |Δθ| and max |Δweight| are printed (``pytest -s``); both are 0. The last test does
the same for AdvantageNAS and multi-complexity in process (a stop inside an epoch through
``run_search``, without a subprocess).
"""
from __future__ import annotations

import csv
import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_harness import CliProcess, checkpoint_step, interrupt_after, needs_fashion_mnist, write_config
from nni_asng.oneshot.checkpoint import from_checkpoint
from nni_asng.oneshot.lightning import state_digest

pytestmark = needs_fashion_mnist

STEPS_PER_EPOCH = 24                  # 768 images -> D_x 384 -> 24 batches of 16
EPOCHS = 2
TOTAL = STEPS_PER_EPOCH * EPOCHS
SETTINGS = dict(data__limit=768, search__epochs=EPOCHS)


@pytest.fixture(scope='module')
def config(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp('config') / 'tiny.yaml', **SETTINGS)


def search_in_process(config: Path, out: Path, *extra: str) -> None:
    """``nni-asng search CONFIG --output OUT [EXTRA]`` run to the end, in process (NNI's experiment manifest goes to
    tmp): the runs that get no signal need no process of their own."""
    from nni.tools.nnictl.config_utils import Experiments

    from nni_asng.app.cli import main
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Experiments.__init__, '__defaults__', (str(out.parent / 'nni-home'),))
        assert main(['search', str(config), '--output', str(out), *extra]) == 0


@pytest.fixture(scope='module')
def uninterrupted(config, tmp_path_factory) -> Path:
    """``nni-asng search CONFIG`` run to the end, in process."""
    out = tmp_path_factory.mktemp('uninterrupted') / 'run'
    search_in_process(config, out)
    assert json.loads((out / 'summary.json').read_text())['global_step'] == TOTAL
    return out


def ckpt_of(out: Path) -> Path:
    return out / 'checkpoints' / 'last.ckpt'


def summary_of(out: Path) -> dict:
    return json.loads((out / 'summary.json').read_text())


def resume(config: Path, out: Path, home: Path, logs: Path) -> CliProcess:
    return CliProcess('search', config, '--output', out, '--resume', home=home, logs=logs)


def logged_trajectory(out: Path) -> dict[int, tuple]:
    """step -> (entropy, convergence, Δ) logged at that step, from every metrics.csv of the run (the
    interrupted and the resumed parts log into separate folders); a step logged twice must agree."""
    keys = ('arch/entropy', 'arch/convergence', 'arch/delta')
    steps: dict[int, tuple] = {}
    for path in sorted((out / 'logs').rglob('metrics.csv')):
        with open(path, newline='') as f:
            for row in csv.DictReader(f):
                if not row.get('arch/entropy'):
                    continue
                values = tuple(row[k] for k in keys)
                step = int(row['step'])
                assert steps.setdefault(step, values) == values, f'step {step} logged twice with different values'
    return steps


def compare(out: Path, reference: Path, what: str, stopped_at: list[int]) -> dict[str, float]:
    """Assert that ``out`` ended exactly as ``reference``; return the measured differences."""
    a = torch.load(ckpt_of(out), map_location='cpu', weights_only=True)
    b = torch.load(ckpt_of(reference), map_location='cpu', weights_only=True)
    assert a['global_step'] == b['global_step'] == TOTAL
    state_a, state_b = from_checkpoint(a['nni_asng']), from_checkpoint(b['nni_asng'])
    theta_a = np.asarray(state_a['searcher']['optimizer']['distribution']['theta'])
    theta_b = np.asarray(state_b['searcher']['optimizer']['distribution']['theta'])
    d_theta = float(np.max(np.abs(theta_a - theta_b)))
    d_weights = max(float((a['state_dict'][k].double() - b['state_dict'][k].double()).abs().max())
                    for k in b['state_dict'] if b['state_dict'][k].numel())
    assert set(a['state_dict']) == set(b['state_dict'])
    traj_a, traj_b = logged_trajectory(out), logged_trajectory(reference)
    common = sorted(set(traj_a) & set(traj_b))
    print(f'\n[resume equivalence] {what}: stopped after step(s) {stopped_at} of {TOTAL}; final max |Δθ| = '
          f'{d_theta:.3g}, max |Δweight| = {d_weights:.3g}; {len(common)} logged steps compared')

    np.testing.assert_array_equal(theta_a, theta_b)
    assert state_a['searcher']['optimizer']['updates'] == state_b['searcher']['optimizer']['updates'] > 0
    assert state_digest(state_a['searcher']) == state_digest(state_b['searcher']), 's, γ, Δ or the sampler RNG differ'
    assert d_weights == 0.0
    assert state_a['history'] == state_b['history']
    for name in ('history.json', 'architecture.json', 'probabilities.json'):
        assert json.loads((out / name).read_text()) == json.loads((reference / name).read_text()), name
    assert len(traj_b) == TOTAL
    first_resumed = max(stopped_at) + 1
    assert set(range(first_resumed, TOTAL)) <= set(common), 'every step after the last resume is logged'
    assert {s: traj_a[s] for s in common} == {s: traj_b[s] for s in common}
    return {'theta': d_theta, 'weights': d_weights}


@pytest.mark.slow
def test_sigterm_then_sigint_mid_epoch_resume_to_the_identical_trajectory(config, uninterrupted, tmp_path):
    out, home = tmp_path / 'run', tmp_path / 'home'

    with CliProcess('search', config, '--output', out, home=home, logs=tmp_path / 'log1') as cli:
        code = interrupt_after(cli, ckpt_of(out), 6, signal.SIGTERM)
        assert code == 143, cli.output()
        assert 'SIGTERM received' in cli.stderr and 'Traceback' not in cli.stderr
        assert f'--output {out} --resume' in cli.stderr, 'the resume command is printed'
    first = summary_of(out)
    assert first['status'] == 'interrupted' and 'SIGTERM' in first['error']
    assert 0 < first['global_step'] < STEPS_PER_EPOCH, 'stopped inside epoch 0'
    assert checkpoint_step(ckpt_of(out)) == first['global_step'], 'the checkpoint is the step it stopped after'
    assert not (out / 'architecture.json').exists()

    with resume(config, out, home, tmp_path / 'log2') as cli:
        code = interrupt_after(cli, ckpt_of(out), STEPS_PER_EPOCH + 8, signal.SIGINT)
        assert code == 130, cli.output()
        assert 'SIGINT received' in cli.stderr and 'Traceback' not in cli.stderr
    second = summary_of(out)
    assert second['status'] == 'interrupted' and second['resumed'] and 'SIGINT' in second['error']
    assert STEPS_PER_EPOCH < second['global_step'] < TOTAL and second['global_step'] % STEPS_PER_EPOCH
    assert checkpoint_step(ckpt_of(out)) == second['global_step']

    search_in_process(config, out, '--resume')          # the last resume, to the end
    final = summary_of(out)
    assert final['status'] == 'done' and final['resumed'] and final['global_step'] == TOTAL
    diff = compare(out, uninterrupted, 'SIGTERM + SIGINT', [first['global_step'], second['global_step']])
    assert diff == {'theta': 0.0, 'weights': 0.0}


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_from_the_last_periodic_checkpoint(config, uninterrupted, tmp_path):
    out, home = tmp_path / 'run', tmp_path / 'home'
    with CliProcess('search', config, '--output', out, home=home, logs=tmp_path / 'log1') as cli:
        code = interrupt_after(cli, ckpt_of(out), STEPS_PER_EPOCH + 5, signal.SIGKILL)
        assert code == -signal.SIGKILL
    step = checkpoint_step(ckpt_of(out))          # whatever the last periodic checkpoint was
    assert step is not None and step % 3 == 0, 'a complete periodic checkpoint survives the crash'
    assert STEPS_PER_EPOCH < step < TOTAL and step % STEPS_PER_EPOCH, 'inside epoch 1'
    assert summary_of(out)['status'] == 'running', 'a killed process records nothing more'
    assert not (out / 'architecture.json').exists()

    search_in_process(config, out, '--resume')
    assert summary_of(out)['status'] == 'done'
    diff = compare(out, uninterrupted, 'SIGKILL', [step])
    assert diff == {'theta': 0.0, 'weights': 0.0}
    assert math.isfinite(json.loads((out / 'history.json').read_text())[-1]['entropy'])


# ---------------------------------------------------------------------------------------------- every strategy
class _StopAfter:
    """A callback that makes the search's GracefulStop act as if a signal came during batch ``n`` (counted
    over the whole run), so every strategy stops inside an epoch at a known step without a subprocess."""

    def __new__(cls, n: int):
        from pytorch_lightning.callbacks import Callback

        from nni_asng.app.runners.stopping import GracefulStop

        class StopAfter(Callback):
            def __init__(self):
                self.seen = 0

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self.seen += 1
                if self.seen == n:
                    for callback in trainer.callbacks:
                        if isinstance(callback, GracefulStop):
                            callback.requested = 'SIGTERM'
        return StopAfter()


@pytest.fixture
def isolated_nni(tmp_path, monkeypatch):
    from nni.tools.nnictl.config_utils import Experiments
    monkeypatch.setattr(Experiments.__init__, '__defaults__', (str(tmp_path / 'nni-home'),))


@pytest.mark.parametrize('name, args', [
    ('advantage_nas', {'warmup_epochs': 0, 'learning_rate': 0.05}),
    ('multi_complexity', {'weight_epochs': 1, 'theta_epochs': 1, 'epsilons': [0.0, 0.5]}),
])
def test_every_strategy_resumes_mid_epoch_bit_for_bit(name, args, tmp_path, monkeypatch, isolated_nni):
    """In process, through ``run_search``: a stop requested during batch 11 of 16 acts after batch 12 (epoch 1,
    batch index 3; for multi-complexity inside its θ-only stage); resume and compare the final search state
    (θ/logits, Adam moments and EMA advantages, or the N distributions; RNGs) and weights with an
    uninterrupted run. ASNG is covered through the real CLI above; the searcher of PDAS/SNG is ASNG's."""
    from nni_asng.app import SearchInterrupted, load_config
    from nni_asng.app.runners import assembly, runs
    config = write_config(tmp_path / f'{name}.yaml', data__limit=256, search__epochs=2, strategy__name=name,
                          strategy__args=args)
    cfg = load_config(config)
    make_evaluator = assembly.search_evaluator
    stop: list = []
    monkeypatch.setattr(assembly, 'search_evaluator', lambda *a, callbacks, **k: make_evaluator(
        *a, callbacks=callbacks + stop, **k))
    quiet = lambda message: None  # noqa: E731
    runs.run_search(cfg, tmp_path / 'a', log=quiet)
    stop.append(_StopAfter(11))
    with pytest.raises(SearchInterrupted):
        runs.run_search(cfg, tmp_path / 'b', log=quiet)
    stop.clear()
    step = checkpoint_step(ckpt_of(tmp_path / 'b'))
    loops = torch.load(ckpt_of(tmp_path / 'b'), map_location='cpu', weights_only=True)['loops']['fit_loop']
    assert [s['epoch'] for s in loops['state_dict']['combined_loader']] == [1, 1]
    assert [s['batches'] for s in loops['state_dict']['combined_loader']] == [4, 4], 'stopped inside epoch 1'
    runs.run_search(cfg, tmp_path / 'b', resume=True, log=quiet)

    a = torch.load(ckpt_of(tmp_path / 'a'), map_location='cpu', weights_only=True)
    b = torch.load(ckpt_of(tmp_path / 'b'), map_location='cpu', weights_only=True)
    state_a, state_b = from_checkpoint(a['nni_asng']), from_checkpoint(b['nni_asng'])
    d_weights = max(float((a['state_dict'][k].double() - b['state_dict'][k].double()).abs().max())
                    for k in a['state_dict'] if a['state_dict'][k].numel())
    print(f'\n[resume equivalence] {name}: stopped at global step {step}, search state digests equal: '
          f'{state_digest(state_a["searcher"]) == state_digest(state_b["searcher"])}, max |Δweight| = {d_weights:.3g}')
    assert a['global_step'] == b['global_step'] and step is not None
    assert state_digest(state_a['searcher']) == state_digest(state_b['searcher'])
    assert state_a['history'] == state_b['history'] and len(state_a['history']) == 2
    assert d_weights == 0.0


class _Trainer:
    """What GracefulStop reads of a trainer (one process)."""
    world_size, current_epoch, global_step, received_sigterm = 1, 3, 40, False

    def __init__(self, last: bool):
        self.is_last_batch = last
        self.saved: list[str] = []

    def save_checkpoint(self, path: str) -> None:
        self.saved.append(path)


@pytest.mark.parametrize('last', [False, True])
def test_a_stop_in_an_epochs_last_step_waits_for_its_end(tmp_path, last):
    """A signal during an epoch's last step stops at the epoch's end, after the callbacks listed before GracefulStop
    (an NNI trial's report of that epoch) ran: a resumed run starts at the next epoch and would never report it.
    Elsewhere it stops right after the step."""
    from nni_asng.app.config.errors import SearchInterrupted
    from nni_asng.app.runners.stopping import GracefulStop
    stop, trainer = GracefulStop(tmp_path / 'last.ckpt', announce=False), _Trainer(last)
    stop.requested = 'SIGTERM'
    if not last:
        with pytest.raises(SearchInterrupted):
            stop.on_train_batch_end(trainer, None, None, None, 7)
        assert trainer.saved == [str(tmp_path / 'last.ckpt')]
        return
    stop.on_train_batch_end(trainer, None, None, None, 7)
    assert trainer.saved == [] and not stop.stopped
    with pytest.raises(SearchInterrupted):
        stop.on_train_epoch_end(trainer, None)
    assert trainer.saved == [str(tmp_path / 'last.ckpt')] and stop.stopped


def test_the_stop_is_the_last_callback_of_a_search():
    """runs.py lists GracefulStop after the trial reporter, so the epoch's report comes before a stop at its end."""
    source = (Path(__file__).resolve().parents[1] / 'nni_asng' / 'app' / 'runners' / 'runs.py').read_text()
    reporter, stop = source.index('callbacks.append(assembly.trial_reporter('), source.index('callbacks.append(stop)')
    assert reporter < stop

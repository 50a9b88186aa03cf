"""Do the strategies decide before the weights have learned anything? (issue: "Searches that wait for their weights")

A space where the candidate that is best early is not the best one: two ``LayerChoice`` s in sequence, each
among ``zero`` (its output is all zeros), ``identity`` and ``linear``, then a linear classifier. The labels are
a linear function of the 16 input features (4 classes), so any path without ``zero`` can fit them and a path
with ``zero`` stays at chance. At initialisation ``zero`` has the lowest loss (constant logits: ln 4, while a
random classifier on the features does worse), so a strategy that ranks architectures before the weights have
trained picks ``zero``. Searches run through ``NasExperiment`` with NNI's default ``Classification`` evaluator
(Adam, learning rate 1e-3), 32 weight steps per epoch, and the strategy's default arguments but the warm-up.

    python experiments/premature_decisions.py --epochs 3 10 --seeds 6 --warmup 0 0.5
    python experiments/premature_decisions.py --strategies ASNG --epochs 10 --seeds 3 --warmup 0.25

Prints, per strategy, warm-up and epochs, in how many seeds the export avoids ``zero`` on both choices
(MultiComplexity: every one of its exports, one per ε; its "warm-up" is its weight stage, see make_strategy).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
import warnings
from pathlib import Path

import nni
import torch
import torch.nn as nn
from torch.utils.data import Dataset

STRATEGIES = ('ASNG', 'SNG', 'PDAS', 'AdvantageNAS', 'Reinforce', 'MultiComplexity')
GOOD = ('identity', 'linear')
FEATURES, CLASSES = 16, 4


@nni.trace
class LinearTeacher(Dataset):
    """``n`` normal feature vectors of standard deviation ``scale``; the label is the argmax of a fixed random
    linear map (seed 1234). A larger scale makes a random classifier's loss larger, so ``zero`` stays the
    best candidate for longer."""

    def __init__(self, n: int, seed: int, scale: float = 1.0):
        teacher = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(1234))
        self.x = scale * torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))
        self.y = (self.x @ teacher).argmax(1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Zero(nn.Module):
    """All zeros shaped like the input: the loss is lowest with it while the classifier is still random."""

    def forward(self, x):
        return x * 0.0


def premature_space():
    """The two-choice space described in the module docstring (an NNI ``ModelSpace``)."""
    from nni.nas.nn.pytorch import LayerChoice, ModelSpace

    class PrematureSpace(ModelSpace):
        def __init__(self):
            super().__init__()
            self.a = LayerChoice({'zero': Zero(), 'identity': nn.Identity(), 'linear': nn.Linear(FEATURES, FEATURES)},
                                 label='a')
            self.b = LayerChoice({'zero': Zero(), 'identity': nn.Identity(), 'linear': nn.Linear(FEATURES, FEATURES)},
                                 label='b')
            self.head = nn.Linear(FEATURES, CLASSES)

        def forward(self, x):
            return self.head(self.b(self.a(x)))

    return PrematureSpace()


def make_strategy(name: str, seed: int, warmup: float | None):
    """``nni_asng.<name>(seed=seed)`` with its defaults but ``warmup`` (None: the default). MultiComplexity has
    stages of its own instead: ``warmup`` 0 gives it the former defaults, one epoch each
    (``weight_epochs=1, theta_epochs=1``, the rest repeating the θ stage), any other value its defaults (the
    first half of the run for the weights, the second for θ)."""
    import nni_asng
    cls = getattr(nni_asng, name)
    if warmup is None:
        return cls(seed=seed)
    if name == 'MultiComplexity':
        return cls(seed=seed, weight_epochs=1, theta_epochs=1) if warmup == 0 else cls(seed=seed)
    return cls(seed=seed, warmup=warmup)


def search(name: str, seed: int, epochs: int, warmup: float | None, workdir: str, scale: float = 1.0) -> list[dict]:
    """One search through ``NasExperiment`` with NNI's default Classification evaluator; the exported
    architectures (one; MultiComplexity: one per ε)."""
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    torch.manual_seed(seed)
    space = premature_space()
    strategy = make_strategy(name, seed, warmup)
    evaluator = Classification(num_classes=CLASSES,
                               train_dataloaders=DataLoader(LinearTeacher(1024, seed=1, scale=scale), batch_size=32, shuffle=True),
                               val_dataloaders=DataLoader(LinearTeacher(1024, seed=2, scale=scale), batch_size=32, shuffle=True),
                               max_epochs=epochs, enable_progress_bar=False, logger=False, enable_checkpointing=False,
                               enable_model_summary=False, default_root_dir=workdir)
    exp = NasExperiment(space, evaluator, strategy)
    exp.config.experiment_working_directory = workdir
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            exp.run()
        return exp.export_top_models(formatter='dict', top_k=len(getattr(strategy, 'optimizer_kwargs', {})
                                                                .get('epsilons', [None])))
    finally:
        exp.stop()


def _job(args):
    name, seed, epochs, warmup, scale = args
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as workdir:
        started = time.process_time()
        arch = search(name, seed, epochs, warmup, workdir, scale)
    good = all(a[k] in GOOD for a in arch for k in ('a', 'b'))      # every export (MultiComplexity: one per ε)
    return {'strategy': name, 'seed': seed, 'epochs': epochs, 'warmup': warmup, 'scale': scale,
            'arch': arch[0] if len(arch) == 1
            else arch, 'good': good, 'cpu_s': round(time.process_time() - started, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--strategies', nargs='+', default=list(STRATEGIES))
    parser.add_argument('--epochs', nargs='+', type=int, default=[3, 10])
    parser.add_argument('--seeds', type=int, default=6)
    parser.add_argument('--warmup', nargs='+', type=float, default=[0.0, 0.5])
    parser.add_argument('--scale', type=float, default=1.0, help='standard deviation of the input features')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--output', type=Path, default=Path('experiments/results/premature_decisions/results.jsonl'))
    args = parser.parse_args(argv)
    jobs = [(s, seed, e, w, args.scale) for s in args.strategies for e in args.epochs for w in args.warmup
            for seed in range(args.seeds)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.output.is_file():
        for line in args.output.read_text().splitlines():
            r = json.loads(line)
            done[(r['strategy'], r['seed'], r['epochs'], r['warmup'], r.get('scale', 1.0))] = r
    todo = [j for j in jobs if j not in done]
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    with multiprocessing.get_context('spawn').Pool(args.jobs) as pool, open(args.output, 'a') as sink:
        for r in pool.imap_unordered(_job, todo):
            sink.write(json.dumps(r) + '\n')
            sink.flush()
            done[(r['strategy'], r['seed'], r['epochs'], r['warmup'], r['scale'])] = r
            print(f"{r['strategy']:>15} warmup={r['warmup']} epochs={r['epochs']} seed={r['seed']}: {r['arch']} "
                  f"({'good' if r['good'] else 'zero'}, {r['cpu_s']} CPU s)", flush=True)
    print(f"\n{'strategy':>15} {'warm-up':>8} {'epochs':>6}  exports without zero")
    for s, e, w in sorted({(j[0], j[2], j[3]) for j in jobs}, key=lambda k: (STRATEGIES.index(k[0]), k[2] or 0, k[1])):
        rows = [done[j] for j in jobs if (j[0], j[2], j[3]) == (s, e, w)]
        print(f"{s:>15} {'-' if w is None else w:>8} {e:>6}  {sum(r['good'] for r in rows)}/{len(rows)}")


if __name__ == '__main__':
    main()

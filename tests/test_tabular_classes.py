"""Tables by functional equivalence class: queries map every architecture to its class, ranks and percentiles
are over classes, the reliability figure, and the builder's classes and reuse of an older table's rows."""
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from nni_asng.tabular import TabularBenchmark, read_rows, split_half_reliability
from search_spaces.nas_bench_201_canonical import canonical_cell

EDGES = ('0_1', '0_2', '0_3', '1_2', '1_3', '2_3')


def cell(**ops):
    return {f'cell/{e}': ops.get(f'e{e}', 'none') for e in EDGES}


CONV = cell(e0_3='conv_3x3')                      # class "one convolution"; a member with a dead edge:
CONV_DEAD = cell(e0_3='conv_3x3', e0_1='conv_3x3')
SKIP = cell(e0_3='skip_connect')
DEEP = cell(e0_1='conv_3x3', e1_3='conv_3x3')
EMPTY = cell()


def _class_table(*values):
    """A hand-made class table from (representative, members, [accuracy per seed]) triples."""
    rows, classes = [], {}
    for arch, members, accs in values:
        key = canonical_cell(arch)
        classes[key] = {'representative': arch, 'members': members, 'params': 10, 'flops': 20, 'measurements': {}}
        rows += [{'architecture': arch, 'class': key, 'seed': s, 'final': {'test_acc': a, 'val_acc': a}}
                 for s, a in enumerate(accs)]
    return TabularBenchmark(rows, {'equivalence': 'nas_bench_201', 'classes': classes, 'chance_accuracy': 0.1})


def test_a_member_is_looked_up_as_its_class():
    table = _class_table((CONV, 3, [0.8, 0.82]), (SKIP, 1, [0.6, 0.62]), (DEEP, 2, [0.7, 0.7]),
                         (EMPTY, 10, [0.1, 0.1]))
    assert len(table) == 4
    entry = table.query(CONV_DEAD)
    assert entry.architecture == CONV and entry.accuracy == pytest.approx(0.81)
    assert entry.rank == 1 and entry.percentile == 100.0 and entry.members == 3
    assert entry.equivalence_class == canonical_cell(CONV) and entry.params == 10
    assert table.query(SKIP).percentile == 50.0                       # 2 of 4 classes are <= 0.61
    # a random architecture: classes weighted by their members: (3*.81 + .61 + 2*.7 + 10*.1) / 16
    assert table.mean_accuracy == pytest.approx((3 * 0.81 + 0.61 + 2 * 0.7 + 10 * 0.1) / 16)
    assert table.best().architecture == CONV
    assert cell(e0_3='conv_1x1') not in table                          # a class the table lacks



def test_p_against_the_table_counts_every_architecture_once():
    """A random architecture lands in a class in proportion to its members, so the protocol's "p against the
    table" compares the exports with every architecture of the space, not with one value per class."""
    from test_tabular_statistics import protocol
    table = _class_table((CONV, 1, [0.8]), (SKIP, 1, [0.6]), (EMPTY, 3, [0.1]))
    assert sorted(table.architecture_accuracies()) == pytest.approx([0.1, 0.1, 0.1, 0.6, 0.8])
    record = {'strategy': 'asng', 'seed': 0, 'architecture': CONV_DEAD, 'history': [], 'supernet': None,
              'search': {'wall_s': 1.0, 'cpu_s': 1.0, 'steps': 1}}
    report = protocol.build_report([record], table, ['asng'], 1, 'cpu')
    # ranks of [0.8 | 0.8, 0.6, 0.1, 0.1, 0.1]: the 0.1s share 2, 0.6 is 4, the 0.8s share 5.5; one value of
    # six ranks is >= 5.5 with probability 2/6 (one value per class, [0.8 | 0.8, 0.6, 0.1], would give 2/4)
    assert report['strategies']['asng']['p_vs_table'] == pytest.approx(1 / 3)

def test_split_half_reliability_by_hand():
    # two seeds: one split; Spearman of [1,2,3,4] vs [2,1,4,3] = 1 - 6*4/(4*15) = 0.6 -> 2*0.6/1.6 = 0.75
    values = np.array([[1, 2], [2, 1], [3, 4], [4, 3]], float)
    assert split_half_reliability(values) == pytest.approx(0.75)
    assert split_half_reliability(np.array([[1, 1], [2, 2], [3, 3]], float)) == pytest.approx(1.0)
    # four seeds: halves {0,1} vs {2,3} etc. (3 distinct splits, each counted from both sides) all identical
    same = np.array([[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]], float)
    assert split_half_reliability(same) == pytest.approx(1.0)
    with pytest.raises(ValueError, match='>= 2 seeds'):
        split_half_reliability(np.array([[1.0], [2.0], [3.0]]))


def test_quality_reports_reliability_over_all_and_above_chance_classes():
    table = _class_table((CONV, 1, [0.80, 0.81]), (SKIP, 1, [0.60, 0.62]), (DEEP, 1, [0.70, 0.69]),
                         (cell(e0_3='conv_1x1'), 1, [0.75, 0.70]), (EMPTY, 5, [0.1, 0.1]))
    q = table.quality()
    assert q.classes and q.architectures == 5 and q.reliability_seeds == 2
    # all five: seed0 ranks [5,2,3,4,1], seed1 [5,2,3,4,1] -> rho 1 -> 1.0
    assert q.reliability == pytest.approx(1.0)
    assert q.reliability_entries == (5, 4)
    # above chance (4 classes): seed0 [.80,.60,.70,.75] ranks [4,1,2,3]; seed1 [.81,.62,.69,.70] ranks [4,1,2,3]
    assert q.reliability_above_chance == pytest.approx(1.0)
    assert 'reliability' in q.format() and 'above chance' in q.format()


# ---------------------------------------------------------------------------------------------- the builder
TINY = '''
name: tiny_class_table
seed: 0
space: {name: nas_bench_201, args: {channels: 2, num_cells: 1, operations: [none, skip_connect, conv_3x3]}}
strategy: {name: asng}
data: {dataset: fashion_mnist, limit: 96, subset_seed: 0, resolution: 8, batch_size: 32, augment: false}
retrain:
  epochs: 1
  batch_size: 32
  optimizer: {name: sgd, lr: 0.05}
  augment: false
  threads: 1
  progress_bar: false
  device: cpu
tabular: {seeds: [0], sample: null, validation: 32, processes: 1}
'''


def _tabulate(capsys, config: Path, out: Path, *extra: str) -> str:
    """``nni-asng tabulate`` through ``nni_asng.app.cli.main``, in process (a ``python -m nni_asng`` costs seconds
    of imports; the training workers are separate processes either way); returns what it printed."""
    from nni_asng.app.cli import main
    capsys.readouterr()
    code = main(['tabulate', str(config), '--output', str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.out[-2000:] + captured.err[-3000:]
    return captured.out


@pytest.mark.slow
def test_class_table_trains_representatives_and_takes_over_fitting_rows(tmp_path, capsys):
    plain = tmp_path / 'plain.yaml'
    plain.write_text(TINY)
    old = tmp_path / 'old'
    _tabulate(capsys, plain, old, '--max-jobs', '3')
    old_rows, _ = read_rows(old / 'table.jsonl')

    classes = tmp_path / 'classes.yaml'
    classes.write_text(TINY.replace('tabular: {seeds: [0],', f'tabular: {{equivalence: nas_bench_201, reuse: {old}, '
                                                               f'seeds: [0, 1],'))
    new = tmp_path / 'new'
    printed = _tabulate(capsys, classes, new, '--max-jobs', '1')
    meta = json.loads((new / 'meta.json').read_text())
    assert meta['equivalence'] == 'nas_bench_201' and meta['architectures'] == 3 ** 6
    assert sum(c['members'] for c in meta['classes'].values()) == 3 ** 6
    assert meta['jobs'] == 2 * len(meta['classes'])
    rows, _ = read_rows(new / 'table.jsonl')
    taken = [r for r in rows if r.get('imported_from') == 'old']
    old_classes = {canonical_cell(r['architecture']) for r in old_rows}
    assert len(taken) == len(old_classes) and f'took over {len(taken)} rows' in printed
    assert all(r['class'] == canonical_cell(r['architecture']) for r in rows)
    trained = [r for r in rows if 'imported_from' not in r]
    assert len(trained) == 1
    rep = meta['classes'][trained[0]['class']]['representative']
    assert trained[0]['architecture'] == rep
    space = [dict(zip((f'cell/{e}' for e in EDGES), v))
             for v in itertools.product(['none', 'skip_connect', 'conv_3x3'], repeat=6)]
    ops = [sum(v != 'none' for v in a.values()) for a in space if canonical_cell(a) == trained[0]['class']]
    assert sum(v != 'none' for v in rep.values()) == min(ops)          # the member with the fewest operations

    table = TabularBenchmark.load(new)
    row = taken[0]
    member = row['architecture']
    assert table.query(member).accuracy == pytest.approx(row['final']['test_acc'])
    # running again takes over nothing more and trains the next job
    again = _tabulate(capsys, classes, new, '--max-jobs', '1')
    assert 'took over' not in again
    assert len(read_rows(new / 'table.jsonl')[0]) == len(rows) + 1

"""The numbers the tabular protocol publishes, on small hand-made tables whose answers are worked out by hand.

Every expected value below was computed on paper (the working is in the comments), not by the code under test:
regret and percentile, the one-sided Mann–Whitney p-values (against the random seeds, the RandomOneShot seeds
and the whole table, in the right direction), Kendall's τ between the supernet and the table, sup-best, and
the table's own quality figures (Spearman of seed 0 vs seed 1, best, worst). numpy only; milliseconds.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from nni_asng.tabular import TabularBenchmark

PROTOCOL = Path(__file__).resolve().parents[1] / 'experiments' / 'tabular' / 'protocol.py'


def _load_protocol():
    spec = importlib.util.spec_from_file_location('_protocol_under_test', PROTOCOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


protocol = _load_protocol()

# A one-seed table of six architectures (one label 'cell'), best first.
ACCURACY = {'a': 0.95, 'b': 0.90, 'c': 0.85, 'd': 0.80, 'e': 0.70, 'f': 0.60}


def arch(name: str) -> dict:
    return {'cell': name}


def table_of(accuracy: dict[str, float]) -> TabularBenchmark:
    return TabularBenchmark([{'architecture': arch(k), 'seed': 0, 'name': k, 'train_time_s': 1.0,
                              'final': {'test_acc': v, 'val_acc': v}} for k, v in accuracy.items()])


# ------------------------------------------------------------------------------------------ regret, percentile
def test_regret_is_the_table_best_minus_the_export_in_pp():
    """Regret is best − export (never negative), in percentage points."""
    assert protocol.regret_pp(0.95, 0.80) == pytest.approx(15.0)
    assert protocol.regret_pp(0.95, 0.95) == 0.0
    assert protocol.regret_pp(0.9, 0.6) > 0


def test_percentile_is_the_share_of_entries_at_or_below():
    """Percentile = % of the table's entries whose accuracy is <= the export's (ties counted as below)."""
    table = table_of(ACCURACY)
    assert table.query(arch('a')).percentile == pytest.approx(100.0)      # 6 of 6
    assert table.query(arch('d')).percentile == pytest.approx(50.0)       # d, e, f: 3 of 6
    assert table.query(arch('f')).percentile == pytest.approx(100 / 6)    # 1 of 6
    tied = table_of({'w': 0.5, 'x': 0.7, 'y': 0.7, 'z': 0.9})
    assert tied.query(arch('x')).percentile == tied.query(arch('y')).percentile == pytest.approx(75.0)   # 3 of 4


# ------------------------------------------------------------------------------------------ Mann–Whitney
def test_mann_whitney_exact_p_values():
    """Exact one-sided p of H1 "x larger": 1/C(4,2) when both x beat both y; ties share mid-ranks."""
    assert protocol.mann_whitney_greater([0.95, 0.90], [0.60, 0.70]) == (4.0, pytest.approx(1 / 6))
    assert protocol.mann_whitney_greater([0.60, 0.70], [0.95, 0.90]) == (0.0, pytest.approx(1.0))
    # Against the table (its own entries tie with the exports): doubled mid-ranks of the 8 values are
    # 2 4 6 8 11 11 15 15; x holds 15 + 11 = 26 (U = 13 - 3 = 10); pairs summing >= 26: (15,15) and four
    # (15,11): 5 of 28.
    u, p = protocol.mann_whitney_greater([0.95, 0.90], list(ACCURACY.values()))
    assert u == pytest.approx(10.0) and p == pytest.approx(5 / 28)


def test_mann_whitney_normal_approximation():
    """Above 200 values: normal approximation with continuity correction (the real table has 729 rows)."""
    # x = 198.5 beats 199 of y = 0..199: U = 199, mean 100, σ = sqrt(1·200/12 · 202) = 58.02298;
    # z = (199 − 100 − 0.5) / σ = 1.697603; p = 1 − Φ(z) = 0.044791
    u, p = protocol.mann_whitney_greater([198.5], list(range(200)))
    assert u == 199.0 and p == pytest.approx(0.044791, abs=1e-6)
    # direction: the largest value of a 300-value table against it is significant, the smallest is not
    values = [i / 300 for i in range(300)]
    assert protocol.mann_whitney_greater(values[-3:], values)[1] < 0.05
    assert protocol.mann_whitney_greater(values[:3], values)[1] > 0.95


def test_p_values_pair_the_strategy_with_each_reference_in_the_right_direction():
    """p_values(): the strategy's exports are x, the reference y; better than the reference -> small p."""
    table = list(ACCURACY.values())
    random_seeds, random_one_shot_seeds = [0.70, 0.80], [0.90, 0.80]
    better = protocol.p_values('asng', [0.95, 0.90], random_seeds, random_one_shot_seeds, table)
    # vs random: no ties, both beat both: 1/6. vs RandomOneShot: doubled ranks 2 5 5 8, x = 8 + 5 = 13,
    # pairs >= 13: two (5, 8) of 6: 1/3. vs table: 5/28 (test above); swapped it would be 27/28.
    assert better == {'p_vs_random': pytest.approx(1 / 6), 'p_vs_table': pytest.approx(5 / 28),
                      'p_vs_random_one_shot': pytest.approx(1 / 3)}
    worse = protocol.p_values('asng', [0.60, 0.70], random_seeds, random_one_shot_seeds, table)
    # vs random: doubled ranks 2 5 5 8, x = 2 + 5 = 7 = the smallest pair sum: 1. vs RandomOneShot: U = 0: 1.
    # vs table: doubled ranks 3 3 7 7 10 12 14 16, x = 3 + 7 = 10, only (3, 3) is below: 27/28.
    assert worse == {'p_vs_random': pytest.approx(1.0), 'p_vs_table': pytest.approx(27 / 28),
                     'p_vs_random_one_shot': pytest.approx(1.0)}


def test_p_values_leave_out_a_strategy_against_itself_and_empty_samples():
    """No p of random against random, none of random / RandomOneShot against RandomOneShot, none when empty."""
    table = list(ACCURACY.values())
    own = protocol.p_values(protocol.RANDOM, [0.70, 0.80], [0.70, 0.80], [0.90, 0.80], table)
    assert own['p_vs_random'] is None and own['p_vs_random_one_shot'] is None
    # random seeds vs table: doubled ranks 2 5 5 9 9 12 14 16, x = 5 + 9 = 14; below 14: (2,5)x2, (2,9)x2,
    # (5,5): 23 of 28
    assert own['p_vs_table'] == pytest.approx(23 / 28)
    ros = protocol.p_values(protocol.RANDOM_ONE_SHOT, [0.90, 0.80], [0.70, 0.80], [0.90, 0.80], table)
    assert ros['p_vs_random_one_shot'] is None and ros['p_vs_random'] == pytest.approx(1 / 3)
    assert protocol.p_values('asng', [], [0.7], [0.8], table) == dict.fromkeys(
        ('p_vs_random', 'p_vs_table', 'p_vs_random_one_shot'))
    assert protocol.p_values('asng', [0.9], [], [], table)['p_vs_random'] is None


# ------------------------------------------------------------------------------------------ supernet vs table
def test_kendall_tau_pairs_the_supernet_with_the_table():
    """τ is supernet accuracy vs table accuracy (τ_loss: −loss vs table); sup-best is the table accuracy of
    the architecture the supernet scores best, not the table's best."""
    truth = [0.95, 0.90, 0.85, 0.80]                      # a > b > c > d in the table
    # supernet accuracy a .5 b .7 c .6 d .4: pairs ab, ac discordant; ad, bc, bd, cd concordant: (4 − 2) / 6
    # supernet −loss    a −.8 b −1 c −.9 d −1.2: only bc discordant: (5 − 1) / 6
    stats = protocol.supernet_statistics([0.5, 0.7, 0.6, 0.4], [0.8, 1.0, 0.9, 1.2], truth)
    assert stats == {'tau': pytest.approx(1 / 3), 'tau_loss': pytest.approx(2 / 3),
                     'supernet_best': 0.90, 'architectures': 4}


def test_sup_best_breaks_accuracy_ties_by_loss_and_tau_b_counts_ties():
    """Two architectures the supernet scores equally accurate: the lower loss is its best; τ-b with a tie."""
    # accuracy ties (0, 1) -> 0; (0, 2), (1, 2) discordant; τ-b = −2 / sqrt(2 · 3)
    stats = protocol.supernet_statistics([0.7, 0.7, 0.1], [0.9, 0.8, 1.0], [0.60, 0.85, 0.95])
    assert stats['supernet_best'] == 0.85
    assert stats['tau'] == pytest.approx(-2 / math.sqrt(6))
    flat = protocol.supernet_statistics([0.5, 0.5], [1.0, 1.0], [0.9, 0.8])
    assert flat['tau'] is None and flat['tau_loss'] is None           # undefined, not 0 or NaN


# ------------------------------------------------------------------------------------------ the whole report
def _record(strategy: str, seed: int, name: str, supernet: dict | None = None) -> dict:
    return {'strategy': strategy, 'seed': seed, 'architecture': arch(name), 'history': [], 'supernet': supernet,
            'search': {'wall_s': 10.0 + seed, 'cpu_s': 5.0 + seed, 'steps': 31}}


def test_report_publishes_the_hand_computed_numbers():
    """build_report + format_report on a hand-made table and hand-made search records: every published
    statistic of a strategy row, and where it lands in results.txt."""
    table = table_of(ACCURACY)
    supernet = {'architectures': [arch(k) for k in 'abcdz'], 'accuracy': [0.5, 0.7, 0.6, 0.4, 0.99],
                'loss': [0.8, 1.0, 0.9, 1.2, 0.1], 'images': 64, 'time_s': 1.0}      # 'z' is not in the table
    records = [_record('asng', 0, 'a', supernet), _record('asng', 1, 'b'), _record('asng', 2, 'z'),
               _record(protocol.RANDOM, 0, 'e'), _record(protocol.RANDOM, 1, 'd'),
               _record(protocol.RANDOM_ONE_SHOT, 0, 'b'), _record(protocol.RANDOM_ONE_SHOT, 1, 'd')]
    report = protocol.build_report(records, table, ['asng', protocol.RANDOM_ONE_SHOT, protocol.RANDOM], 3, 'cpu')
    t = report['table']
    assert (t['best_accuracy'], t['best_name'], t['worst_accuracy']) == (0.95, 'a', 0.60)
    assert t['mean_accuracy'] == pytest.approx(0.8)                   # 4.8 / 6

    asng = report['strategies']['asng']
    assert (asng['seeds'], asng['not_in_table']) == (3, 1)
    assert [s['regret_pp'] for s in asng['per_seed']] == [pytest.approx(0.0), pytest.approx(5.0), None]
    assert asng['regret_pp']['mean'] == pytest.approx(2.5)
    assert [s['percentile'] for s in asng['per_seed'][:2]] == [pytest.approx(100.0), pytest.approx(500 / 6)]
    assert asng['percentile']['median'] == pytest.approx(550 / 6)    # (100 + 83.33) / 2
    assert asng['p_vs_random'] == pytest.approx(1 / 6)
    assert asng['p_vs_table'] == pytest.approx(5 / 28)
    assert asng['p_vs_random_one_shot'] == pytest.approx(1 / 3)
    kendall = asng['per_seed'][0]['kendall']                        # 'z' left out: a b c d as in the τ test
    assert (kendall['tau'], kendall['tau_loss']) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert kendall['architectures'] == 4
    assert asng['kendall_tau']['mean'] == pytest.approx(1 / 3) and asng['supernet_best']['median'] == 0.90

    ros = report['strategies'][protocol.RANDOM_ONE_SHOT]
    assert ros['p_vs_random'] == pytest.approx(1 / 3) and ros['p_vs_random_one_shot'] is None
    rnd = report['strategies'][protocol.RANDOM]
    assert rnd['p_vs_random'] is None and rnd['p_vs_table'] == pytest.approx(23 / 28)

    text = protocol.format_report(report, {'epochs': 1, 'mc_theta_epochs': 1, 'seeds': 3, 'kendall_archs': 5,
                                           'kendall_batches': 1})
    line = next(row for row in text.splitlines() if row.startswith('ASNG '))
    # n miss | acc mean ± std (95, 90: std 3.54) | median | regret | pct med | wall | CPU | p(>rand) p(>ROS)
    # p(>table) | τ mean ± std | sup-best
    assert line.split() == ['ASNG', '3', '1', '92.50', '±', '3.54', '92.50', '2.50', '91.7', '11', '6',
                            '0.167', '0.333', '0.179', '0.33', '±', '0.00', '90.00']


# ------------------------------------------------------------------------------------------ the table's quality
def test_table_quality_figures():
    """TabularBenchmark.quality(): Spearman of seed 0 vs seed 1 over the entries with both, best = argmax
    of the seed-mean, worst = argmin, spreads."""
    per_seed = {'A': (0.60, 0.64), 'B': (0.70, 0.62), 'C': (0.80, 0.90), 'D': (0.50, 0.70), 'E': (0.65,)}
    rows = [{'architecture': arch(k), 'seed': s, 'name': k, 'train_time_s': 2.0,
             'final': {'test_acc': acc, 'val_acc': acc}}
            for k, accs in per_seed.items() for s, acc in zip((1, 0) if len(accs) == 2 else (0,), accs[::-1])]
    q = TabularBenchmark(rows).quality()
    assert q.seeds == {0: 5, 1: 4} and q.pairs == 4
    # ranks seed 0: D1 A2 B3 C4; seed 1: B1 A2 D3 C4; d = 0, 2, 0, −2; ρ = 1 − 6·8 / (4·15) = 0.2
    assert q.spearman_seeds == pytest.approx(0.2)
    # means A .62 B .66 C .85 D .60 E .65
    assert (q.best_accuracy, q.best_name) == (pytest.approx(0.85), 'C')
    assert q.worst_accuracy == pytest.approx(0.60)
    assert q.mean_accuracy == pytest.approx(3.38 / 5)
    # seed 0 over all five: mean .65, squared deviations sum .05, std(ddof=1) = sqrt(.05 / 4)
    assert q.spread_across_architectures == pytest.approx(math.sqrt(0.05 / 4))
    # per entry with two seeds, std² = (a − b)² / 2: .0008 .0032 .005 .02; RMS = sqrt(.029 / 4)
    assert q.spread_across_seeds == pytest.approx(math.sqrt(0.029 / 4))


def test_side_by_side_puts_each_strategy_row_of_each_run_next_to_the_other():
    """side_by_side.py (the new defaults against the papers' settings): the numbers of each run's report, and
    the top-10 % count against the table (its 90th percentile: 0.925 here, so only 'a' counts)."""
    sys.path.insert(0, str(PROTOCOL.parent))
    try:
        import side_by_side
    finally:
        sys.path.remove(str(PROTOCOL.parent))
    table = table_of(ACCURACY)
    randoms = [_record(protocol.RANDOM, 0, 'e'), _record(protocol.RANDOM, 1, 'd')]
    first = protocol.build_report([_record('asng', 0, 'a'), _record('asng', 1, 'b')] + randoms, table,
                                  ['asng', protocol.RANDOM], 2, 'cpu')
    second = protocol.build_report([_record('asng', 0, 'd'), _record('asng', 1, 'e')] + randoms, table,
                                   ['asng', protocol.RANDOM], 2, 'cpu')
    lines = side_by_side.side_by_side([first, second], ['new', 'paper'], table).splitlines()
    asng = [line.split() for line in lines if line.startswith('ASNG ')]
    # n | mean | median | pct med | top10 | p(>rand) | p(>table) | τ | sup-best | CPU s (median of 5 and 6)
    assert asng[0] == ['ASNG', 'new', '2', '92.50', '92.50', '91.7', '1/2', '0.167', '0.179', '-', '-', '5.5']
    # d (.80, 50th pct), e (.70, 33.3rd) against random e, d: the ranks 1.5 1.5 3.5 3.5, P(sum >= 5) = 5/6
    assert asng[1][:8] == ['ASNG', 'paper', '2', '75.00', '75.00', '41.7', '0/2', '0.833']
    assert [line.split()[:3] for line in lines if line.startswith('random ')] == [['random', 'architecture', 'new']]

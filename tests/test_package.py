"""Package-level behaviour: importing nni_asng must leave NNI's own strategies intact."""
import subprocess
import sys


def test_importing_nni_asng_first_keeps_nni_strategies_usable():
    code = ('import nni_asng\n'
            'from nni.nas.strategy import DARTS, RandomOneShot\n'
            'from nni.nas.oneshot.pytorch.strategy import OneShotStrategy\n'
            'assert issubclass(DARTS, OneShotStrategy) and issubclass(RandomOneShot, OneShotStrategy), (DARTS, RandomOneShot)\n')
    result = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_public_api():
    import nni_asng
    for name in ['ASNG', 'PDAS', 'SNG', 'AdvantageNAS', 'Reinforce', 'SearchSpaceEncoding']:
        assert hasattr(nni_asng, name), name

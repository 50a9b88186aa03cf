"""Every Python example in README.md runs as written."""
import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / 'README.md'
BLOCKS = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 7


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HOME', str(tmp_path))          # NNI's default ~/nni-experiments lands in tmp
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'experiments').symlink_to(README.parent / 'experiments')   # examples read committed results
    namespace = {'__name__': '__readme__'}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            exec(compile(BLOCKS[index], f'README.md python block {index}', 'exec'), namespace)
    finally:
        if hasattr(namespace.get('exp'), 'stop'):
            namespace['exp'].stop()
    assert capsys.readouterr().out.strip(), 'every example prints what it shows'

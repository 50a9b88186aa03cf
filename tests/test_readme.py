"""README.md and the pages under docs/: every Python example runs as written, every relative link resolves,
and README stays short."""
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
DOCS = sorted((ROOT / 'docs').glob('*.md'))
PAGES = [README, *DOCS]
README_MAX_LINES = 250


def python_blocks(page: Path) -> list:
    return re.findall(r'```python\n(.*?)```', page.read_text(), flags=re.S)


BLOCKS = [(page.relative_to(ROOT).as_posix(), i, block)
          for page in PAGES for i, block in enumerate(python_blocks(page))]


def test_readme_has_examples():
    readme = python_blocks(README)
    assert len(readme) >= 3                        # five minutes, your own space, ask/tell
    five_minutes = README.read_text().split('## Five minutes with nni-asng', 1)[1]   # scripts/check_install.sh
    assert re.match(r'\s*[^`]*```python\nimport nni_asng\n', five_minutes)
    assert sum(len(python_blocks(page)) for page in DOCS) >= 7   # the spaces, your own space, the table


def test_readme_is_short():
    lines = README.read_text().count('\n')
    assert lines <= README_MAX_LINES, f'README.md has {lines} lines; move reference material to docs/'


@pytest.mark.parametrize('page, index, block', BLOCKS, ids=[f'{p}:{i}' for p, i, _ in BLOCKS])
def test_readme_example_runs(page, index, block, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HOME', str(tmp_path))          # NNI's default ~/nni-experiments lands in tmp
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'experiments').symlink_to(ROOT / 'experiments')   # examples read committed results
    namespace = {'__name__': '__readme__'}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            exec(compile(block, f'{page} python block {index}', 'exec'), namespace)
    finally:
        if hasattr(namespace.get('exp'), 'stop'):
            namespace['exp'].stop()
    assert capsys.readouterr().out.strip(), 'every example prints what it shows'


# --- links -----------------------------------------------------------------------------------------------

LINK = re.compile(r'\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans (which may hold `](` by accident)."""
    text = re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)
    return re.sub(r'`[^`\n]*`', '', text)


def anchors(text: str) -> set:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen, result = {}, set()
    for heading in re.findall(r'^#{1,6}\s+(.*?)\s*#*\s*$', prose(text), flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.lower()).replace(' ', '-')
        result.add(slug if slug not in seen else f'{slug}-{seen[slug]}')
        seen[slug] = seen.get(slug, 0) + 1
    return result


def broken_links(page: Path, text: str = None) -> list:
    """What is wrong with the relative links of ``page`` (its ``text``, default: the file's)."""
    text = page.read_text() if text is None else text
    problems = []
    for target in LINK.findall(prose(text)):
        if re.match(r'[a-z][a-z0-9+.-]*:', target, flags=re.I):        # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        if path.startswith('/') or path.startswith('~'):
            problems.append(f'{target}: absolute path')
            continue
        resolved = (page.parent / path).resolve()
        if not path:
            if anchor not in anchors(text):
                problems.append(f'{target}: no heading {target} on this page')
        elif ROOT not in resolved.parents and resolved != ROOT:
            problems.append(f'{target}: outside the repository')
        elif not resolved.exists():
            problems.append(f'{target}: no such file')
        elif anchor and resolved.suffix == '.md' and anchor not in anchors(resolved.read_text()):
            problems.append(f'{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}')
    return problems


LINKED = [*PAGES, ROOT / 'experiments' / 'README.md']


@pytest.mark.parametrize('page', LINKED, ids=[p.relative_to(ROOT).as_posix() for p in LINKED])
def test_relative_links_resolve(page):
    assert broken_links(page) == []
    text = page.read_text()
    assert str(ROOT) not in text and '../shared' not in text, 'pages name files of the repository only'


def test_link_check_catches_broken_links():
    page = ROOT / 'docs' / '_probe.md'                 # a page that is never written
    text = ('# Probe\n\n[ok](../README.md#references) [ok](#probe) [web](https://example.org/x)\n'
            '[gone](no-such-page.md) [anchor](../README.md#no-such-heading) [abs](/etc/hostname)\n'
            '[out](../../outside.md) `[code](ignored.md)`\n')
    problems = broken_links(page, text)
    assert [p.split(':')[0] for p in problems] == [
        'no-such-page.md', '../README.md#no-such-heading', '/etc/hostname', '../../outside.md']

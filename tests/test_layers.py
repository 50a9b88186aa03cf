"""The layers of the package (docs/architecture.md), checked on the source.

Every module under ``nni_asng/`` is parsed with ``ast``, and every import it holds is collected, the
function-local ones included: the application's modules import one another without a circle, no module
imports a layer above its own, and the mathematics (``nni_asng.distributions``, ``nni_asng.optimizers``)
imports neither torch, NNI, Lightning nor the application (numpy only).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / 'nni_asng'

#: The layers, lowest first: a module may import its own layer and the layers below, never one above. A module
#: belongs to the layer of the longest name here that is its own name or the name of a package holding it.
LAYERS = (
    ('mathematics', ('nni_asng.distributions', 'nni_asng.optimizers')),
    ('NNI adapter, evaluators, data', ('nni_asng', 'nni_asng.oneshot', 'nni_asng.evaluators', 'nni_asng.data',
                                       'nni_asng.model_size', 'nni_asng.tabular')),
    ('app.config', ('nni_asng.app.config',)),
    ('app.runners', ('nni_asng.app.runners',)),
    ('app.experiment', ('nni_asng.app.experiment',)),
    ('app: CLI and public API', ('nni_asng.app', 'nni_asng.__main__')),
)
#: What the mathematics must not import (top-level package names, and the application).
NOT_IN_MATHEMATICS = ('torch', 'nni', 'lightning', 'pytorch_lightning', 'lightning_fabric', 'nni_asng.app')


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES = {module_name(path): path for path in sorted(ROOT.rglob('*.py'))}


def imports_of(name: str, source: str | None = None) -> list[tuple[str, int]]:
    """(imported module, line) of every import statement in module ``name`` (its file, or ``source``)."""
    path = MODULES.get(name)
    tree = ast.parse(source if source is not None else path.read_text(encoding='utf-8'))
    package = name if path is not None and path.name == '__init__.py' else name.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1])
                base = f'{base}.{node.module}' if node.module else base
            else:
                base = node.module
            for alias in node.names:
                child = f'{base}.{alias.name}'
                found.append((child if child in MODULES else base, node.lineno))
    return found


def layer_of(name: str) -> int:
    matches = [(len(prefix), index) for index, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if name == prefix or name.startswith(prefix + '.')]
    assert matches, f'{name} belongs to no layer: add it to LAYERS'
    return max(matches)[1]


def internal(target: str) -> str | None:
    """The module of nni_asng that ``target`` names (a module, or a package's ``__init__``), else None."""
    while target and target not in MODULES:
        target = target.rpartition('.')[0]
    return target or None


def upward_imports(name: str, source: str | None = None) -> list[str]:
    own = layer_of(name)
    out = []
    for target, line in imports_of(name, source):
        module = internal(target)
        if module is not None and layer_of(module) > own:
            out.append(f'{name}:{line} imports {target} ({LAYERS[layer_of(module)][0]}, above {LAYERS[own][0]})')
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def app_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        if name == 'nni_asng.app' or name.startswith('nni_asng.app.'):
            targets = {internal(target) for target, _ in imports_of(name)}
            graph[name] = {t for t in targets if t is not None and t.startswith('nni_asng.app') and t != name}
    return graph


def test_every_module_has_a_layer():
    assert len(MODULES) > 50
    for name in MODULES:
        layer_of(name)


def test_the_application_has_no_import_circle():
    graph = app_graph()
    assert len(graph) > 20
    found = circles(graph)
    assert found == [], 'modules importing one another in a circle:\n' + '\n'.join(', '.join(c) for c in found)


def test_no_module_imports_a_layer_above_its_own():
    problems = [problem for name in MODULES for problem in upward_imports(name)]
    assert problems == [], '\n'.join(problems)


def test_the_mathematics_imports_neither_torch_nni_lightning_nor_the_application():
    problems = []
    for name in MODULES:
        if layer_of(name) != 0:
            continue
        for target, line in imports_of(name):
            if any(target == bad or target.startswith(bad + '.') for bad in NOT_IN_MATHEMATICS):
                problems.append(f'{name}:{line} imports {target}')
    assert problems == [], '\n'.join(problems)


def test_the_checks_catch_what_they_are_for():
    """An upward import (also a function-local one) and a circle are found."""
    runs = MODULES['nni_asng.app.runners.runs'].read_text(encoding='utf-8')
    local = runs + '\n\ndef _upward():\n    from ..experiment.launch import launch_command\n'
    assert any('imports nni_asng.app.experiment.launch' in p for p in upward_imports('nni_asng.app.runners.runs',
                                                                                     local))
    assert upward_imports('nni_asng.distributions.base', 'from nni_asng.app.cli import main\n')
    assert circles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert circles({'a': {'b'}, 'b': set()}) == []

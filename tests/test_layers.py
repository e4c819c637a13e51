"""The package's layers: no import cycle anywhere, and the library below the pipelines never imports one.

Read from the source with `ast` (every `import`, also inside functions), so a cycle hidden by a function-local
import fails here as well as one at module level.
"""
import ast
import subprocess
import sys
import typing as tp
from pathlib import Path

from conftest import REPO_ROOT

PACKAGES = ('rr_audiocraft', 'dora_grids')
# The library: what trains and loads models. It may import the assets check, the environment, data, metrics...
LOWER = ('rr_audiocraft.models', 'rr_audiocraft.modules', 'rr_audiocraft.solvers', 'rr_audiocraft.regularization',
         'rr_audiocraft.train')
# ...never a pipeline: what runs experiments on top of it.
PIPELINES = ('rr_audiocraft.demo', 'rr_audiocraft.bench', 'rr_audiocraft.recipes', 'rr_audiocraft.grid_local',
             'rr_audiocraft.listen', 'dora_grids')


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def modules() -> tp.Dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob('*.py'))}


def imports_of(name: str, path: Path, known: tp.Collection[str]) -> tp.Set[str]:
    """The modules of `known` that `name` imports, resolved to modules (`from . import x` names module `x`)."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found: tp.Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: tp.List[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')
                base = base[:len(base) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            targets = [f'{module}.{alias.name}' for alias in node.names] + [module]
        for target in targets:
            while target and target not in known:  # `a.b.func` -> `a.b`; a package import counts as its __init__
                target = target.rpartition('.')[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> tp.Dict[str, tp.Set[str]]:
    found = modules()
    return {name: imports_of(name, path, found) for name, path in found.items()}


def find_cycle(graph: tp.Mapping[str, tp.Set[str]]) -> tp.Optional[tp.List[str]]:
    """One import cycle of `graph` (its modules in order, the first repeated at the end), or None."""
    state: tp.Dict[str, int] = {}  # 1: on the current path, 2: done
    path: tp.List[str] = []

    def visit(node: str) -> tp.Optional[tp.List[str]]:
        state[node] = 1
        path.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state:
                cycle = visit(other)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def is_under(name: str, prefixes: tp.Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + '.') for prefix in prefixes)


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    # Package __init__ files are left out as importers: Python runs them before any submodule, and one that
    # re-exports its own modules (models/__init__) would read as a cycle with each of them.
    graph_without_reexports = {name: {other for other in targets if not name.startswith(other + '.')}
                               for name, targets in graph.items()}
    cycle = find_cycle(graph_without_reexports)
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_the_library_imports_no_pipeline():
    graph = import_graph()
    upward = sorted(f'{name} imports {other}' for name, targets in graph.items() if is_under(name, LOWER)
                    for other in targets if is_under(other, PIPELINES))
    assert not upward, 'upward imports: ' + '; '.join(upward)


def test_the_checks_see_a_cycle_and_an_upward_import_hidden_in_a_function(tmp_path):
    """The checks on code that breaks the rules (a function-local import, relative imports), so that a pass
    above means something."""
    package = tmp_path / 'rr_audiocraft'
    (package / 'models').mkdir(parents=True)
    (package / '__init__.py').write_text('')
    (package / 'models' / '__init__.py').write_text('')
    (package / 'models' / 'loaders.py').write_text('def load():\n    from ..demo import run\n    return run\n')
    (package / 'demo.py').write_text('from .models.loaders import load\n')
    known = {'rr_audiocraft', 'rr_audiocraft.models', 'rr_audiocraft.models.loaders', 'rr_audiocraft.demo'}
    global REPO_ROOT
    saved, REPO_ROOT = REPO_ROOT, tmp_path
    try:
        graph = {module_name(path): imports_of(module_name(path), path, known) for path in package.rglob('*.py')}
    finally:
        REPO_ROOT = saved
    assert graph['rr_audiocraft.models.loaders'] == {'rr_audiocraft.demo'}
    assert find_cycle(graph) in (['rr_audiocraft.demo', 'rr_audiocraft.models.loaders', 'rr_audiocraft.demo'],
                                 ['rr_audiocraft.models.loaders', 'rr_audiocraft.demo', 'rr_audiocraft.models.loaders'])


def test_importing_the_package_changes_nothing_and_the_codec_check_runs_without_a_runpy_warning():
    """`import rr_audiocraft` sets no environment variable, resolver or logging filter (the entry points call
    `environment.configure`); `python -m rr_audiocraft.recipes.codec verify` (what `make demo` runs first) is
    not imported by anything before runpy runs it, so it prints no RuntimeWarning."""
    code = ("import os, logging, rr_audiocraft; from omegaconf import OmegaConf; "
            "print(OmegaConf.has_resolver('rr_asset'), bool(logging.getLogger('xformers').filters))")
    env = {key: value for key, value in __import__('os').environ.items() if key != 'AUDIOCRAFT_DORA_DIR'}
    probe = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert probe.returncode == 0 and probe.stdout.split() == ['False', 'False'], probe.stderr[-2000:]
    proc = subprocess.run([sys.executable, '-W', 'default', '-m', 'rr_audiocraft.recipes.codec', 'verify'],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and 'sha256 matches' in proc.stdout, proc.stderr[-2000:]
    assert 'RuntimeWarning' not in proc.stderr and 'xFormers' not in proc.stderr, proc.stderr[-2000:]

"""The package tree is the architecture: imports point down the layers, and no module imports itself in a cycle.

Layers, lowest first (docs/design.md draws them)::

    0  kernels/ (pure numpy), errors, params, progress, version
    1  engine/ (Spark plumbing)
    2  decomposition/ (NMF), ratings/ (masked ALS), datasets (loaders)   -- siblings: none imports another
    3  analysis/ (driver side: multi-start, consensus, metrics, survey, topics)
    4  plots/ (pictures, HTML report)
    5  pipeline/ (job conf, runner, publishing)
    6  the package itself (sparknmf/__init__.py): the public names
    7  demo (python -m sparknmf.demo)

Every import is read with ``ast``, those inside functions too, so a lazy
import cannot hide an upward dependency.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparknmf"

LAYERS = {
    "kernels": 0, "errors": 0, "params": 0, "progress": 0, "version": 0,
    "engine": 1,
    "decomposition": 2, "ratings": 2, "datasets": 2,
    "analysis": 3,
    "plots": 4,
    "pipeline": 5,
    "": 6,
    "demo": 7,
}


def unit(module: str) -> str:
    """The layer unit of a dotted module name: ``sparknmf.engine.matrix`` -> ``engine``; ``sparknmf`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, module: str, is_package: bool, modules) -> set:
    """Every sparknmf module (or package) among ``modules`` that the source imports, anywhere in it.

    ``from P import name`` imports the submodule ``P.name`` when there is one, else the package ``P``.
    """
    package = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.split(".")[0] == "sparknmf"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "sparknmf":
                continue
            out |= {f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names}
    return out


def import_graph(root: Path) -> dict:
    """``{module: set of sparknmf modules it imports}`` for every module below ``root``."""
    sources = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for module, path in sources.items():
        names = imported(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py", sources)
        graph[module] = {name for name in names if name in sources and name != module}
    return graph


def upward_imports(graph: dict) -> list:
    """``(importer, imported)`` pairs that break the layering."""
    bad = []
    for module, targets in graph.items():
        for target in targets:
            a, b = unit(module), unit(target)
            if a != b and LAYERS[b] >= LAYERS[a]:
                bad.append((module, target))
    return sorted(bad)


def cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph(graph: dict) -> dict:
    """Edges between modules, leaving out package ``__init__`` re-exports of their own submodules."""
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}


def test_every_unit_has_a_layer():
    units = {unit(m) for m in import_graph(PACKAGE)}
    assert units <= set(LAYERS), f"modules outside the layer table: {sorted(units - set(LAYERS))}"


def test_imports_point_down():
    assert upward_imports(import_graph(PACKAGE)) == []


def test_no_import_cycles():
    graph = package_graph(import_graph(PACKAGE))
    assert cycles(graph) == []


def test_library_never_imports_the_jobs():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        assert not {name for name in names if name.split(".")[0] == "jobs"}, path


@pytest.fixture
def fake_package(tmp_path):
    """A tiny sparknmf tree with one upward import (kernels -> engine) and one cycle (engine.a <-> engine.b)."""
    root = tmp_path / "sparknmf"
    for folder in ("kernels", "engine"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "kernels" / "k.py").write_text("def f():\n    from sparknmf.engine import a\n")
    (root / "engine" / "a.py").write_text("from sparknmf.engine.b import g\n")
    (root / "engine" / "b.py").write_text("from . import a\nfrom ..kernels.k import f\n")
    return root


def test_the_checks_find_an_upward_import_and_a_cycle(fake_package):
    graph = import_graph(fake_package)
    assert upward_imports(graph) == [("sparknmf.kernels.k", "sparknmf.engine.a")]
    assert cycles(package_graph(graph)) == [["sparknmf.engine.a", "sparknmf.engine.b", "sparknmf.kernels.k"]]

"""The package's layers, read from its source: who imports whom (DESIGN.md, "Layers").

Every ``import`` of ``shopee_match`` in every module is read with ``ast``, those inside
functions included (a lazy import still makes the importer depend on the imported), those
under ``if TYPE_CHECKING:`` left out (annotations only, never run). The package root
(``shopee_match/__init__.py``) is left out of the circles: every submodule imports it
anyway, and it is a facade over the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

import shopee_match

ROOT = Path(shopee_match.__file__).resolve().parent
PKG = "shopee_match"
#: the ``shopee-match`` command: today's ``cli.py`` and ``index/_cli.py``, tomorrow ``cli/``
INTERFACE_CLI = ("shopee_match.cli", "shopee_match.index._cli", "shopee_match.__main__")
#: what the pipeline and everything it imports must never import: the layers above it
ABOVE_PIPELINE = ("shopee_match.distributed", "shopee_match.index", "shopee_match.cli")


def _under(mod: str, prefixes: Iterable[str]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``shopee_match`` modules that module ``name`` imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(mod: str) -> str:
        while mod not in modules:
            mod = mod.rpartition(".")[0]
        return mod

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit_node(other)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(resolve(a.name) for a in node.names if a.name.split(".")[0] == PKG)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] == PKG:
                for alias in node.names:  # `from . import x` may import the module x
                    sub = f"{mod}.{alias.name}"
                    found.add(sub if sub in modules else resolve(mod))
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found.discard(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = _modules(root)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _unit(mod: str) -> str:
    """The package or top-level module ``mod`` belongs to (the CLI is one unit)."""
    if _under(mod, INTERFACE_CLI):
        return "shopee_match.cli"
    return ".".join(mod.split(".")[:2])


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _without_root(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {d for d in deps if d != PKG} for m, deps in graph.items() if m != PKG}


def _closure(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` imports, directly or not, with the module that imports it."""
    seen = {start: ""}
    todo = [start]
    while todo:
        mod = todo.pop()
        for dep in sorted(graph.get(mod, ())):
            if dep not in seen:
                seen[dep] = mod
                todo.append(dep)
    return seen


def _chain(parents: dict[str, str], mod: str) -> str:
    path = [mod]
    while parents[path[-1]]:
        path.append(parents[path[-1]])
    return " -> ".join(reversed(path))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_is_read_from_source(graph):
    # the reader finds what is there: a module-level import, a relative one, a lazy one
    assert "shopee_match.neighbors.graph" in graph["shopee_match.neighbors.matcher"]
    assert "shopee_match.pipeline" in graph["shopee_match.distributed"]  # inside cli_match
    assert "shopee_match.neighbors" in graph[PKG]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _legacy_cli_as_one(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """While the command is ``cli.py`` + ``index/_cli.py`` (before it became the ``cli/``
    package, whose modules are checked one by one), those two count as one module."""
    if "shopee_match.index._cli" not in graph:
        return graph
    one = "shopee_match.cli"
    merged: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        key = one if _under(mod, INTERFACE_CLI[:2]) else mod
        merged.setdefault(key, set()).update(
            one if _under(d, INTERFACE_CLI[:2]) else d for d in deps)
    for mod in merged:
        merged[mod].discard(mod)
    return merged


def test_no_import_circle_between_modules(graph):
    assert circles(_legacy_cli_as_one(_without_root(graph))) == []


def test_no_import_circle_between_packages(graph):
    units: dict[str, set[str]] = {}
    for mod, deps in _without_root(graph).items():
        units.setdefault(_unit(mod), set()).update(_unit(d) for d in deps if _unit(d) != _unit(mod))
    assert circles(units) == []


def test_pipeline_imports_no_runtime_and_no_interface(graph):
    reached = _closure(graph, "shopee_match.pipeline")
    bad = [_chain(reached, m) for m in sorted(reached) if _under(m, ABOVE_PIPELINE)]
    assert bad == []


def test_nothing_below_the_interfaces_imports_the_cli(graph):
    bad = [f"{mod} -> {dep}" for mod, deps in sorted(graph.items()) if not _under(mod, INTERFACE_CLI)
           for dep in sorted(deps) if _under(dep, INTERFACE_CLI)]
    assert bad == []


def _package(mod: str) -> str:
    """The subpackage a module is in; the package root for top-level modules (the CLI,
    ``cli.py`` + ``index/_cli.py`` today, is one)."""
    if _under(mod, INTERFACE_CLI):
        return "shopee_match.cli"
    parts = mod.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or mod in _subpackages() else PKG


def _subpackages() -> set[str]:
    return {name for name, path in _modules().items() if path.name == "__init__.py"}


def private_uses_across_packages(root: Path = ROOT) -> set[tuple[str, str]]:
    """``(package, name)``: a private attribute (``x._name``, ``x`` not ``self``/``cls``)
    defined only in other packages, or a private module of another package imported."""
    modules = _modules(root)
    trees = {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in modules.items()}
    defined: dict[str, set[str]] = {}
    for mod, tree in trees.items():
        for node in ast.walk(tree):
            name = None
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = node.name
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr
            if name and name.startswith("_") and not name.startswith("__"):
                defined.setdefault(name, set()).add(_package(mod))
    found: set[tuple[str, str]] = set()
    for mod, tree in trees.items():
        pkg = _package(mod)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                    and defined.get(node.attr) and pkg not in defined[node.attr]):
                found.add((pkg, node.attr))
        for dep in _imports(mod, modules[mod], modules):
            if dep.rpartition(".")[2].startswith("_") and _package(dep) not in (pkg, PKG):
                found.add((pkg, dep))
    return found


def test_no_private_name_across_packages():
    assert private_uses_across_packages() == set()

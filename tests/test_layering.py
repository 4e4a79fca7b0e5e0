"""Import rules from STYLE.md: index stands alone behind its small interface; c2pa, flask and faiss
stay in their modules; and no module imports one that imports it back, even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import index

ROOT = Path(__file__).parents[1]
ALLOWED = {
    "c2pa": {"provenance/manifest.py", "provenance/signing.py"},
    "flask": {
        "provenance/access.py",
        "provenance/api.py",
        "provenance/app.py",
        "provenance/operations.py",
        "provenance/sbr.py",
        "provenance/services.py",
        "provenance/web.py",
    },
    "faiss": {"index/search.py", "index/hamming.py"},
    "pymilvus": {"index/milvus.py"},
}
SOURCES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "index").glob("*.py")) + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "provenance").glob("*.py")
)


def module_name(source: str) -> str:
    """index/store.py -> index.store; provenance/__init__.py -> provenance"""
    return source.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


MODULES = {module_name(s): s for s in SOURCES}


def import_nodes(text: str) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module's text, those inside functions included."""
    return [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Import | ast.ImportFrom)]


def imports_of(source: str) -> set[str]:
    """Top-level package names a module imports."""
    names: set[str] = set()
    for node in import_nodes((ROOT / source).read_text()):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def project_imports(text: str) -> set[str]:
    """The project modules a module imports: ``from provenance import db`` is provenance.db,
    ``from index import Matcher`` is the package index itself."""
    found: set[str] = set()
    for node in import_nodes(text):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif node.module and node.level == 0 and node.module in MODULES:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return found


GRAPH = {name: project_imports((ROOT / source).read_text()) for name, source in MODULES.items()}


def cycle_through(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """A chain of imports from ``start`` back to itself, if there is one (depth-first)."""
    path: list[str] = []
    seen: set[str] = set()

    def visit(module: str) -> list[str] | None:
        for imported in sorted(graph.get(module, ())):
            if imported == start:
                return [*path, module, start]
            if imported not in seen:
                seen.add(imported)
                path.append(module)
                found = visit(imported)
                path.pop()
                if found:
                    return found
        return None

    return visit(start)


@pytest.mark.parametrize("source", SOURCES)
def test_imports_respect_the_layers(source: str) -> None:
    imported = imports_of(source)
    if source.startswith("index/"):
        assert "provenance" not in imported
    for package, allowed in ALLOWED.items():
        if package in imported:
            assert source in allowed, f"{source} imports {package}"


@pytest.mark.parametrize("source", [s for s in SOURCES if s.startswith("provenance/")])
def test_the_application_uses_only_the_index_interface(source: str) -> None:
    for node in import_nodes((ROOT / source).read_text()):
        if isinstance(node, ast.Import):
            assert not any(alias.name.startswith("index.") for alias in node.names), source
        elif node.module and node.level == 0 and node.module.split(".")[0] == "index":
            assert node.module == "index", f"{source} reaches into {node.module}"
            assert {alias.name for alias in node.names} <= set(index.__all__), source


def test_the_index_interface_stays_small() -> None:
    # Two search engines (FAISS, Milvus) behind SearchIndex; the smooth records, which a server's
    # master reads once for its workers as it loads the FAISS index for them.
    assert len(index.__all__) <= 19


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_loops(module: str) -> None:
    assert cycle_through(module, GRAPH) is None, " -> ".join(cycle_through(module, GRAPH) or [])


def test_the_loop_check_sees_imports_inside_functions() -> None:
    """A loop that only a function-level import closes counts, as create_app's import of the
    blueprints did while they imported app; and a loop through several modules is found."""
    app = "from provenance.config import Settings\n\ndef create_app():\n    from provenance.api import api\n"
    graph = {
        "provenance.app": project_imports(app),
        "provenance.api": project_imports("from provenance.records import RecordStore\n"),
        "provenance.records": project_imports("from provenance.app import services\n"),
        "provenance.config": set(),
    }
    assert cycle_through("provenance.app", graph) == [
        "provenance.app",
        "provenance.api",
        "provenance.records",
        "provenance.app",
    ]
    assert cycle_through("provenance.config", graph) is None

"""Import rules from STYLE.md: index stands alone; c2pa, flask and faiss stay in their modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
ALLOWED = {
    "c2pa": {"provenance/manifest.py", "provenance/signing.py"},
    "flask": {
        "provenance/api.py",
        "provenance/app.py",
        "provenance/web.py",
        "provenance/sbr.py",
        "provenance/operations.py",
    },
    "faiss": {"index/search.py", "index/hamming.py"},
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


SOURCES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "index").glob("*.py")) + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "provenance").glob("*.py")
)


@pytest.mark.parametrize("source", SOURCES)
def test_imports_respect_the_layers(source: str) -> None:
    imported = imports_of(ROOT / source)
    if source.startswith("index/"):
        assert "provenance" not in imported
    for package, allowed in ALLOWED.items():
        if package in imported:
            assert source in allowed, f"{source} imports {package}"
